// The taskpool page: a task table kept live from /api/events, and a task view with live output
// from /api/tasks/ID/follow. Everything a task prints or sets goes in as text (textContent,
// createTextNode), never as markup.
"use strict";

const LIVE = new Set(["queued", "waiting", "scheduled", "running", "paused"]);
const KEEP_OUTPUT = 2 * 1024 * 1024; // characters of output kept on the page
const FIRST_OUTPUT = 256 * 1024; // bytes shown of a long output when a task page opens

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
};

let server = { read_only: true };
const tasks = new Map(); // id -> info
let filter = {}; // the --where pattern of the table
let sortKey = "id";
let sortDir = -1;

// ---- the URL: drop the token once the cookie holds it ---------------------------------------
if (new URLSearchParams(location.search).has("token")) {
  history.replaceState(null, "", location.pathname + location.hash);
}

async function api(path, opts) {
  const r = await fetch(path, Object.assign({ credentials: "same-origin" }, opts));
  const type = r.headers.get("content-type") || "";
  const body = type.startsWith("application/json") ? await r.json() : await r.arrayBuffer();
  if (!r.ok) {
    const msg = body && body.error ? body.error.message : "HTTP " + r.status;
    const e = new Error(msg);
    e.status = r.status;
    throw e;
  }
  return { body, headers: r.headers };
}

// ---- formatting -------------------------------------------------------------------------------
function fmtDuration(s) {
  if (s === null || s === undefined || isNaN(s)) return "";
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + "s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + "m" + String(Math.floor(s % 60)).padStart(2, "0") + "s";
  const h = Math.floor(m / 60);
  return h + "h" + String(m % 60).padStart(2, "0") + "m";
}

