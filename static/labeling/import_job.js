// Polls an import job's JSON and updates the page until the job has finished.
(function () {
  "use strict";
  var box = document.getElementById("import-job");
  if (!box) return;
  function field(name) { return box.querySelector('[data-field="' + name + '"]'); }
  function setText(name, value) { var node = field(name); if (node) node.textContent = value; }
  function render(job) {
    setText("status", job.status);
    setText("processed", job.processed);
    setText("total", job.total);
    var bar = box.querySelector("progress");
    bar.max = Math.max(job.total, 1);
    bar.value = job.processed;
    setText("created", job.report.created === undefined ? "–" : job.report.created);
    setText("duplicates", job.report.duplicates === undefined ? "–" : job.report.duplicates);
    setText("error", job.error || "");
    var list = field("problems");
    list.replaceChildren();
    (job.report.problems || []).forEach(function (problem) {
      var li = document.createElement("li");
      li.textContent = problem.name + ": " + problem.reason;
      list.appendChild(li);
    });
    return job.status === "succeeded" || job.status === "failed";
  }
  function poll() {
    fetch(box.dataset.url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) { return response.json(); })
      .then(function (job) { if (!render(job)) setTimeout(poll, 1000); })
      .catch(function () { setTimeout(poll, 3000); });
  }
  poll();
})();
