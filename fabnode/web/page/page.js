// The node's status page: live from /events (server-sent events), or by polling /status.json.
// Everything the node sends is data, some of it from slicers (file names): it reaches the page
// through textContent only, never as markup.
"use strict";

(function () {
  const KEY_STORE = "fabnode.apiKey";
  const POLL_MS = 2000;
  const STALE_MS = 10000;
  const STATES = {
    locked: "Locked", unlocked: "Ready", running: "Running", paused: "Paused",
    cooldown: "Cooling down", fault: "Fault", maintenance: "Maintenance",
  };
  const $ = (id) => document.getElementById(id);
  let view = null;
  let lastUpdate = 0;
  let cancelArmed = 0;

  function text(id, value) {
    $(id).textContent = value === null || value === undefined ? "" : String(value);
  }

  function el(tag, value, cls) {
    const node = document.createElement(tag);
    if (value !== undefined && value !== null) node.textContent = String(value);
    if (cls) node.className = cls;
    return node;
  }

  function duration(s) {
    if (typeof s !== "number" || !isFinite(s) || s < 0) return "\u2013";
    s = Math.round(s);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    if (h > 0) return h + " h " + String(m).padStart(2, "0") + " min";
    if (m > 0) return m + " min " + String(s % 60).padStart(2, "0") + " s";
    return s + " s";
  }

  function clock(date) {
    return String(date.getHours()).padStart(2, "0") + ":" + String(date.getMinutes()).padStart(2, "0");
  }

  function when(iso) {
    // The node sends UTC ISO times: shown in the browser's own time, the day only when not today.
    const date = new Date(iso);
    if (isNaN(date.getTime())) return String(iso);
    const today = new Date().toDateString() === date.toDateString();
    return (today ? "" : date.toLocaleDateString() + " ") + clock(date);
  }

  function num(value, digits) {
    return typeof value === "number" && isFinite(value) ? value.toFixed(digits) : "\u2013";
  }

  function renderState(v) {
    const state = v.state || "";
    const stateEl = $("state");
    stateEl.textContent = STATES[state] || state || "unknown";
    stateEl.className = "state" + (STATES[state] ? " state-" + state : "");
    text("machine", v.machine || "fabnode");
    document.title = (v.machine || "fabnode") + " \u00b7 " + stateEl.textContent;
    $("fault").hidden = !v.fault;
    text("fault", v.fault ? "Fault: " + v.fault : "");
    text("member", v.member || (state === "locked" ? "nobody" : "a member"));
  }

  function renderJob(v) {
    const job = v.job;
    const percent = job && typeof job.percent === "number" ? job.percent : null;
    text("job-name", job ? job.name || "job " + (job.id === null ? "" : job.id) : "No job");
    text("job-percent", percent === null ? "" : percent.toFixed(1) + " %");
    $("job-fill").style.width = (percent === null ? 0 : Math.max(0, Math.min(100, percent))) + "%";
    $("job-bar").setAttribute("aria-valuenow", percent === null ? "0" : String(percent));
    text("job-elapsed", duration(job ? job.elapsed_s : null));
    text("job-eta", duration(job ? job.eta_s : null));
    const eta = job && typeof job.eta_s === "number" ? job.eta_s : null;
    text("job-end", eta === null ? "" : "(done \u2248 " + clock(new Date(Date.now() + eta * 1000)) + ")");
    const paused = v.state === "paused";
    $("job-paused").hidden = !(paused && job && job.pause_reason);
    text("job-paused", paused && job && job.pause_reason ? "Paused: " + job.pause_reason : "");
    const active = !!job && (v.state === "running" || paused);
    $("pause").disabled = !active;
    $("cancel").disabled = !active;
    text("pause", paused ? "Resume" : "Pause");
  }

  function renderTemps(v) {
    const list = $("temp-list");
    list.replaceChildren();
    for (const t of v.temperatures || []) {
      const item = el("li", null);
      item.append(el("span", t.name + " ", "dim"), el("b", num(t.actual, 1)));
      if (typeof t.target === "number" && t.target > 0) item.append(el("span", " / " + num(t.target, 0), "dim"));
      item.append(document.createTextNode(" \u00b0C"));
      list.append(item);
    }
    $("temps").hidden = list.childElementCount === 0;
  }

  function renderQueue(v) {
    const list = $("queue-list");
    const queue = v.queue || [];
    list.replaceChildren();
    for (const u of queue) {
      const item = el("li", null);
      item.append(el("span", u.file, "file"));
      const details = [u.owner ? u.owner : "a member", duration(u.estimated_s), num(u.filament_g, 1) + " g",
                       "cost " + num(u.cost, 2)];
      if (u.print_now) details.push("starts on tap");
      item.append(el("span", details.join(" \u00b7 "), "dim small"));
      list.append(item);
    }
    text("queue-count", queue.length ? "(" + queue.length + ")" : "");
    $("queue-empty").hidden = queue.length > 0;
  }

  function renderRefused(v) {
    const r = v.last_refused;
    $("refused").hidden = !r;
    text("refused-reason", r ? r.reason : "");
    text("refused-who", r && r.member ? "(" + r.member + ")" : "");
    text("refused-at", r && r.at ? when(r.at) : "");
  }

  function render(v) {
    view = v;
    lastUpdate = Date.now();
    renderState(v);
    renderJob(v);
    renderTemps(v);
    renderQueue(v);
    renderRefused(v);
    freshness();
  }

  function freshness() {
    const stale = Date.now() - lastUpdate > STALE_MS;
    const live = $("live");
    live.className = "live" + (stale ? " stale" : "");
    live.title = lastUpdate ? (stale ? "no update for a while" : "live") : "no update yet";
  }

  function poll() {
    fetch("status.json", { cache: "no-store" })
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error(r.status))))
      .then(render)
      .catch(() => {})
      .finally(() => setTimeout(poll, POLL_MS));
  }

  function connect() {
    if (!window.EventSource) return poll();
    const source = new EventSource("events");
    source.onmessage = (e) => render(JSON.parse(e.data));
    source.onerror = () => {
      // CLOSED: refused (the node's streams are all taken): poll instead. Otherwise it reconnects itself.
      if (source.readyState === EventSource.CLOSED) poll();
    };
  }

  // --- actions that need the member's key ---------------------------------------------------------

  function key() {
    return $("key").value.trim();
  }

  function needKey(where) {
    if (key()) return false;
    $("tools").open = true;
    $("key").focus();
    text(where, "Paste your API key first (under \u201cYour key and uploads\u201d).");
    return true;
  }

  function reason(response) {
    return response.json().then((body) => body, () => ({ error: "HTTP " + response.status }));
  }

  function jobCommand(body, done) {
    if (needKey("message")) return;
    text("message", "Sending\u2026");
    fetch("api/job", {
      method: "POST", headers: { "X-Api-Key": key(), "Content-Type": "application/json" },
      body: JSON.stringify(body),
    }).then((r) => {
      if (r.ok) return text("message", done);
      return reason(r).then((b) => text("message", "Refused: " + (b.error || "HTTP " + r.status)));
    }, () => text("message", "The node did not answer."));
  }

  $("pause").addEventListener("click", () => {
    const resume = view && view.state === "paused";
    jobCommand({ command: "pause", action: resume ? "resume" : "pause" }, resume ? "Resumed." : "Paused.");
  });

  $("cancel").addEventListener("click", () => {
    const button = $("cancel");
    if (Date.now() - cancelArmed > 4000) {  // a second press within 4 s cancels: no modal on a kiosk
      cancelArmed = Date.now();
      button.classList.add("armed");
      text("cancel", "Press again to cancel");
      setTimeout(() => { button.classList.remove("armed"); text("cancel", "Cancel"); }, 4000);
      return;
    }
    cancelArmed = 0;
    button.classList.remove("armed");
    text("cancel", "Cancel");
    jobCommand({ command: "cancel" }, "Cancelled.");
  });

  $("upload").addEventListener("submit", (e) => {
    e.preventDefault();
    const problems = $("problems");
    problems.replaceChildren();
    const file = $("upload-file").files[0];
    if (!file) return text("upload-result", "Choose a G-code file first.");
    if (needKey("upload-result")) return;
    const form = new FormData();  // as slicers send it: print, path, then the file
    form.append("print", $("upload-print").checked ? "true" : "false");
    form.append("path", "");
    form.append("file", file, file.name);
    text("upload-result", "Uploading " + file.name + "\u2026");
    $("upload-send").disabled = true;
    fetch("api/files/local", { method: "POST", headers: { "X-Api-Key": key() }, body: form })
      .then((r) => reason(r).then((b) => {
        if (r.ok) {
          text("upload-result", file.name + " uploaded: it waits for your tap.");
          return;
        }
        text("upload-result", "Refused: " + (b.error || "HTTP " + r.status));
        for (const p of Array.isArray(b.problems) ? b.problems : []) {
          const where = p && typeof p === "object" ? "line " + p.line + ": " + p.message : p;
          problems.append(el("li", where));
        }
      }), () => text("upload-result", "The node did not answer."))
      .finally(() => { $("upload-send").disabled = false; });
  });

  const keyInput = $("key");
  try { keyInput.value = localStorage.getItem(KEY_STORE) || ""; } catch (e) { /* storage off */ }
  keyInput.addEventListener("change", () => {
    try {
      if (key()) localStorage.setItem(KEY_STORE, key()); else localStorage.removeItem(KEY_STORE);
    } catch (e) { /* storage off: the key lasts until the page closes */ }
  });

  setInterval(freshness, 2000);
  connect();
})();