function fmtTime(t) {
  if (!t) return "";
  const d = new Date(t);
  if (isNaN(d)) return String(t);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

function duration(info) {
  if (typeof info.duration === "number") return info.duration;
  if (info.started_at && (info.state === "running" || info.state === "paused")) {
    return (Date.now() - new Date(info.started_at).getTime()) / 1000;
  }
  return null;
}

function progress(info) {
  const p = info.meta ? info.meta.progress : undefined;
  const n = typeof p === "number" ? p : parseFloat(p);
  return isNaN(n) ? null : Math.max(0, Math.min(100, n));
}

function exitText(info) {
  if (info.signal) return String(info.signal);
  if (info.exit_code !== null && info.exit_code !== undefined) return String(info.exit_code);
  return "";
}

function taskName(info) {
  if (info.name) return info.name;
  return (info.command || []).join(" ");
}

function failed(info) {
  return (info.exit_code !== null && info.exit_code !== undefined && info.exit_code !== 0) ||
    !!info.signal || info.state === "lost";
}

// ---- the --where pattern, as the library matches it (a deep subset) ---------------------------
function matches(pattern, value) {
  if (pattern !== null && typeof pattern === "object" && !Array.isArray(pattern)) {
    if (value === null || typeof value !== "object" || Array.isArray(value)) return false;
    return Object.keys(pattern).every((k) => k in value && matches(pattern[k], value[k]));
  }
  return JSON.stringify(pattern) === JSON.stringify(value);
}

// ---- the table --------------------------------------------------------------------------------
const rows = new Map(); // id -> <tr>
let sortQueued = false;

function sortValue(info, key) {
  switch (key) {
    case "progress": return progress(info) ?? -1;
    case "duration": return duration(info) ?? -1;
    case "exit": return info.exit_code ?? (info.signal ? 1000 : -1);
    case "started_at": return info.started_at ? new Date(info.started_at).getTime() : 0;
    case "name": return taskName(info).toLowerCase();
    case "id": return info.id;
    default: return info[key] ?? "";
  }
}

function fillRow(tr, info) {
  tr.replaceChildren();
  tr.dataset.id = info.id;
  tr.appendChild(el("td", "num", info.id));
  const name = el("td", "name");
  const a = el("a", null, taskName(info));
  a.href = "#/task/" + info.id;
  name.appendChild(a);
  name.title = (info.command || []).join(" ");
  tr.appendChild(name);
  tr.appendChild(el("td", "state s-" + (info.state === "exited" && failed(info) ? "failed" : info.state), info.state));
  tr.appendChild(el("td", null, info.group ?? ""));
  const p = progress(info);
  const pc = el("td");
  if (p !== null) {
    const bar = el("span", "bar");
    const fill = el("span");
    fill.style.width = p + "%";
    bar.appendChild(fill);
    pc.appendChild(bar);
    pc.appendChild(el("span", "pct", Math.round(p) + "%"));
  }
  tr.appendChild(pc);
  tr.appendChild(el("td", null, fmtTime(info.started_at)));
  tr.appendChild(el("td", "num dur", fmtDuration(duration(info))));
  tr.appendChild(el("td", "num " + (failed(info) ? "s-failed" : ""), exitText(info)));
}

function upsert(info) {
  const visible = matches(filter, info);
  tasks.set(info.id, info);
  let tr = rows.get(info.id);
  if (!visible) {
    if (tr) { tr.remove(); rows.delete(info.id); updateCount(); }
    return;
  }
  if (!tr) {
    tr = document.createElement("tr");
    rows.set(info.id, tr);
  }
  fillRow(tr, info);
  queueSort();
}

function remove(id) {
  tasks.delete(id);
  const tr = rows.get(id);
  if (tr) { tr.remove(); rows.delete(id); }
  updateCount();
}

function queueSort() {
  if (sortQueued) return;
  sortQueued = true;
  requestAnimationFrame(() => { sortQueued = false; sortRows(); });
}

function sortRows() {
  const ids = [...rows.keys()];
  ids.sort((a, b) => {
    const x = sortValue(tasks.get(a), sortKey), y = sortValue(tasks.get(b), sortKey);
    return (x < y ? -1 : x > y ? 1 : a - b) * sortDir;
  });
  const body = document.querySelector("#tasks tbody");
  const frag = document.createDocumentFragment();
  for (const id of ids) frag.appendChild(rows.get(id));
  body.appendChild(frag);
  for (const th of document.querySelectorAll("#tasks th")) {
    th.classList.toggle("asc", th.dataset.key === sortKey && sortDir > 0);
    th.classList.toggle("desc", th.dataset.key === sortKey && sortDir < 0);
  }
  updateCount();
}

function updateCount() {
  $("count").textContent = rows.size + (rows.size === 1 ? " task" : " tasks");
  $("empty").hidden = rows.size > 0;
}

async function loadTable() {
  const q = Object.keys(filter).length ? "?where=" + encodeURIComponent(JSON.stringify(filter)) : "";
  try {
    const { body } = await api("/api/tasks" + q);
    $("filter-error").textContent = "";
    for (const tr of rows.values()) tr.remove();
    rows.clear();
    tasks.clear();
    for (const info of body) upsert(info);
    sortRows();
  } catch (e) {
    $("filter-error").textContent = e.message;
  }
}

$("filter-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("filter").value.trim();
  if (!text) { filter = {}; loadTable(); return; }
  let p;
  try { p = JSON.parse(text); } catch (e) { $("filter-error").textContent = "not JSON: " + e.message; return; }
  if (p === null || typeof p !== "object" || Array.isArray(p)) {
    $("filter-error").textContent = "the pattern must be a JSON object";
    return;
  }
  filter = p;
  sessionStorage.setItem("filter", text);
  loadTable();
});

for (const th of document.querySelectorAll("#tasks th")) {
  th.addEventListener("click", () => {
    if (sortKey === th.dataset.key) sortDir = -sortDir;
    else { sortKey = th.dataset.key; sortDir = th.dataset.key === "name" ? 1 : -1; }
    sortRows();
  });
}

document.querySelector("#tasks tbody").addEventListener("click", (ev) => {
  const tr = ev.target.closest("tr");
  if (tr && ev.target.tagName !== "A") location.hash = "#/task/" + tr.dataset.id;
});

// Running tasks' durations tick.
setInterval(() => {
  if (document.hidden) return;
  for (const [id, tr] of rows) {
    const info = tasks.get(id);
    if (info && (info.state === "running" || info.state === "paused")) {
      tr.querySelector(".dur").textContent = fmtDuration(duration(info));
    }
  }
  if (current && current.info && LIVE.has(current.info.state)) showInfo(current.info);
}, 1000);

// ---- pool changes -----------------------------------------------------------------------------
let events = null;

function connectEvents() {
  events = new EventSource("/api/events");
  events.addEventListener("open", () => {
    $("conn").textContent = "live";
    $("conn").className = "conn live";
    // Listed after subscribing, so no change falls between the two.
    loadTable();
    if (current) loadTask(current.id);
  });
  events.addEventListener("error", () => {
    $("conn").textContent = "reconnecting";
    $("conn").className = "conn down";
  });
  events.addEventListener("task", (ev) => {
    const info = JSON.parse(ev.data);
    upsert(info);
    if (current && current.id === info.id) taskChanged(info);
  });
  events.addEventListener("removed", (ev) => {
    const { id } = JSON.parse(ev.data);
    remove(id);
    if (current && current.id === id) $("t-state").textContent = "removed";
  });
  events.addEventListener("resync", () => loadTable());
}

