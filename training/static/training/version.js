/* The model version page: on-demand token explanations. A static file: the CSP allows no inline script. */
(function () {
  const page = document.querySelector(".mv");
  if (!page) return;
  const template = page.dataset.explainUrl;
  const urlFor = id => template.replace("/0/explanation/", `/${id}/explanation/`) + "?version=" + page.dataset.version;
  async function explain(id, cell, attempt) {
    const r = await fetch(urlFor(id), {credentials: "same-origin"});
    if (r.status === 202 && attempt < 60) { setTimeout(() => explain(id, cell, attempt + 1), 500); return; }
    if (!r.ok) { cell.title = "Could not explain this prediction."; return; }
    const data = await r.json();
    const peak = Math.max(1e-6, ...data.tokens.map(t => Math.abs(t.weight)));
    cell.textContent = "";
    data.tokens.forEach((t, i) => {
      const span = document.createElement("span");
      span.className = "tok";
      span.textContent = t.text;
      const a = Math.min(1, Math.abs(t.weight) / peak);
      span.style.background = t.weight >= 0 ? `rgba(46,160,67,${a})` : `rgba(215,58,73,${a})`;
      span.title = `${t.weight >= 0 ? "+" : ""}${t.weight.toFixed(3)} toward ${data.label}`;
      if (t.weight > 0 && a > 0.5) span.dataset.strong = "1";
      cell.appendChild(span);
      if (i < data.tokens.length - 1) cell.appendChild(document.createTextNode(" "));
    });
    cell.dataset.explained = "1";
  }
  document.querySelectorAll("button.why").forEach(b => b.addEventListener("click", () => {
    const cell = document.querySelector(`td.text[data-example="${b.dataset.example}"]`);
    b.disabled = true;
    explain(b.dataset.example, cell, 0);
  }));
})();
