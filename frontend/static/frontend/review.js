/* The console's review page (docs/console.md "Review"). Plain JS, no inline script (the CSP).
 *
 * Keyboard first: A accepts the leading label, 1-9/0 correct the text to a label (in a
 * multi-label project they toggle labels and Enter submits), R rejects the labels, N shows
 * the next text and Q ends the session. Each key submits the page's one form, whose
 * idempotency key makes a repeated submission a no-op; the form is submitted once.
 *
 * The server measures the reviewer's time: while the page is visible and the reviewer was
 * active within the idle cutoff, it sends a heartbeat every heartbeatMs (the same clock as
 * labeling: credited time never exceeds wall time). Leaving the page sends nothing: the
 * session closes at its last heartbeat once idle, or now with Q.
 */
(function () {
  "use strict";

  var configEl = document.getElementById("review-config");
  if (!configEl) return;
  var config = JSON.parse(configEl.textContent);
  var form = document.getElementById("review-form");
  var done = document.getElementById("review-done");
  var clock = document.getElementById("review-clock");
  var multi = config.labelMode === "multi";
  var lastInput = Date.now();
  var submitted = false;

  function csrf() {
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function beat() {
    if (document.visibilityState !== "visible" || Date.now() - lastInput > config.idleMs) {
      clock.textContent = "Timer: paused (idle)";
      clock.dataset.clock = "paused";
      return;
    }
    var body = new FormData();
    body.append("csrfmiddlewaretoken", csrf());
    fetch(config.heartbeatUrl, {method: "POST", body: body, credentials: "same-origin", headers: {Accept: "application/json"}})
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function () { clock.textContent = "Timer: on (review)"; clock.dataset.clock = "review"; })
      .catch(function () { clock.textContent = "Timer: could not reach the server"; clock.dataset.clock = "error"; });
  }

  function submit(submitter) {
    if (!form || submitted) return;
    submitted = true;
    form.requestSubmit(submitter || undefined);
  }

  function labelButton(key) {
    return form ? form.querySelector('.review-label[data-key="' + key + '"]') : null;
  }

  if (form) {
    form.addEventListener("submit", function () { submitted = true; });
    if (multi) {
      form.querySelectorAll(".review-label").forEach(function (b) {
        b.addEventListener("click", function () { toggle(b); });
      });
    }
  }

  function toggle(button) {
    var on = button.getAttribute("aria-pressed") !== "true";
    button.setAttribute("aria-pressed", on ? "true" : "false");
    var id = "chosen-" + button.dataset.labelId;
    var hidden = document.getElementById(id);
    if (on && !hidden) {
      hidden = document.createElement("input");
      hidden.type = "hidden";
      hidden.name = "labels";
      hidden.id = id;
      hidden.value = button.dataset.labelId;
      form.appendChild(hidden);
    } else if (!on && hidden) {
      hidden.remove();
    }
  }

  document.addEventListener("keydown", function (event) {
    lastInput = Date.now();
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT")) return;
    var key = event.key.toLowerCase();
    var handled = true;
    if (key === "a") {
      var accept = document.getElementById("review-accept");
      if (accept && !accept.disabled) submit(accept); else handled = false;
    } else if (key === "r") {
      var reject = document.getElementById("review-reject");
      if (reject) submit(reject); else handled = false;
    } else if (key === "n") {
      var later = document.getElementById("review-later");
      if (later) window.location.assign(later.href); else handled = false;
    } else if (key === "q") {
      if (done && !submitted) { submitted = true; done.requestSubmit(); }
    } else if (/^[0-9]$/.test(key) && labelButton(key)) {
      if (multi) toggle(labelButton(key)); else submit(labelButton(key));
    } else if (key === "enter" && multi && form) {
      submit(document.getElementById("review-correct-multi"));
    } else {
      handled = false;
    }
    if (handled) event.preventDefault();
  });
  ["mousemove", "mousedown", "scroll", "touchstart"].forEach(function (name) {
    document.addEventListener(name, function () { lastInput = Date.now(); }, {passive: true});
  });
  document.addEventListener("visibilitychange", function () { if (document.visibilityState === "visible") beat(); });

  beat();
  setInterval(beat, config.heartbeatMs);
})();
