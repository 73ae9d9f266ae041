/* The admin console's little JavaScript (a static file: the CSP allows no inline script).
   Tables with data-poll-url follow long work: while anything is queued or running, poll the
   JSON every 2 s and update each row's status, stage, progress bar and failure in place; when
   a run finishes, reload once so its new version and links appear. */
(function () {
  "use strict";

  function pollRuns(table) {
    const url = table.dataset.pollUrl;
    const live = document.getElementById("runs-live");
    let timer = null;
    async function tick() {
      let data;
      try {
        const r = await fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}});
        if (!r.ok) throw new Error(String(r.status));
        data = await r.json();
      } catch (e) {
        if (live) live.textContent = "Could not refresh the runs; retrying.";
        timer = setTimeout(tick, 5000);
        return;
      }
      let finished = false;
      for (const run of data.runs) {
        const row = table.querySelector(`tr[data-run-id="${run.id}"]`);
        if (!row) { if (run.status === "queued" || run.status === "running") finished = true; continue; }
        const was = row.dataset.status;
        if ((was === "queued" || was === "running") && (run.status === "succeeded" || run.status === "failed")) finished = true;
        row.dataset.status = run.status;
        row.querySelector(".run-status").textContent = run.status;
        row.querySelector(".run-stage").textContent = run.stage;
        const bar = row.querySelector(".run-progress");
        bar.value = run.percent;
        bar.textContent = run.percent + " %";
        row.querySelector(".run-error").textContent = run.error;
      }
      if (finished) { window.location.reload(); return; }
      if (live) live.textContent = data.active ? "Training in progress; this table updates by itself." : "";
      if (data.active) timer = setTimeout(tick, 2000);
    }
    const active = table.querySelector('tr[data-status="queued"], tr[data-status="running"]');
    if (active) tick();
    return () => clearTimeout(timer);
  }

  document.querySelectorAll("table[data-poll-url]").forEach(pollRuns);

  /* Live preview of a textarea (the project instructions) as plain paragraphs, built with
     textContent: nothing typed can become markup. */
  document.querySelectorAll("[data-preview-of]").forEach(function (out) {
    const source = document.getElementById(out.dataset.previewOf);
    if (!source) return;
    function render() {
      out.textContent = "";
      source.value.split(/\n\s*\n/).forEach(function (para) {
        if (!para.trim()) return;
        const p = document.createElement("p");
        para.split("\n").forEach(function (line, i) {
          if (i) p.appendChild(document.createElement("br"));
          p.appendChild(document.createTextNode(line));
        });
        out.appendChild(p);
      });
    }
    source.addEventListener("input", render);
    render();
  });
})();

/* Pages with long work in the background (imports): reload while it runs. */
document.querySelectorAll("[data-reload-ms]").forEach(function (el) {
  setTimeout(function () { window.location.reload(); }, parseInt(el.dataset.reloadMs, 10) || 2000);
});
