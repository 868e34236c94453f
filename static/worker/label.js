// The labeling page. Talks only to the worker API: fetches items ahead (so answering
// waits for nobody but the human), sends answers with client-made keys (a retry after a
// network error stores nothing twice), undoes the last answer within the window.
(function () {
  "use strict";
  var root = document.getElementById("labeler");
  if (!root || root.hasAttribute("data-inactive")) return;

  var HOTKEYS = "1234567890";
  var GRID_SIZE = 9;
  var cfg = {
    next: root.dataset.nextUrl,
    answers: root.dataset.answersUrl,
    undo: root.dataset.undoUrl,
    prefetch: parseInt(root.dataset.prefetch, 10) || 6,
    undoWindowMs: (parseInt(root.dataset.undoWindowS, 10) || 10) * 1000
  };
  var csrf = root.querySelector("input[name=csrfmiddlewaretoken]").value;
  function byId(id) { return document.getElementById(id); }
  var image = byId("item-image"), text = byId("item-text"), empty = byId("stage-empty");
  var caption = byId("stage-caption"), feedback = byId("feedback"), message = byId("message");
  var choiceView = byId("choice-view"), gridView = byId("grid-view");
  var tiles = byId("grid-tiles"), gridTarget = byId("grid-target");
  var labelButtons = Array.prototype.slice.call(root.querySelectorAll(".label-button"));
  var keyed = {};
  labelButtons.forEach(function (b) { if (b.dataset.key) keyed[b.dataset.key] = b; });
  var skipButton = root.querySelector('[data-action="skip"]');
  var undoButton = root.querySelector('[data-action="undo"]');
  var submitButton = root.querySelector('[data-action="grid-submit"]');
  var viewButtons = Array.prototype.slice.call(root.querySelectorAll("[data-view]"));

  var state = {
    view: "choice",
    queue: [],        // items fetched ahead, not shown yet
    current: null,    // the item on screen
    grid: null,       // {target, items, selected, shownAt}
    nextGrid: null,   // the grid fetched ahead
    done: {},         // lease ids answered or skipped here: never shown again
    outbox: [],       // answers not sent yet
    inFlight: null,   // answers being sent
    last: null,       // the last answer, for undo: {item, key, at}
    pendingUndo: null,
    fetching: false,
    gridLoading: false,
    stopped: false,
    seq: 0,
    count: 0,
    tileNames: {}
  };

  function newKey() {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function api(method, url, body) {
    var options = { method: method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.headers["X-CSRFToken"] = csrf;
      options.body = JSON.stringify(body);
    }
    return fetch(url, options).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (data) {
        return { status: response.status, data: data };
      });
    });
  }

  function say(text) { message.textContent = text || ""; }

  function stop(text) {
    state.stopped = true;
    say(text || "You cannot label for now.");
    setEnabled(false);
  }

  function setEnabled(on) {
    labelButtons.concat([skipButton, submitButton]).forEach(function (b) { b.disabled = !on || state.stopped; });
  }

  // --- Fetching ahead -------------------------------------------------------------------------

  function pendingIds() {
    return state.outbox.concat(state.inFlight || []).map(function (a) { return a.id; });
  }

  function heldIds() {
    var ids = pendingIds().concat(state.queue.map(function (i) { return i.id; }));
    if (state.current) ids.push(state.current.id);
    [state.grid, state.nextGrid].forEach(function (g) { if (g) g.items.forEach(function (i) { ids.push(i.id); }); });
    return ids;
  }

  function preload(item) { if (item.image) { var img = new Image(); img.src = item.image; } }

  function fetchItems(n, view) {
    var url = cfg.next + "?n=" + n + "&view=" + view + "&exclude=" + encodeURIComponent(heldIds().join(","));
    return api("GET", url).then(function (res) {
      if (res.status === 403 && res.data.status) { stop(res.data.detail); return null; }
      if (res.status !== 200) throw new Error("HTTP " + res.status);
      return res.data;
    });
  }

  function retryLater(fn) { setTimeout(fn, 3000); }

  function topUp() {
    if (state.fetching || state.stopped || state.view !== "choice") return;
    var want = cfg.prefetch - state.queue.length;
    if (want < 1) return;
    state.fetching = true;
    fetchItems(want, "choice").then(function (data) {
      state.fetching = false;
      if (!data || state.view !== "choice") return;
      var added = 0;
      data.items.forEach(function (item) {
        if (!state.done[item.id] && heldIds().indexOf(item.id) < 0) { preload(item); state.queue.push(item); added += 1; }
      });
      if (state.current) return;
      if (added) { showNext(); } else { render(); setTimeout(topUp, 15000); }
    }, function () { state.fetching = false; say("Network trouble; retrying…"); retryLater(topUp); });
  }

  // --- Choice view ----------------------------------------------------------------------------

  function fresh(item) { return !item.expires_at || Date.parse(item.expires_at) > Date.now(); }

  function showNext() {
    state.queue = state.queue.filter(fresh);
    state.current = state.queue.shift() || null;
    if (state.queue.length < Math.ceil(cfg.prefetch / 2)) topUp();
    render();
  }

  function render() {
    var item = state.current;
    image.hidden = text.hidden = true;
    empty.hidden = !!item;
    if (!item) {
      empty.textContent = state.fetching ? "Loading…" : "Nothing to label right now. Thank you! New items are checked for every few seconds.";
      setEnabled(false);
      return;
    }
    state.seq += 1;
    if (item.image) {
      image.src = item.image;
      image.alt = "Item " + state.seq + " to label";
      image.hidden = false;
    } else {
      text.textContent = item.text;
      text.hidden = false;
    }
    caption.textContent = "Item " + state.seq + (item.text ? ": " + item.text : "");
    item.shownAt = performance.now();
    setEnabled(true);
  }

  function answer(label) {
    var item = state.current;
    if (!item || state.stopped) return;
    var entry = { id: item.id, label: label, key: newKey(), time_ms: Math.round(performance.now() - item.shownAt) };
    state.done[item.id] = true;
    state.outbox.push(entry);
    state.last = label === null ? null : { item: item, key: entry.key, at: Date.now() };
    if (label !== null) setCount(state.count + 1);
    feedback.textContent = "";
    updateUndo();
    flush();
    showNext();
  }

  function setCount(n) { state.count = n; byId("count").textContent = String(n); }

  // --- Sending answers ------------------------------------------------------------------------

  function flush() {
    if (state.inFlight || !state.outbox.length) return;
    state.inFlight = state.outbox.splice(0, 20);
    send(state.inFlight, 0);
  }

  function send(batch, attempt) {
    api("POST", cfg.answers, batch).then(function (res) {
      if (res.status === 200) { state.inFlight = null; say(""); received(res.data); flush(); return; }
      if (res.status === 403 && res.data.status) { state.inFlight = null; stop(res.data.detail); return; }
      if (res.status === 429 || res.status >= 500) { resend(batch, attempt); return; }
      state.inFlight = null;
      say("Some answers were refused (" + (res.data.detail || res.status) + ").");
      flush();
    }, function () { resend(batch, attempt); });
  }

  function resend(batch, attempt) {
    say("Network trouble; your answers are kept and sent again…");
    setTimeout(function () { send(batch, attempt + 1); }, Math.min(1000 * Math.pow(2, attempt), 15000));
  }

  function received(data) {
    data.results.forEach(function (result) {
      if (result.status === "expired") say("An item waited too long and was handed to someone else; that answer was not counted.");
      if (result.feedback) {
        var where = state.tileNames[result.id];
        feedback.textContent = (where ? where + ": " : "") + result.feedback.message;
      }
    });
    if (data.worker) byId("total").textContent = String(data.worker.answers);
    if (state.pendingUndo) { var last = state.pendingUndo; state.pendingUndo = null; sendUndo(last); }
    if (data.worker && data.worker.status !== "active") stop(data.message);
  }

  // --- Undo -----------------------------------------------------------------------------------

  function undoable() { return state.last && Date.now() - state.last.at <= cfg.undoWindowMs && !state.stopped; }

  function updateUndo() {
    undoButton.disabled = !undoable();
    if (state.last) setTimeout(function () { undoButton.disabled = !undoable(); }, cfg.undoWindowMs + 50);
  }

  function indexOfKey(list, key) {
    for (var i = 0; i < list.length; i++) if (list[i].key === key) return i;
    return -1;
  }

  function undo() {
    if (!undoable() || state.view !== "choice") return;
    var last = state.last;
    state.last = null;
    updateUndo();
    var i = indexOfKey(state.outbox, last.key);
    if (i >= 0) { state.outbox.splice(i, 1); restore(last.item); return; }
    if (state.inFlight && indexOfKey(state.inFlight, last.key) >= 0) { state.pendingUndo = last; return; }
    sendUndo(last);
  }

  function sendUndo(last) {
    api("POST", cfg.undo.replace("KEY", encodeURIComponent(last.key)), {}).then(function (res) {
      if (res.status === 200) {
        if (res.data.worker) byId("total").textContent = String(res.data.worker.answers);
        restore(last.item);
      } else {
        say(res.data.detail || "Could not undo.");
      }
    }, function () { say("Could not undo: network trouble."); });
  }

  function restore(item) {
    delete state.done[item.id];
    if (state.current) state.queue.unshift(state.current);
    state.current = item;
    setCount(Math.max(state.count - 1, 0));
    feedback.textContent = "Undone: answer it again.";
    render();
  }

  // --- Grid view ("select every X") -----------------------------------------------------------

  // Fills the grid on screen, then the one after it (fetched ahead).
  function loadGrid() {
    if (state.gridLoading || state.stopped || state.view !== "grid" || (state.grid && state.nextGrid)) return;
    state.gridLoading = true;
    fetchItems(GRID_SIZE, "grid").then(function (data) {
      state.gridLoading = false;
      if (!data || state.view !== "grid") return;
      var items = data.items.filter(function (i) { return !state.done[i.id]; });
      var grid = { target: data.target, items: items, selected: {} };
      items.forEach(preload);
      if (!state.grid) { state.grid = grid; renderGrid(); } else { state.nextGrid = grid; }
      if (items.length) loadGrid();
    }, function () { state.gridLoading = false; say("Network trouble; retrying…"); retryLater(loadGrid); });
  }

  function renderGrid() {
    var grid = state.grid;
    tiles.replaceChildren();
    if (!grid || !grid.items.length) {
      gridTarget.textContent = "…";
      tiles.textContent = "Nothing to label right now. Thank you!";
      submitButton.disabled = true;
      if (grid) setTimeout(function () { if (state.grid === grid) { state.grid = null; loadGrid(); } }, 15000);
      return;
    }
    gridTarget.textContent = grid.target;
    grid.items.forEach(function (item, index) {
      var tile = document.createElement("button");
      tile.type = "button";
      tile.className = "tile";
      tile.setAttribute("aria-pressed", "false");
      tile.dataset.id = item.id;
      var key = document.createElement("kbd");
      key.textContent = String(index + 1);
      tile.appendChild(key);
      if (item.image) {
        var img = document.createElement("img");
        img.src = item.image;
        img.alt = "Tile " + (index + 1);
        tile.appendChild(img);
      } else {
        var span = document.createElement("span");
        span.className = "tile-text";
        span.textContent = item.text;
        tile.appendChild(span);
      }
      tile.addEventListener("click", function () { toggleTile(index); });
      tiles.appendChild(tile);
    });
    grid.shownAt = performance.now();
    submitButton.disabled = state.stopped;
    // After the switch to the grid, Enter should submit it, not press "Grid" again.
    var focused = document.activeElement;
    if (!focused || focused === document.body || viewButtons.indexOf(focused) >= 0) submitButton.focus();
  }

  function toggleTile(index) {
    var grid = state.grid;
    if (!grid || index >= grid.items.length) return;
    var id = grid.items[index].id;
    grid.selected[id] = !grid.selected[id];
    tiles.children[index].setAttribute("aria-pressed", grid.selected[id] ? "true" : "false");
  }

  function submitGrid() {
    var grid = state.grid;
    if (!grid || !grid.items.length || state.stopped) return;
    var each = Math.round((performance.now() - grid.shownAt) / grid.items.length);
    state.tileNames = {};
    grid.items.forEach(function (item, index) {
      state.done[item.id] = true;
      state.tileNames[item.id] = "Tile " + (index + 1);
      state.outbox.push({ id: item.id, label: grid.target, verdict: !!grid.selected[item.id], key: newKey(), time_ms: each });
    });
    setCount(state.count + grid.items.length);
    state.last = null;
    updateUndo();
    feedback.textContent = "";
    flush();
    state.grid = state.nextGrid;
    state.nextGrid = null;
    if (state.grid) renderGrid();
    loadGrid();
  }

  // --- Views and keys -------------------------------------------------------------------------

  function setView(view) {
    if (view === state.view) return;
    // Items held here go back to the server's pile for this worker: it hands them out
    // again first, in whichever view asks next.
    state.view = view;
    state.queue = [];
    state.current = null;
    state.grid = state.nextGrid = null;
    viewButtons.forEach(function (b) { b.setAttribute("aria-pressed", b.dataset.view === view ? "true" : "false"); });
    choiceView.hidden = view !== "choice";
    gridView.hidden = view !== "grid";
    feedback.textContent = "";
    if (view === "grid") loadGrid(); else { render(); topUp(); }
  }

  function flash(button) {
    button.classList.add("flash");
    setTimeout(function () { button.classList.remove("flash"); }, 150);
  }

  labelButtons.forEach(function (button) {
    button.addEventListener("click", function () { answer(button.dataset.label); });
  });
  skipButton.addEventListener("click", function () { answer(null); });
  undoButton.addEventListener("click", undo);
  submitButton.addEventListener("click", submitGrid);
  viewButtons.forEach(function (button) {
    button.addEventListener("click", function () { setView(button.dataset.view); });
  });

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    var target = event.target;
    if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) return;
    var index = HOTKEYS.indexOf(event.key);
    if (state.view === "choice") {
      var button = keyed[event.key];
      if (button && !button.disabled) {
        event.preventDefault();
        flash(button);
        answer(button.dataset.label);
      } else if (event.key === "s" && !skipButton.disabled) {
        event.preventDefault();
        answer(null);
      } else if (event.key === "u") {
        event.preventDefault();
        undo();
      }
    } else if (index >= 0 && index < GRID_SIZE) {
      event.preventDefault();
      toggleTile(index);
    } else if (event.key === "Enter" && !(target && target.tagName === "BUTTON")) {
      event.preventDefault();
      submitGrid();
    }
  });

  topUp();
})();
