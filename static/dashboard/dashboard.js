// Live parts of the dashboard: polls the project's live.json and updates counts, the
// background runs and training progress in place; a training run's panel (charts) is
// re-rendered by the server and swapped in when its epoch or status changes.
// No inline script, no innerHTML of data: text goes through textContent.
(function () {
  "use strict";
  // A box that scrolls sideways (a wide table or chart on a phone) must be reachable by
  // keyboard to be scrolled: it gets a tab stop while, and only while, it overflows.
  function scrollBoxes() {
    document.querySelectorAll(".table, .chart-scroll, .chart-box, .map-panel, #pipeline > table").forEach(function (box) {
      if (box.scrollWidth > box.clientWidth + 1) {
        box.setAttribute("tabindex", "0");
      } else if (box.getAttribute("tabindex") === "0") {
        box.removeAttribute("tabindex");
      }
    });
  }
  scrollBoxes();
  window.addEventListener("resize", scrollBoxes);
})();
(function () {
  "use strict";
  var root = document.getElementById("dashboard");
  if (!root || !root.dataset.liveUrl) return;
  var ACTIVE_MS = 1500, IDLE_MS = 15000, ERROR_MS = 10000;
  var timer = null;

  function get(object, path) {
    return path.split(".").reduce(function (value, key) { return value == null ? undefined : value[key]; }, object);
  }
  function show(value) {
    if (value === null || value === undefined) return "–";
    return typeof value === "number" ? value.toLocaleString("en-US") : String(value);
  }
  function cell(row, text, className) {
    var td = document.createElement("td");
    if (className) td.className = className;
    if (text !== undefined) td.textContent = text;
    row.appendChild(td);
    return td;
  }

  function renderCounts(state) {
    root.querySelectorAll("[data-live]").forEach(function (node) {
      node.textContent = show(get(state, node.dataset.live));
    });
  }

  function renderPipeline(state) {
    root.querySelectorAll('[data-live-list="pipeline"]').forEach(function (body) {
      var rows = state.pipeline.map(function (run) {
        var tr = document.createElement("tr");
        cell(tr, run.kind_display);
        var badge = document.createElement("span");
        badge.className = "status status-" + run.status;
        badge.textContent = run.status_display;
        cell(tr).appendChild(badge);
        var bar = document.createElement("progress");
        bar.max = 1;
        bar.value = run.progress;
        bar.setAttribute("aria-label", "progress of " + run.kind_display);
        cell(tr).appendChild(bar);
        var message = cell(tr, run.message);
        if (run.error) {
          var error = document.createElement("span");
          error.className = "error";
          error.textContent = " " + run.error;
          message.appendChild(error);
        }
        return tr;
      });
      if (rows.length) body.replaceChildren.apply(body, rows);
    });
  }

  function renderTraining(state) {
    state.training.forEach(function (run) {
      root.querySelectorAll('[data-run="' + run.id + '"]').forEach(function (node) {
        var field = node.dataset.field;
        if (field === "status") {
          node.textContent = run.status_display;
          node.className = "status status-" + run.status;
        } else if (field === "epoch") {
          // A run of a cheap model trains no network: it has no epochs to show.
          node.textContent = run.epoch || run.status === "running" ? run.epoch + " / " + run.n_epochs : "–";
        } else if (field === "progress") {
          node.max = Math.max(run.n_epochs, 1);
          node.value = run.status === "succeeded" ? node.max : run.epoch;
        } else if (field === "accuracy") {
          node.textContent = run.accuracy === null || run.accuracy === undefined ? "–" : run.accuracy.toFixed(3);
        }
      });
      var panel = root.querySelector('[data-panel-for="' + run.id + '"]');
      if (panel && panel.dataset.state !== run.status + ":" + run.epoch && !panel.dataset.loading) {
        refreshPanel(panel);
      }
    });
  }

  function refreshPanel(panel) {
    panel.dataset.loading = "1";
    fetch(panel.dataset.panelUrl, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (response) {
        if (!response.ok) throw new Error(response.status);
        return response.text();
      })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("[data-panel-for]");
        if (fresh) panel.replaceWith(document.importNode(fresh, true));
        else delete panel.dataset.loading;
      })
      .catch(function () { delete panel.dataset.loading; });
  }

  // After "Start training" the run is created by a background task: follow it once it exists.
  function followRequestedRun(state) {
    var waiting = root.querySelector("[data-awaiting-run]");
    if (!waiting) return false;
    var known = (waiting.dataset.knownRuns || "").split(",");
    var fresh = state.training.filter(function (run) { return known.indexOf(run.id) < 0; })[0];
    if (fresh) {
      window.location.replace(waiting.dataset.trainingUrl + "?run=" + encodeURIComponent(fresh.id));
    }
    return true;
  }

  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(poll, ms);
  }

  function poll() {
    if (document.hidden) { schedule(IDLE_MS); return; }
    fetch(root.dataset.liveUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error(response.status);
        return response.json();
      })
      .then(function (state) {
        renderCounts(state);
        renderPipeline(state);
        renderTraining(state);
        var waiting = followRequestedRun(state);
        root.dataset.liveAt = new Date().toISOString();
        schedule(state.active || waiting ? ACTIVE_MS : IDLE_MS);
      })
      .catch(function () { schedule(ERROR_MS); });
  }

  document.addEventListener("visibilitychange", function () { if (!document.hidden) schedule(0); });
  poll();
})();