// ---- the task page ----------------------------------------------------------------------------
let current = null; // { id, info, follow, stream, offset, ansi }

function showInfo(info) {
  $("t-title").textContent = "task " + info.id + (info.name ? " · " + info.name : "");
  const st = $("t-state");
  st.textContent = info.state;
  st.className = "state s-" + (info.state === "exited" && failed(info) ? "failed" : info.state);
  const dl = $("t-info");
  dl.replaceChildren();
  const add = (k, v) => {
    if (v === null || v === undefined || v === "") return;
    dl.appendChild(el("dt", null, k));
    dl.appendChild(el("dd", null, v));
  };
  add("command", (info.command || []).join(" "));
  add("cwd", info.cwd);
  add("group", info.group);
  add("run", info.run);
  add("pid", info.pid);
  add("created", fmtTime(info.created_at));
  add("started", fmtTime(info.started_at));
  add("ended", fmtTime(info.ended_at));
  add("duration", fmtDuration(duration(info)));
  add("exit", exitText(info));
  add("status", info.status);
  add("reason", info.reason);
  add("next start", fmtTime(info.next_start));
  if (info.waiting_for) add("waiting for", JSON.stringify(info.waiting_for));
  $("t-meta").textContent = JSON.stringify(info.meta || {}, null, 2);
  const live = LIVE.has(info.state);
  const can = {
    kill: live, terminate: live, pause: info.state === "running",
    resume: info.state === "paused", restart: !live,
  };
  for (const b of document.querySelectorAll("#actions button")) {
    b.disabled = !can[b.dataset.action];
  }
  drawRuns(info);
}

function drawRuns(info) {
  const runs = (info.runs || []).filter((r) => r.ended_at || typeof r.duration === "number");
  $("runs").hidden = runs.length < 2;
  const box = $("chart");
  box.replaceChildren();
  if (runs.length < 2) return;
  const ns = "http://www.w3.org/2000/svg";
  const shown = runs.slice(-60);
  const w = 12, gap = 3, h = 80;
  const max = Math.max(...shown.map((r) => r.duration || 0), 0.001);
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", shown.length * (w + gap) + gap);
  svg.setAttribute("height", h + 4);
  svg.setAttribute("role", "img");
  shown.forEach((r, i) => {
    const bh = Math.max(2, ((r.duration || 0) / max) * h);
    const rect = document.createElementNS(ns, "rect");
    rect.setAttribute("x", gap + i * (w + gap));
    rect.setAttribute("y", h + 2 - bh);
    rect.setAttribute("width", w);
    rect.setAttribute("height", bh);
    const bad = (r.exit_code !== null && r.exit_code !== undefined && r.exit_code !== 0) || r.signal;
    rect.setAttribute("class", bad ? "bad" : "ok");
    const title = document.createElementNS(ns, "title");
    title.textContent = "run " + r.run + ": " + fmtDuration(r.duration) + ", exit " +
      (r.signal || (r.exit_code ?? "?")) + (r.started_at ? ", " + fmtTime(r.started_at) : "");
    rect.appendChild(title);
    svg.appendChild(rect);
  });
  box.appendChild(svg);
}

async function loadReport(id) {
  try {
    const { body } = await api("/api/tasks/" + id + "/report");
    $("report").textContent = JSON.stringify(body, null, 2);
    $("report").className = "";
  } catch (e) {
    $("report").textContent = e.status === 409 ? "no report yet" : e.message;
    $("report").className = "muted";
  }
}

function taskChanged(info) {
  const before = current.info;
  current.info = info;
  showInfo(info);
  if (!LIVE.has(info.state)) loadReport(info.id);
  // A restarted task: follow its new run.
  if (before && info.run !== before.run) startFollow();
}

async function loadTask(id) {
  try {
    const { body } = await api("/api/tasks/" + id);
    if (!current || current.id !== id) return;
    const first = !current.info;
    current.info = body;
    showInfo(body);
    loadReport(id);
    if (first || !current.follow) startFollow();
  } catch (e) {
    $("t-title").textContent = "task " + id;
    $("t-state").textContent = e.message;
  }
}

