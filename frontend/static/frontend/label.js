/* The annotator's page. Plain JS, no build step, no inline script (the CSP forbids it).
 *
 * One text on screen (state.current) and one claim held behind it (state.ahead), so the next
 * text is already loaded when the annotator submits. Submissions, skips and undos go to the
 * server one at a time, in order, from a queue that survives a reload (sessionStorage) and
 * retries network and server errors with backoff and the SAME idempotency key: a label is
 * never lost and never counted twice. The server measures the time; the page only tells it,
 * through heartbeats, that the text is visible and the annotator active.
 *
 * One person, one clock: the page beats for the instructions OR for the text on screen, never
 * both, and says which (#clock). The instructions sit beside the text (opening or closing them
 * moves nothing): opening them, or working in them, gives the clock to the reading; a label
 * key, Enter, S or U gives it back to the text. A small tally of today's own figures and the
 * training status come from one JSON endpoint (config.statusUrl), after each saved answer.
 *
 * User data is only ever written with textContent, never innerHTML.
 */
(function () {
  "use strict";

  var configEl = document.getElementById("labeler-config");
  if (!configEl) return;
  var config = JSON.parse(configEl.textContent);

  var el = {
    root: document.getElementById("labeler"),
    text: document.getElementById("text"),
    status: document.getElementById("status"),
    alert: document.getElementById("alert"),
    submit: document.getElementById("submit"),
    skip: document.getElementById("skip"),
    undo: document.getElementById("undo"),
    checkAgain: document.getElementById("check-again"),
    labeled: document.getElementById("labeled-count"),
    left: document.getElementById("left-count"),
    sessionLabeled: document.getElementById("session-count"),
    sessionSkipped: document.getElementById("session-skipped"),
    sync: document.getElementById("sync"),
    instructions: document.getElementById("instructions"),
    labels: document.getElementById("labels"),
    clock: document.getElementById("clock"),
    tallyTime: document.getElementById("tally-time"),
    tallyTexts: document.getElementById("tally-texts"),
    tallyTextsWord: document.getElementById("tally-texts-word"),
    tallyEarned: document.getElementById("tally-earned"),
    tallyCurrency: document.getElementById("tally-currency"),
    trainingVersion: document.getElementById("training-version"),
    trainingRun: document.getElementById("training-run"),
    warning: document.getElementById("content-warning"),
    warningCategories: document.getElementById("warning-categories"),
    breakPrompt: document.getElementById("break-prompt"),
    breakWords: document.getElementById("break-words"),
  };
  var labelButtons = Array.prototype.slice.call(document.querySelectorAll(".label-choice"));
  var multi = config.labelMode === "multi";
  var STORE_KEY = "tally:pending:" + config.slug;
  var INSTRUCTIONS_KEY = "tally:instructions:" + config.slug;
  var MAX_BACKOFF_MS = 30000;
  var MAX_OPEN_CLAIMS = config.maxOpenClaims || 2;

  var state = {
    current: null, // the attempt on screen
    ahead: [], // claims held behind it: prefetched, or put back by an undo
    selected: [], // label ids chosen for the current text
    pending: [], // actions not yet acknowledged by the server, oldest first
    running: false,
    claiming: false,
    exhausted: false,
    lastInput: Date.now(),
    reading: false, // the clock runs for the instructions, not for the text on screen
    firstBeat: {}, // attempt id -> promise of its first heartbeat (marks the text shown)
    beating: {}, // attempt id -> a heartbeat is in flight
    lastSubmitted: null,
    labeled: Number(config.labeled) || 0,
    left: Number(config.left) || 0,
    sessionLabeled: 0,
    sessionSkipped: 0,
    revealed: {}, // attempt id -> the annotator revealed its sensitive text (R)
    limited: "", // the server's "limit reached" answer, shown instead of a text
    onBreak: false,
    workSince: Date.now(), // start of the current stretch of continuous work (break prompt)
  };

  // ---------- small helpers ----------

  function sleep(ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
  }

  function uuid4() {
    var b = new Uint8Array(16);
    window.crypto.getRandomValues(b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join("");
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  function csrfToken() {
    var match = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    if (match) return decodeURIComponent(match[1]);
    var input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function attemptUrl(template, id) {
    return template.replace("{id}", String(id));
  }

  // POST JSON; resolves to {status, ok, data}. status 0: the request never got an answer.
  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRFToken": csrfToken() },
      body: JSON.stringify(body || {}),
    }).then(
      function (resp) {
        if (resp.status === 204) return { status: 204, ok: true, data: null };
        return resp.json().then(
          function (data) { return { status: resp.status, ok: resp.ok, data: data }; },
          function () { return { status: resp.status, ok: resp.ok, data: null }; }
        );
      },
      function () { return { status: 0, ok: false, data: null }; }
    );
  }

  // GET JSON; resolves to the data, or null on any failure (the tally is a nicety).
  function getJson(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(
      function (resp) { return resp.ok ? resp.json() : null; },
      function () { return null; }
    ).catch(function () { return null; });
  }

  // Worth trying again later: no answer, a timeout, throttling, a server or database error,
  // or a refused session (the annotator can log in again in another tab).
  function retryable(status) {
    return status === 0 || status === 401 || status === 403 || status === 408 || status === 429 || status >= 500;
  }

  function detail(res) {
    if (res.status === 0) return "no answer from the server (network down?)";
    if (res.status >= 500) return "server error " + res.status;
    if (res.status === 401 || res.status === 403) {
      return "the server refused (" + res.status + "): are you still logged in? Log in again in another tab";
    }
    if (res.data && typeof res.data.detail === "string") return res.data.detail;
    if (res.data && res.data.detail && res.data.detail.detail) return res.data.detail.detail;
    return "error " + res.status;
  }

  function code(res) {
    if (!res.data) return "";
    if (typeof res.data.code === "string") return res.data.code;
    if (res.data.detail && typeof res.data.detail.code === "string") return res.data.detail.code;
    return "";
  }

  function say(message) {
    el.status.textContent = message;
  }

  function warn(message) {
    el.alert.textContent = message;
  }

  function clearWarning() {
    el.alert.textContent = "";
  }

  // ---------- rendering ----------

  function renderCounts() {
    el.labeled.textContent = String(state.labeled);
    el.left.textContent = String(Math.max(state.left, 0));
    el.sessionLabeled.textContent = String(state.sessionLabeled);
    el.sessionSkipped.textContent = String(state.sessionSkipped);
    var unsaved = state.pending.filter(function (a) { return a.kind !== "undo"; }).length;
    el.sync.hidden = unsaved === 0;
    el.sync.textContent = unsaved === 1 ? "· saving 1 answer…" : "· saving " + unsaved + " answers…";
  }

  // Which clock the server is crediting now: the text's, the reading's, or none (idle, hidden).
  function renderClock() {
    var which = "none";
    var words = "Timer paused";
    if (document.visibilityState !== "visible") {
      words = "Timer paused: page hidden";
    } else if (Date.now() - state.lastInput > config.idleMs) {
      which = "idle";
      words = "Timer paused: idle";
    } else if (state.onBreak) {
      which = "break";
      words = "On a break";
    } else if (state.reading) {
      which = "instructions";
      words = "Timing: the instructions";
    } else if (state.current) {
      which = "text";
      words = "Timing: this text";
    }
    if (el.clock.dataset.clock !== which) {
      el.clock.dataset.clock = which;
      el.clock.textContent = words;
    }
  }

  var RUN_WORDS = { queued: "· training queued", running: "· training" };

  function renderStatus(data) {
    if (!data) return;
    var today = data.today || {};
    el.tallyTime.textContent = today.time || "0:00";
    el.tallyTexts.textContent = String(today.texts || 0);
    el.tallyTextsWord.textContent = today.texts === 1 ? "text" : "texts";
    el.tallyEarned.textContent = today.earned || "–";
    if (today.currency) el.tallyCurrency.textContent = today.currency;
    var training = data.training || {};
    el.trainingVersion.textContent = training.version ? "v" + training.version : "none yet";
    var run = RUN_WORDS[training.run] || "";
    if (run && training.stage) run += " (" + training.stage + ")";
    el.trainingRun.textContent = run;
    el.trainingRun.dataset.run = training.run || "";
  }

  function refreshStatus() {
    if (!config.statusUrl) return Promise.resolve();
    return getJson(config.statusUrl).then(renderStatus);
  }

  // How many claims wait behind the text on screen (0 or 1; 2 after an undo). Tests read it.
  function renderQueue() {
    el.root.dataset.ahead = String(state.ahead.length);
  }

  function renderSelection() {
    labelButtons.forEach(function (button) {
      var on = state.selected.indexOf(Number(button.dataset.labelId)) !== -1;
      button.setAttribute("aria-pressed", on ? "true" : "false");
    });
  }

  // Welfare: the categories of a text's content warning, or [] (docs/welfare.md).
  function warningsOf(attempt) {
    return (attempt && attempt.example && attempt.example.content_warnings) || [];
  }

  function hidden(attempt) {
    return warningsOf(attempt).length > 0 && !state.revealed[attempt.id];
  }

  function renderWarning() {
    var attempt = state.current;
    var blur = Boolean(attempt) && hidden(attempt);
    el.warning.hidden = !blur;
    el.text.classList.toggle("blurred", blur);
    if (blur) {
      var names = config.categoryNames || {};
      el.warningCategories.textContent = warningsOf(attempt).map(function (c) { return names[c] || c; }).join(", ");
      el.text.setAttribute("aria-hidden", "true");
    } else {
      el.text.removeAttribute("aria-hidden");
    }
    el.root.dataset.warning = blur ? "shown" : "";
  }

  function reveal() {
    if (!state.current || !hidden(state.current)) return;
    state.revealed[state.current.id] = true;
    renderWarning();
    say("Revealed. Label it, or press S to skip.");
  }

  function renderText() {
    el.checkAgain.hidden = true;
    el.text.classList.remove("empty");
    renderWarning();
    if (state.current) {
      el.text.textContent = state.current.example.text;
      el.text.setAttribute("aria-busy", "false");
      el.text.dataset.attemptId = String(state.current.id);
    } else if (state.limited) {
      el.text.textContent = state.limited;
      el.text.classList.add("empty");
      el.text.setAttribute("aria-busy", "false");
      el.text.dataset.attemptId = "";
      el.checkAgain.hidden = false;
    } else if (state.exhausted) {
      el.text.textContent = "Nothing left to label here right now. Thank you!";
      el.text.classList.add("empty");
      el.text.setAttribute("aria-busy", "false");
      el.text.dataset.attemptId = "";
      el.checkAgain.hidden = false;
    } else {
      el.text.textContent = "Loading the next text…";
      el.text.setAttribute("aria-busy", "true");
      el.text.dataset.attemptId = "";
    }
  }

  // ---------- what is on screen ----------

  function show(attempt, preselect) {
    state.current = attempt;
    state.selected = (preselect || []).slice();
    renderText();
    renderSelection();
    renderQueue();
    renderClock();
    if (attempt && document.visibilityState === "visible" && !state.reading) firstHeartbeat(attempt);
  }

  function advance() {
    if (state.ahead.length) {
      show(state.ahead.shift());
    } else {
      state.exhausted = false; // ask again: claims of others may have expired meanwhile
      show(null);
    }
    maybePrefetch();
  }

  function heldIds() {
    var ids = [];
    if (state.current) ids.push(state.current.id);
    state.ahead.forEach(function (a) { ids.push(a.id); });
    state.pending.forEach(function (a) { if (a.attemptId) ids.push(a.attemptId); });
    return ids;
  }

  function receive(attempt) {
    if (heldIds().indexOf(attempt.id) !== -1) return;
    if (!state.current) {
      show(attempt);
    } else {
      state.ahead.push(attempt);
      renderQueue();
    }
  }

  // Keep one claim behind the text on screen. Attempts waiting in the action queue are still
  // open claims on the server (which allows MAX_OPEN_CLAIMS), so count them too.
  function maybePrefetch() {
    if (state.claiming) return;
    if (state.current && state.ahead.length) return;
    if (state.current && state.exhausted) return;
    if (heldIds().length >= MAX_OPEN_CLAIMS) return;
    claimNext();
  }

  function claimNext() {
    state.claiming = true;
    var delay = 1000;
    var loop = function () {
      return post(config.nextUrl, { exclude: heldIds() }).then(function (res) {
        if (res.status === 200 && res.data) {
          state.claiming = false;
          state.limited = "";
          if (!state.current) clearWarning();
          receive(res.data);
          maybePrefetch();
          return null;
        }
        if (res.status === 204) {
          state.claiming = false;
          state.exhausted = true;
          state.left = (state.current ? 1 : 0) + state.ahead.length;
          renderCounts();
          if (!state.current) renderText();
          return null;
        }
        if (retryable(res.status)) {
          if (!state.current) {
            warn("Could not load the next text: " + detail(res) + ". Trying again in " + Math.round(delay / 1000) + " s…");
          }
          var wait = delay;
          delay = Math.min(delay * 2, MAX_BACKOFF_MS);
          return sleep(wait).then(loop);
        }
        state.claiming = false;
        if (code(res) === "exposure_limit") {
          // A welfare limit: the server says when sensitive texts resume (docs/welfare.md).
          state.limited = detail(res);
          state.exhausted = true;
          if (!state.current) renderText();
          else say(state.limited);
          return null;
        }
        if (!state.current) warn("Could not load the next text: " + detail(res));
        return null;
      });
    };
    return loop();
  }

  // ---------- heartbeats: the server counts active time from these ----------

  function heartbeat(attempt) {
    if (state.beating[attempt.id]) return state.firstBeat[attempt.id] || Promise.resolve();
    state.beating[attempt.id] = true;
    return post(attemptUrl(config.heartbeatUrl, attempt.id), {}).then(function (res) {
      delete state.beating[attempt.id];
      if (res.status === 409 || res.status === 404) lost(attempt, res);
      return res;
    });
  }

  function firstHeartbeat(attempt) {
    if (!state.firstBeat[attempt.id]) state.firstBeat[attempt.id] = heartbeat(attempt);
    return state.firstBeat[attempt.id];
  }

  // The server closed this claim (its lease ran out): it went back to the pool; move on.
  function lost(attempt, res) {
    if (state.current && state.current.id === attempt.id) {
      warn(
        (code(res) === "claim_expired" ? "This text's claim expired and it went back to the pool" : detail(res)) +
          ". Moving on to the next text."
      );
      advance();
    } else {
      state.ahead = state.ahead.filter(function (a) { return a.id !== attempt.id; });
      renderQueue();
      maybePrefetch();
    }
  }

  // ---------- breaks: prompted after a stretch of continuous work (docs/welfare.md) ----------

  function renderBreak() {
    el.root.classList.toggle("on-break", state.onBreak);
    el.root.dataset.break = state.onBreak ? "on" : "";
    if (state.onBreak) {
      el.breakPrompt.hidden = false;
      el.breakWords.textContent = "On a break: the timer is paused. Press B when you are back.";
      return;
    }
    var due = config.breakAfterMs > 0 && Date.now() - state.workSince >= config.breakAfterMs;
    el.breakPrompt.hidden = !due;
    if (due) {
      var minutes = Math.round((Date.now() - state.workSince) / 60000);
      el.breakWords.textContent = "You have worked " + minutes + " minutes without a break. Press B to take one.";
    }
  }

  function toggleBreak() {
    if (!config.breakStartUrl) return;
    if (!state.onBreak) {
      stopReading();
      state.onBreak = true;
      renderBreak();
      renderClock();
      post(config.breakStartUrl, {}).then(function (res) {
        if (!res.ok) {
          state.onBreak = false;
          warn("Could not start the break: " + detail(res));
          renderBreak();
        }
      });
    } else {
      state.onBreak = false;
      state.workSince = Date.now();
      state.lastInput = Date.now();
      post(config.breakEndUrl, {}).then(function (res) {
        if (res.ok && res.data && Number(res.data.paid_seconds) > 0) {
          say("Welcome back. " + Math.round(Number(res.data.paid_seconds) / 60) + " min of your break are paid.");
        } else if (res.ok) {
          say("Welcome back.");
        }
      });
      renderBreak();
      if (state.current && document.visibilityState === "visible") firstHeartbeat(state.current);
    }
  }

  function loadWelfare() {
    if (!config.welfareStatusUrl || !config.breakAfterMs) return;
    getJson(config.welfareStatusUrl).then(function (data) {
      if (data && typeof data.continuous_minutes === "number") {
        state.workSince = Math.min(state.workSince, Date.now() - data.continuous_minutes * 60000);
        renderBreak();
      }
    });
  }

  function tick() {
    renderClock();
    renderBreak();
    if (state.onBreak) return; // the break has the clock: no heartbeats
    if (document.visibilityState !== "visible") return;
    if (state.reading) {
      // Reading the instructions is work too: the ledger records it (labor_ledger).
      if (Date.now() - state.lastInput <= config.idleMs) post(config.instructionsHeartbeatUrl, {});
      return;
    }
    var attempt = state.current;
    if (!attempt) return;
    if (!state.firstBeat[attempt.id]) {
      firstHeartbeat(attempt);
      return;
    }
    if (Date.now() - state.lastInput > config.idleMs) return; // idle: no credit
    heartbeat(attempt);
  }

  // ---------- the action queue: submit, skip, undo, in order, retried until answered ----------

  function persist() {
    try {
      var keep = state.pending.filter(function (a) { return a.kind !== "undo"; });
      if (keep.length) window.sessionStorage.setItem(STORE_KEY, JSON.stringify(keep));
      else window.sessionStorage.removeItem(STORE_KEY);
    } catch (e) {
      /* storage may be unavailable (private mode); the in-page queue still retries */
    }
  }

  function restore() {
    try {
      var saved = JSON.parse(window.sessionStorage.getItem(STORE_KEY) || "[]");
      if (Array.isArray(saved)) {
        saved.forEach(function (a) {
          if (a && (a.kind === "submit" || a.kind === "skip") && a.attemptId) state.pending.push(a);
        });
      }
    } catch (e) {
      /* nothing to restore */
    }
    if (state.pending.length) say("Sending the answers you gave before the page was reloaded…");
  }

  function enqueue(action) {
    state.pending.push(action);
    persist();
    renderCounts();
    run();
  }

  function run() {
    if (state.running) return;
    state.running = true;
    var step = function () {
      if (!state.pending.length) {
        state.running = false;
        renderCounts();
        maybePrefetch();
        return null;
      }
      return perform(state.pending[0]).then(function () {
        state.pending.shift();
        persist();
        renderCounts();
        return step();
      });
    };
    step();
  }

  function request(action) {
    if (action.kind === "submit") {
      return [attemptUrl(config.submitUrl, action.attemptId), { labels: action.labels, idempotency_key: action.key }];
    }
    if (action.kind === "skip") return [attemptUrl(config.skipUrl, action.attemptId), {}];
    return [config.undoUrl, {}];
  }

  var VERB = { submit: "save your label", skip: "skip the text", undo: "undo" };

  function perform(action) {
    var delay = 1000;
    var tries = 0;
    // A fast annotator may answer before the "shown" heartbeat is back: let it land first.
    var ready = state.firstBeat[action.attemptId] || Promise.resolve();
    var loop = function () {
      var req = request(action);
      tries += 1;
      return post(req[0], req[1]).then(function (res) {
        if (res.ok) {
          done(action, res);
          if (tries > 1) {
            clearWarning();
            say("Saved after all: the connection is back.");
          }
          return null;
        }
        if (retryable(res.status)) {
          var what = action.kind === "submit" ? "Your label is kept and" : "It";
          warn(
            "Could not " + VERB[action.kind] + ": " + detail(res) + ". " + what + " will be sent again in " +
              Math.round(delay / 1000) + " s."
          );
          var wait = delay;
          delay = Math.min(delay * 2, MAX_BACKOFF_MS);
          return sleep(wait).then(loop);
        }
        failed(action, res);
        return null;
      });
    };
    return ready.then(loop, loop);
  }

  function done(action, res) {
    refreshStatus();
    if (action.kind === "submit") {
      state.labeled += 1;
      state.sessionLabeled += 1;
      say("Saved: " + (action.names || []).join(", ") + " \u00b7 U to undo");
    } else if (action.kind === "skip") {
      state.sessionSkipped += 1;
    } else if (action.kind === "undo") {
      var attempt = res.data;
      state.labeled = Math.max(state.labeled - 1, 0);
      state.sessionLabeled = Math.max(state.sessionLabeled - 1, 0);
      state.left += 1;
      if (state.current) state.ahead.unshift(state.current);
      var last = state.lastSubmitted;
      var preselect = last && attempt && last.exampleId === attempt.example.id ? last.labels : [];
      state.lastSubmitted = null;
      show(attempt, preselect);
      say("Undone: your last label was withdrawn. This text is back; label it again.");
    }
  }

  function failed(action, res) {
    if (action.kind === "submit") {
      var why = code(res) === "claim_expired" || code(res) === "attempt_closed"
        ? "its claim had expired, so the text went back to the pool"
        : detail(res);
      warn("Your label for the previous text was not saved: " + why + ".");
      state.left += 1;
    } else if (action.kind === "skip") {
      if (code(res) !== "attempt_closed") warn("Could not skip the previous text: " + detail(res) + ".");
    } else {
      say(code(res) === "nothing_to_undo" ? "Nothing to undo." : "Could not undo: " + detail(res) + ".");
    }
  }

  // ---------- what the annotator does ----------

  function labelNames(ids) {
    return ids.map(function (id) {
      var button = labelButtons.filter(function (b) { return Number(b.dataset.labelId) === id; })[0];
      var name = button && button.querySelector(".label-name");
      return name ? name.textContent : String(id);
    });
  }

  function choose(index) {
    var button = labelButtons[index];
    if (!button) return;
    stopReading(); // choosing a label means the annotator is working on the text now
    if (!state.current) {
      say("No text on screen yet.");
      return;
    }
    if (hidden(state.current)) {
      say("Press R to reveal the text first, or S to skip it.");
      return;
    }
    var id = Number(button.dataset.labelId);
    var at = state.selected.indexOf(id);
    if (multi) {
      if (at === -1) state.selected.push(id);
      else state.selected.splice(at, 1);
    } else {
      state.selected = [id];
    }
    renderSelection();
    say("");
  }

  function submit() {
    stopReading();
    var attempt = state.current;
    if (!attempt) {
      say(state.exhausted ? "Nothing left to label right now." : "The next text is still loading.");
      return;
    }
    if (!state.selected.length) {
      say(multi ? "Choose at least one label first (number keys), then press Enter." : "Choose a label first: press its number key, then Enter.");
      return;
    }
    var labels = state.selected.slice();
    state.lastSubmitted = { exampleId: attempt.example.id, labels: labels };
    state.left -= 1;
    say("Saving: " + labelNames(labels).join(", ") + "…");
    enqueue({ kind: "submit", attemptId: attempt.id, labels: labels, names: labelNames(labels), key: uuid4() });
    advance();
  }

  function skip() {
    stopReading();
    var attempt = state.current;
    if (!attempt) return;
    state.left -= 1;
    say("Skipped.");
    enqueue({ kind: "skip", attemptId: attempt.id });
    advance();
  }

  function undo() {
    stopReading();
    say("Undoing your last submission…");
    enqueue({ kind: "undo" });
  }

  // One clock at a time. The reading's clock runs while the annotator works in the open
  // instructions; the text's otherwise. Switching closes the reading on the server (its time is
  // booked) or starts it, and the text's clock resumes with its next heartbeat. The panel stays
  // where it is: the text never moves.
  function setReading(reading) {
    reading = reading && el.instructions.open;
    if (reading === state.reading) return;
    state.reading = reading;
    if (reading) {
      if (document.visibilityState === "visible") post(config.instructionsHeartbeatUrl, {});
    } else {
      post(config.instructionsCloseUrl, {});
      if (state.current && document.visibilityState === "visible") firstHeartbeat(state.current);
    }
    renderClock();
  }

  // The annotator turned to the text (a label key, Enter, S, U): the text's clock runs; the
  // instructions stay open beside it.
  function stopReading() {
    setReading(false);
  }

  function toggleInstructions() {
    el.instructions.open = !el.instructions.open;
    setReading(el.instructions.open);
  }

  // ---------- wiring ----------

  labelButtons.forEach(function (button, index) {
    button.addEventListener("click", function () { choose(index); });
  });
  el.submit.addEventListener("click", submit);
  el.skip.addEventListener("click", skip);
  el.undo.addEventListener("click", undo);
  document.getElementById("reveal").addEventListener("click", reveal);
  var breakButton = document.getElementById("break");
  if (breakButton) breakButton.addEventListener("click", toggleBreak);
  el.checkAgain.addEventListener("click", function () {
    state.exhausted = false;
    state.limited = "";
    renderText();
    maybePrefetch();
  });

  function isTyping(target) {
    return target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
  }

  // Enter on a focused control other than ours (Log out, Skip, a link) keeps its own meaning.
  function ownsEnter(target) {
    if (!target || target === document.body || target === el.text) return true;
    if (target === el.submit || el.labels.contains(target)) return true;
    return !/^(BUTTON|A|SUMMARY)$/.test(target.tagName);
  }

  document.addEventListener("keydown", function (event) {
    if (event.defaultPrevented || event.isComposing || isTyping(event.target)) return;
    var key = event.key;
    var ctrl = event.ctrlKey || event.metaKey;
    if (ctrl && !event.altKey && !event.shiftKey && (key === "z" || key === "Z")) {
      event.preventDefault();
      if (!event.repeat) undo();
      return;
    }
    if (ctrl || event.altKey) return;
    if (/^[0-9]$/.test(key)) {
      var index = key === "0" ? 9 : Number(key) - 1;
      if (index < labelButtons.length) {
        event.preventDefault();
        if (!event.repeat) choose(index);
      }
      return;
    }
    if (key === "Enter") {
      if (!ownsEnter(event.target)) return;
      event.preventDefault();
      if (!event.repeat) submit();
    } else if (key === "Escape" || key === "s" || key === "S") {
      event.preventDefault();
      if (!event.repeat) skip();
    } else if (key === "u" || key === "U") {
      event.preventDefault();
      if (!event.repeat) undo();
    } else if (key === "i" || key === "I") {
      event.preventDefault();
      toggleInstructions();
    } else if ((key === "r" || key === "R") && state.current && hidden(state.current)) {
      event.preventDefault();
      if (!event.repeat) reveal();
    } else if ((key === "b" || key === "B") && config.breakAfterMs > 0) {
      event.preventDefault();
      if (!event.repeat) toggleBreak();
    }
  });

  ["keydown", "mousedown", "mousemove", "wheel", "touchstart", "scroll"].forEach(function (name) {
    window.addEventListener(name, function () { state.lastInput = Date.now(); }, { passive: true, capture: true });
  });

  document.addEventListener("visibilitychange", function () {
    renderClock();
    if (document.visibilityState === "visible" && state.current && !state.reading) firstHeartbeat(state.current);
  });

  window.addEventListener("beforeunload", function (event) {
    if (state.pending.some(function (a) { return a.kind !== "undo"; })) {
      persist(); // sent again on the next load of this page, with the same keys
      event.preventDefault();
      event.returnValue = "";
    }
  });

  try {
    if (window.localStorage.getItem(INSTRUCTIONS_KEY) === "closed") el.instructions.open = false;
    el.instructions.addEventListener("toggle", function () {
      window.localStorage.setItem(INSTRUCTIONS_KEY, el.instructions.open ? "open" : "closed");
    });
  } catch (e) {
    /* no storage: instructions start open */
  }

  el.instructions.addEventListener("toggle", function () { setReading(el.instructions.open); });
  // Working in the open instructions (a click, a scroll, a focus) gives them the clock.
  ["mousedown", "wheel", "focusin"].forEach(function (name) {
    el.instructions.addEventListener(name, function () { setReading(true); }, { passive: true });
  });
  setReading(el.instructions.open);
  restore();
  renderCounts();
  renderClock();
  refreshStatus();
  loadWelfare();
  window.setInterval(tick, config.heartbeatMs);
  if (config.statusMs) window.setInterval(refreshStatus, config.statusMs);
  maybePrefetch();
  if (state.pending.length) run();
})();