// ---- output: ANSI colours become classes; every other escape sequence is dropped ---------------
const ESC = /\x1b(?:\[([0-9;:?]*)([@-~])|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])/g;

function sgr(state, params) {
  const ps = params === "" ? [0] : params.split(/[;:]/).map((x) => parseInt(x, 10) || 0);
  for (let i = 0; i < ps.length; i++) {
    const p = ps[i];
    if (p === 0) { state.fg = null; state.bg = null; state.b = state.i = state.u = false; }
    else if (p === 1) state.b = true;
    else if (p === 3) state.i = true;
    else if (p === 4) state.u = true;
    else if (p === 22) state.b = false;
    else if (p === 23) state.i = false;
    else if (p === 24) state.u = false;
    else if (p >= 30 && p <= 37) state.fg = p - 30;
    else if (p >= 90 && p <= 97) state.fg = p - 90 + 8;
    else if (p === 39) state.fg = null;
    else if (p >= 40 && p <= 47) state.bg = p - 40;
    else if (p >= 100 && p <= 107) state.bg = p - 100;
    else if (p === 49) state.bg = null;
    else if (p === 38 || p === 48) {
      // 256-colour and true colour: the first 16 map to the palette, the rest are skipped.
      if (ps[i + 1] === 5) {
        const c = ps[i + 2];
        if (c < 16) { if (p === 38) state.fg = c; else state.bg = c % 8; }
        i += 2;
      } else if (ps[i + 1] === 2) i += 4;
    }
  }
}

function classOf(state) {
  const c = [];
  if (state.b) c.push("a-b");
  if (state.i) c.push("a-i");
  if (state.u) c.push("a-u");
  if (state.fg !== null) c.push("a-f" + state.fg);
  if (state.bg !== null) c.push("a-g" + state.bg);
  return c.join(" ");
}

function appendOutput(text) {
  const out = $("output");
  const atEnd = out.scrollTop + out.clientHeight >= out.scrollHeight - 8;
  const a = current.ansi;
  text = a.carry + text;
  a.carry = "";
  // An escape sequence cut at the chunk's end waits for the next chunk.
  const cut = text.lastIndexOf("\x1b");
  if (cut >= 0 && cut > text.length - 32) {
    const tail = text.slice(cut);
    ESC.lastIndex = 0;
    const m = ESC.exec(tail);
    if (!m || m.index !== 0) { a.carry = tail; text = text.slice(0, cut); }
  }
  const frag = document.createDocumentFragment();
  let last = 0;
  const piece = (s) => {
    if (!s) return;
    const cls = classOf(a);
    frag.appendChild(cls ? el("span", cls, s) : document.createTextNode(s));
  };
  ESC.lastIndex = 0;
  let m;
  while ((m = ESC.exec(text)) !== null) {
    piece(text.slice(last, m.index));
    if (m[2] === "m") sgr(a, m[1]);
    last = ESC.lastIndex;
  }
  piece(text.slice(last));
  out.appendChild(frag);
  a.length += text.length;
  // Keep the page's memory bounded: drop the oldest pieces.
  while (a.length > KEEP_OUTPUT && out.firstChild) {
    a.length -= (out.firstChild.textContent || "").length;
    out.removeChild(out.firstChild);
  }
  if (atEnd && !current.scrolledUp) out.scrollTop = out.scrollHeight;
}

$("output").addEventListener("scroll", () => {
  if (!current) return;
  const out = $("output");
  current.scrolledUp = out.scrollTop + out.clientHeight < out.scrollHeight - 8;
});

function stopFollow() {
  if (current && current.follow) { current.follow.close(); current.follow = null; }
}

function followKey() { return "out:" + current.id + ":" + current.stream; }

// Follow the output from `offset` on (an EventSource resumes with Last-Event-ID by itself on a
// dropped connection; a new one is opened at the last offset seen).
function openFollow() {
  const c = current;
  const url = "/api/tasks/" + c.id + "/follow?stream=" + c.stream + "&offset=" + c.offset;
  const es = new EventSource(url);
  c.follow = es;
  $("follow-state").textContent = "following";
  const decoder = new TextDecoder();
  es.addEventListener("output", (ev) => {
    if (current !== c || c.follow !== es) return;
    const d = JSON.parse(ev.data);
    let text;
    if (typeof d.text === "string") text = d.text;
    else {
      const bin = atob(d.base64);
      const bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      text = decoder.decode(bytes, { stream: true });
    }
    // Ids are RUN:OFFSET.
    const at = ev.lastEventId.slice(ev.lastEventId.lastIndexOf(":") + 1);
    c.offset = parseInt(at, 10) || c.offset;
    appendOutput(text);
  });
  // The run followed comes first: another than the one shown (the task was restarted while the
  // connection was down) is shown afresh.
  es.addEventListener("run", (ev) => {
    if (current !== c || c.follow !== es) return;
    const d = JSON.parse(ev.data);
    if (c.run != null && d.run !== c.run) { startFollow(); return; }
    c.run = d.run;
  });
  es.addEventListener("end", (ev) => {
    if (current !== c || c.follow !== es) return;
    es.close();
    c.follow = null;
    $("follow-state").textContent = "ended";
    taskChanged(JSON.parse(ev.data));
  });
  es.addEventListener("error", (ev) => {
    if (current !== c || c.follow !== es) return;
    if (ev.data) {
      es.close();
      c.follow = null;
      $("follow-state").textContent = JSON.parse(ev.data).error.message;
    } else if (es.readyState === EventSource.CLOSED) {
      // The server refused (503, 401…): try again from where we were, a little later.
      c.follow = null;
      $("follow-state").textContent = "reconnecting";
      setTimeout(() => { if (current === c && !c.follow) openFollow(); }, 2000);
    } else {
      $("follow-state").textContent = "reconnecting";
    }
  });
}

async function startFollow() {
  stopFollow();
  const c = current;
  const gen = ++c.gen;
  $("output").replaceChildren();
  c.ansi = { fg: null, bg: null, b: false, i: false, u: false, carry: "", length: 0 };
  c.scrolledUp = false;
  c.offset = 0;
  c.run = null;
  // A long output: show its last part only.
  try {
    const { headers } = await api("/api/tasks/" + c.id + "/output?stream=" + c.stream + "&len=0");
    const end = parseInt(headers.get("x-taskpool-end"), 10) || 0;
    if (current !== c || c.gen !== gen) return;
    if (end > FIRST_OUTPUT) {
      c.offset = end - FIRST_OUTPUT;
      $("output").appendChild(el("span", "a-f8", "… " + c.offset + " earlier bytes not shown\n"));
    }
  } catch (e) {
    // Follow anyway; the follow route reports its own errors.
  }
  if (current === c && c.gen === gen) openFollow();
}

for (const r of document.querySelectorAll("input[name=stream]")) {
  r.addEventListener("change", () => {
    if (!current) return;
    current.stream = r.value;
    startFollow();
  });
}

for (const b of document.querySelectorAll("#actions button")) {
  b.addEventListener("click", async () => {
    if (!current) return;
    const action = b.dataset.action;
    if (!confirm(action + " task " + current.id + "?")) return;
    $("action-error").textContent = "";
    try {
      const opts = { method: "POST", headers: { "content-type": "application/json" }, body: "{}" };
      const { body } = await api("/api/tasks/" + current.id + "/" + action, opts);
      if (body && body.id === current.id) taskChanged(body);
    } catch (e) {
      $("action-error").textContent = e.message;
    }
  });
}

// ---- views ------------------------------------------------------------------------------------
function route() {
  const m = location.hash.match(/^#\/task\/(\d+)$/);
  if (m) {
    const id = parseInt(m[1], 10);
    if (current && current.id === id) return;
    stopFollow();
    const checked = document.querySelector("input[name=stream]:checked");
    current = { id, info: null, follow: null, stream: checked ? checked.value : "combined", offset: 0, gen: 0 };
    $("list-view").hidden = true;
    $("task-view").hidden = false;
    $("t-title").textContent = "task " + id;
    $("t-state").textContent = "";
    $("t-info").replaceChildren();
    $("t-meta").textContent = "";
    $("output").replaceChildren();
    $("report").textContent = "";
    loadTask(id);
  } else {
    stopFollow();
    current = null;
    $("task-view").hidden = true;
    $("list-view").hidden = false;
  }
}

async function start() {
  try {
    server = (await api("/api/server")).body;
  } catch (e) {
    $("conn").textContent = e.message;
    $("conn").className = "conn down";
    return;
  }
  $("pool").textContent = server.pool;
  $("actions").hidden = !!server.read_only;
  const saved = sessionStorage.getItem("filter");
  if (saved) {
    $("filter").value = saved;
    try { filter = JSON.parse(saved); } catch (e) { filter = {}; }
  }
  window.addEventListener("hashchange", route);
  route();
  connectEvents();
}

start();
