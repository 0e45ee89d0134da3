// The playground page: wires the model, the editor, the run stream, the dots, the charts
// and the panels together, and keeps the playback clock.
//
// The playback clock: frames arrive with [t0, t1] of simulated time; the playhead advances
// by wall time × speed, never past the last t1 received, and every event is applied when
// the playhead passes its t. A frame is acknowledged once the playhead has passed its end,
// so the server never runs more than its window ahead of what has been shown.

import * as api from "./api.js";
import {Charts} from "./charts.js";
import {Dots} from "./animation.js";
import {fmtMs, fmtNum, h} from "./dom.js";
import {Editor, monogram} from "./editor.js";
import {Inspector} from "./inspector.js";
import {LiveState, describeFault} from "./live.js";
import {Model, emptyDocument} from "./model.js";
import {RunStream} from "./stream.js";
import {counterexampleButton, renderComparison, renderSummary} from "./summary.js";
import {downloadChart, downloadTopology, readTopologyFile, renderVerification} from "./share.js";

const CATCH_UP_WALL_MS = 2000;   // further behind the stream than this: jump ahead
const TOAST_MS = 6000;
const LOG_SHOWN = 200;
const FAULT_MENU = [
  ["crash", "Crash it for 10 s", {action: "crash"}, 10],
  ["pause", "Pause it for 5 s (stop-the-world)", {action: "pause"}, 5],
  ["partition", "Cut it off from the others for 5 s", {action: "partition"}, 5],
  ["slow", "Make it 10× slower for 10 s", {action: "slow", value: 10}, 10],
  ["error_rate", "Fail every call for 10 s", {action: "error_rate", value: 1}, 10],
];
const HISTORY_LIMIT = 200000;

const $ = (sel, root = document) => root.querySelector(sel);
const boot = JSON.parse($("#boot").textContent || "{}");

const model = new Model();
const live = new LiveState();
let editor, dots, charts, inspector;
let kinds = {};
let baselineDoc = null;
let run = null;          // the run being shown (live or replay)
let lastWall = performance.now();
let lastSummary = null;  // {docJson, summary} of the last run that finished
let logCount = 0;
let menuOpening = 0;     // until then, a click does not close the node menu (see bindUi)

// ---- start -------------------------------------------------------------------------------

async function start() {
  const stage = $("[data-stage]");
  try {
    const cat = await api.catalog();
    kinds = cat.kinds || {};
  } catch (err) {
    banner(`Could not load the component kinds: ${err.message}`, "error");
  }
  editor = new Editor(stage, model, {
    kinds,
    onSelect: (selection) => {
      inspector.show(selection);
      if (selection) showTab("inspect");
    },
    onContextMenu: openContextMenu,
    onNodeClick: (id, x, y) => {
      if (!run || run.finished || !run.controllable) return;
      menuOpening = performance.now() + 250;
      openContextMenu(id, x, y);
    },
  });
  editor.live = live;
  dots = new Dots($("[data-dots]"), editor);
  charts = new Charts($("[data-chart=latency]"), $("[data-chart=throughput]"), $("[data-chart=errors]"));
  inspector = new Inspector($("[data-inspector]"), model, editor);
  inspector.show(null);
  buildPalette();
  bindUi();
  $("[data-import-file]").addEventListener("change", (ev) => importFile(ev.target));
  document.addEventListener("click", (ev) => {
    if (!ev.target.closest("[data-file-menu]") || ev.target.closest("[data-export]")) closeFileMenu();
  });

  model.onChange((reason) => {
    editor.render();
    const clustered = model.doc.nodes.some((n) => n.params?.cluster);
    for (const el of document.querySelectorAll("[data-legend-peer]")) el.hidden = !clustered;
    // Compensations have their own colour where a saga orchestrator can send them.
    const compensating = model.doc.nodes.some((n) => n.kind === "saga_orchestrator" || n.params?.compensate);
    for (const el of document.querySelectorAll("[data-legend-undo]")) el.hidden = !compensating;
    if (reason === "load") {
      editor.fit();
      inspector.show(null);
    }
    if (reason === "load" || reason === "scenario" || reason === "remove") renderScenario();
    if (!run && (reason === "load" || reason === "scenario")) {
      $("[data-clock-total]").textContent = `${fmtNum(model.doc.scenario.duration_s, 1)} s`;
    }
  });

  try {
    if (boot.document) {
      model.load(boot.document);
    } else if (boot.topology) {
      model.load(await api.topology(boot.topology));
    } else if (boot.scenario) {
      model.load(await api.scenario(boot.scenario));
    } else if (boot.pattern) {
      const detail = await api.pattern(boot.pattern);
      model.load(detail.topology);
      baselineDoc = detail.baseline;
    } else {
      model.load(emptyDocument());
    }
    if (boot.pattern && !baselineDoc && (boot.topology || boot.scenario)) {
      baselineDoc = (await api.pattern(boot.pattern).catch(() => null))?.baseline || null;
    }
  } catch (err) {
    banner(`Could not load the topology: ${err.message}`, "error");
    model.load(emptyDocument());
  }
  charts.reset(model.doc.scenario.duration_s, model.doc.scenario.faults);
  if (boot.run) attachToRun(boot.run);
  requestAnimationFrame(loop);
  window.addEventListener("resize", () => editor.render());
}

function buildPalette() {
  const list = $("[data-palette]");
  for (const [kind, spec] of Object.entries(kinds)) {
    const item = h("li", {class: "palette-item", draggable: "true", "data-palette-kind": kind,
                          tabindex: "0", title: spec.description || ""},
                   h("span", {class: "mono", "data-kind": kind}, monogram(kind)),
                   h("span", {class: "palette-label"}, spec.label || kind));
    list.append(item);
  }
  list.addEventListener("dragstart", (ev) => {
    const item = ev.target.closest("[data-palette-kind]");
    if (!item) return;
    ev.dataTransfer.setData("application/x-pattern-kind", item.dataset.paletteKind);
    ev.dataTransfer.effectAllowed = "copy";
  });
  list.addEventListener("click", (ev) => {
    const item = ev.target.closest("[data-palette-kind]");
    if (item) editor.addNode(item.dataset.paletteKind);
  });
  list.addEventListener("keydown", (ev) => {
    const item = ev.target.closest("[data-palette-kind]");
    if (item && (ev.key === "Enter" || ev.key === " ")) {
      ev.preventDefault();
      editor.addNode(item.dataset.paletteKind);
    }
  });
}

// ---- UI wiring ----------------------------------------------------------------------------

const ACTIONS = {
  run: () => startRun(),
  pause: () => togglePause(),
  stop: () => stopRun(),
  compare: () => compare(),
  save: () => save(),
  "export-topology": () => { closeFileMenu(); downloadTopology(model.toDocument()); },
  "import-topology": () => { closeFileMenu(); $("[data-import-file]").click(); },
  "chart-png": (el) => chartPng(el),
  "zoom-in": () => editor.zoomBy(1.2),
  "zoom-out": () => editor.zoomBy(1 / 1.2),
  fit: () => editor.fit(),
  "delete-selected": () => editor.deleteSelection(),
  "remove-fault": (el) => model.removeFault(Number(el.dataset.index)),
  "close-banner": () => banner(""),
  counterexample: (el) => seek(Number(el.dataset.t), JSON.parse(el.dataset.nodes || "[]")),
  "seek-end": () => seekEnd(),
};

function bindUi() {
  document.addEventListener("click", (ev) => {
    const el = ev.target.closest("[data-action]");
    if (el && ACTIONS[el.dataset.action] && !el.disabled) {
      ACTIONS[el.dataset.action](el);
    }
    const tab = ev.target.closest("[data-tab]");
    if (tab) showTab(tab.dataset.tab);
    // The click that ends a pointerup which opened the menu on a node must not close it.
    const opening = performance.now() < menuOpening;
    menuOpening = 0;
    if (!ev.target.closest("[data-context-menu]") && !opening) closeContextMenu();
  });
  document.addEventListener("keydown", (ev) => {
    if (ev.target.closest("input, select, textarea")) return;
    if (ev.key === "Delete" || ev.key === "Backspace") {
      ev.preventDefault();
      editor.deleteSelection();
    } else if (ev.key === "Escape") {
      closeContextMenu();
      editor.select(null);
    }
  });
  $("[data-speed]").addEventListener("change", (ev) => {
    const speed = Number(ev.target.value);
    if (!run) return;
    run.speed = speed;
    if (run.controllable) run.stream.send({action: "speed", value: speed});
  });
  $("[data-scenario]").addEventListener("change", (ev) => {
    const input = ev.target.closest("[data-scenario-field]");
    if (!input) return;
    const n = Number(input.value);
    if (input.value === "" || !Number.isFinite(n)) return;
    model.setScenario(input.dataset.scenarioField, input.dataset.scenarioField === "seed" ? Math.trunc(n) : n);
    charts.reset(model.doc.scenario.duration_s, model.doc.scenario.faults);
  });
}

function showTab(name) {
  for (const tab of document.querySelectorAll("[data-tab]")) {
    tab.setAttribute("aria-selected", String(tab.dataset.tab === name));
  }
  for (const panel of document.querySelectorAll("[data-panel]")) {
    panel.hidden = panel.dataset.panel !== name;
  }
}

function renderScenario() {
  const sc = model.doc.scenario;
  for (const input of document.querySelectorAll("[data-scenario-field]")) {
    const v = sc[input.dataset.scenarioField];
    if (document.activeElement !== input) input.value = v ?? "";
  }
  const list = $("[data-fault-list]");
  list.replaceChildren();
  sc.faults.forEach((f, i) => {
    const when = f.until_s != null ? `${f.at_s}–${f.until_s} s` : `from ${f.at_s} s`;
    list.append(h("li", {class: "fault-item"},
                  h("span", {class: "fault-chip"}, "fault"),
                  h("span", {}, h("b", {}, f.target), ` ${describeFault(f)} · ${when}`),
                  h("button", {type: "button", class: "icon-btn", "data-action": "remove-fault",
                               "data-index": i, title: "Remove this fault"}, "×")));
  });
}

function banner(message, tone = "info", extra = null) {
  const el = $("[data-banner]");
  if (!message) {
    el.hidden = true;
    return;
  }
  el.className = `banner tone-${tone}`;
  el.replaceChildren(h("span", {}, message));
  if (extra) el.append(extra);
  el.append(h("button", {type: "button", class: "icon-btn", "data-action": "close-banner", title: "Dismiss"}, "×"));
  el.hidden = false;
}

function setRunState(state) {
  const controls = $("[data-run-controls]");
  controls.dataset.state = state;
  const active = state === "running" || state === "paused" || state === "starting";
  $("[data-action=run]").disabled = active;
  $("[data-action=pause]").disabled = !(state === "running" || state === "paused");
  $("[data-action=stop]").disabled = !(active && run?.controllable);
  $("[data-pause-label]").textContent = state === "paused" ? "Resume" : "Pause";
  editor.locked = active;
  editor.render();
  inspector.setLocked();
  document.body.classList.toggle("is-running", active);
}

function status(text, link = null) {
  const el = $("[data-run-status]");
  el.replaceChildren(text);
  if (link) el.append(" · ", h("a", {href: link, title: "This run's own page: replay it or share it"}, "link"));
}

// ---- runs ---------------------------------------------------------------------------------

function newRun(id, {controllable, speed, durationS}) {
  run?.stream.close();
  live.reset();
  dots.clear();
  logCount = 0;
  $("[data-log]").replaceChildren();
  $("[data-log-empty]").hidden = false;
  $("[data-log-count]").textContent = "";
  $("[data-toasts]").replaceChildren();
  run = {id, frames: [], playhead: null, maxT1: 0, end: null, paused: false, finished: false,
         speed, controllable, durationMs: durationS * 1000, stream: null, history: [], seekT: null};
  editor.highlight([]);
  charts.mark(null);
  $("[data-seek-note]").hidden = true;
  renderChecks(null);
  $("[data-speed]").value = String(speed);
  showExports(id);
  $("[data-clock-total]").textContent = `${fmtNum(durationS, 1)} s`;
  run.stream = new RunStream(api.wsUrl(`/ws/runs/${encodeURIComponent(id)}/`), {
    onFrame: (frame) => {
      if (run?.id !== id) return;
      frame.i = 0;
      run.frames.push(frame);
      run.maxT1 = Math.max(run.maxT1, frame.t1);
      if (run.playhead === null) run.playhead = frame.t0;
    },
    onEnd: (message) => { if (run?.id === id) run.end = message; },
    onError: (message) => banner(message.field ? `${message.field}: ${message.error}` : message.error, "error"),
    onStatus: (text) => { if (text !== "connected") status(text); },
  });
  return run;
}

async function startRun() {
  if (run && !run.finished && run.controllable) return;
  banner("");
  const doc = model.toDocument();
  const speed = Number($("[data-speed]").value) || 1;
  setRunState("starting");
  status("starting…");
  let created;
  try {
    created = await api.createRun({topology: doc, mode: "live", speed});
  } catch (err) {
    setRunState("idle");
    status("");
    showError(err);
    return;
  }
  const r = newRun(created.id, {controllable: true, speed, durationS: doc.scenario.duration_s});
  r.docJson = JSON.stringify(doc);
  charts.reset(doc.scenario.duration_s, doc.scenario.faults);
  r.stream.open(0);
  setRunState("running");
  status("running", created.url);
}

async function attachToRun(id) {
  let info;
  try {
    info = await api.run(id);
  } catch (err) {
    banner(`Could not open run ${id}: ${err.message}`, "error");
    return;
  }
  const ended = ["finished", "failed", "cancelled"].includes(info.status);
  const durationS = model.doc.scenario.duration_s;
  const r = newRun(id, {controllable: !ended, speed: info.speed || 1, durationS});
  charts.reset(durationS, model.doc.scenario.faults);
  r.stream.open(0);
  setRunState("running");
  status(ended ? `replaying a ${info.status} run` : "running");
  if (ended) showVerification(id);
}

function togglePause() {
  if (!run) return;
  run.paused = !run.paused;
  if (run.controllable) run.stream.send({action: run.paused ? "pause" : "resume"});
  setRunState(run.paused ? "paused" : "running");
}

function stopRun() {
  if (!run?.controllable) return;
  run.stream.send({action: "stop"});
  status("stopping…");
}

function showError(err) {
  const match = /nodes\[(\d+)\]/.exec(err.field || "");
  if (match) {
    const node = model.doc.nodes[Number(match[1])];
    if (node) editor.select({type: "node", id: node.id});
  }
  const edge = /edges\[(\d+)\]/.exec(err.field || "");
  if (edge) {
    const e = model.doc.edges[Number(edge[1])];
    if (e) editor.select({type: "edge", id: e.id});
  }
  banner(err.field ? `${err.field}: ${err.message}` : err.message, "error");
}

function finish() {
  run.finished = true;
  dots.clear();
  charts.flush(0, true);
  const end = run.end;
  setRunState("ended");
  status(`${end.status}`, `/r/${run.id}`);
  const results = $("[data-results]");
  results.replaceChildren(renderSummary(end.summary, {status: end.status, error: end.error}));
  renderChecks(end.summary, end.status);
  if (boot.run === run.id) showVerification(run.id);
  if (end.summary && end.status === "finished") lastSummary = {docJson: run.docJson, summary: end.summary};
  if (end.status === "failed") banner(`The run failed: ${end.error || "unknown error"}`, "error");
  else if (end.attempts > 1) {
    banner(`A worker running this was lost; the run was delivered again and finished ` +
           `(attempt ${end.attempts}), with no frame lost.`, "info");
  }
  showTab("results");
  $("[data-action=pause]").disabled = true;
  $("[data-action=stop]").disabled = true;
}

// ---- the playback loop --------------------------------------------------------------------

function loop(wallNow) {
  const dt = Math.min(250, wallNow - lastWall);
  lastWall = wallNow;
  if (run && run.playhead !== null && !run.finished) {
    if (!run.paused) {
      let target = run.playhead + dt * run.speed;
      // A live run that got ahead of the view jumps; a replay (every frame is there already)
      // plays at its speed, or it would race through the run.
      if (run.controllable && (run.maxT1 - target) / run.speed > CATCH_UP_WALL_MS) {
        target = run.maxT1 - 500 * run.speed;
      }
      run.playhead = Math.min(target, run.maxT1);
    }
    consume();
    if (run.end && !run.frames.length) finish();
  }
  if (live.dirty) {
    live.dirty = false;
    editor.render();
    renderStats();
  }
  dots.draw(run?.playhead ?? 0);
  charts.flush(wallNow);
  renderClock();
  requestAnimationFrame(loop);
}

function consume() {
  const now = run.playhead;
  let acked = 0;
  while (run.frames.length) {
    const f = run.frames[0];
    const events = f.events;
    while (f.i < events.length && events[f.i].t <= now) take(events[f.i++]);
    if (f.i < events.length || now < f.t1) break;
    run.frames.shift();
    acked = f.seq;
  }
  if (acked) run.stream.ack(acked);
}

function take(ev) {
  const entry = live.apply(ev);
  // What a seek after the end re-applies: everything but the messages themselves.
  if (!ev.k.startsWith("msg.") && !ev.k.startsWith("peer.") && run.history.length < HISTORY_LIMIT) {
    run.history.push(ev);
  }
  if (ev.k.startsWith("msg.") || ev.k.startsWith("peer.")) dots.take(ev, run.speed);
  else if (ev.k === "metric" && ev.node === "*") charts.add(ev);
  else if (ev.k === "fault") charts.addFault(ev);
  if (entry) {
    appendLog(entry);
    if (entry.type === "note") toast(entry);
  }
}

function renderStats() {
  const m = live.system;
  const set = (key, value) => { $(`[data-stat=${key}]`).textContent = value; };
  set("rps", m ? fmtNum(m.ok) : "–");
  set("p50", m && m.done ? fmtMs(m.p50) : "–");
  set("p99", m && m.done ? fmtMs(m.p99) : "–");
  set("errors", m ? fmtNum((m.err || 0) + (m.rej || 0) + (m.to || 0)) : "–");
  const bad = m && m.done ? ((m.err || 0) + (m.rej || 0) + (m.to || 0)) / Math.max(1, m.done) : 0;
  $("[data-stat=errors]").closest(".stat").classList.toggle("bad", bad > 0.05);
  const share = dots.sampled;
  $("[data-sampled]").textContent = share < 0.97 ? `drawing ~${Math.max(1, Math.round(share * 100))}% of messages` : "";
}

function renderClock() {
  const now = run?.seekT ?? run?.playhead ?? 0;
  $("[data-clock-now]").textContent = `${(now / 1000).toFixed(1)} s`;
  const total = run?.durationMs || model.doc.scenario.duration_s * 1000;
  $("[data-clock-fill]").style.width = `${Math.min(100, (100 * now) / total)}%`;
}

function appendLog(entry) {
  const list = $("[data-log]");
  $("[data-log-empty]").hidden = true;
  logCount += 1;
  $("[data-log-count]").textContent = String(logCount);
  list.prepend(h("li", {class: `log-item type-${entry.type}`},
                 h("span", {class: "log-t"}, `${(entry.t / 1000).toFixed(1)} s`),
                 h("span", {class: "log-node"}, entry.node),
                 h("span", {class: "log-text"}, entry.text)));
  while (list.children.length > LOG_SHOWN) list.lastChild.remove();
}

function toast(entry) {
  const box = $("[data-toasts]");
  // Notes usually start with their node's name already.
  const named = entry.node && entry.text.startsWith(entry.node);
  const el = h("div", {class: "toast"}, h("span", {class: "toast-t"}, `${(entry.t / 1000).toFixed(1)} s`),
               named ? null : h("b", {}, entry.node), named ? null : " ", entry.text);
  box.append(el);
  while (box.children.length > 3) box.firstChild.remove();
  setTimeout(() => el.classList.add("is-leaving"), TOAST_MS - 400);
  setTimeout(() => el.remove(), TOAST_MS);
}

// ---- faults from the canvas ----------------------------------------------------------------

function openContextMenu(nodeId, clientX, clientY) {
  const menu = $("[data-context-menu]");
  const stageRect = $("[data-stage]").getBoundingClientRect();
  menu.replaceChildren();
  const running = run && !run.finished && run.controllable;
  menu.append(h("li", {class: "menu-title"}, running ? `Inject a fault into ${nodeId}` : nodeId));
  if (running) {
    const node = model.node(nodeId);
    const kind = kinds[node?.kind] || {};
    for (const [name, label, fault, seconds] of FAULT_MENU) {
      // A pause and a cut-off are for nodes that keep memory or talk to peers.
      if (name === "pause" && !kind.pausable) continue;
      if (name === "partition" && !node?.params?.cluster && !model.doc.edges.some((e) => e.from === nodeId || e.to === nodeId)) continue;
      if ((name === "slow" || name === "error_rate") && node?.params?.cluster) continue;
      const item = h("button", {type: "button", "data-fault": name}, label);
      item.addEventListener("click", () => {
        inject({target: nodeId, ...fault}, label, seconds);
        closeContextMenu();
      });
      menu.append(h("li", {}, item));
    }
    // Points the kind declares where a crash does the most harm (between a commit and what
    // must follow it): armed now, it strikes the next time the node gets there.
    for (const point of kind.crash_points || []) {
      const label = `Crash at ${point.replaceAll("_", " ")} (next time, down 2 s)`;
      const item = h("button", {type: "button", "data-fault": "crash-point", "data-point": point}, label);
      item.addEventListener("click", () => {
        inject({target: nodeId, action: "crash", point, down_s: 2}, label, 30);
        closeContextMenu();
      });
      menu.append(h("li", {}, item));
    }
  } else {
    const del = h("button", {type: "button"}, "Delete node");
    del.disabled = editor.locked;
    del.addEventListener("click", () => { editor.deleteSelection(); closeContextMenu(); });
    menu.append(h("li", {class: "menu-hint"}, "Run the topology to inject faults."), h("li", {}, del));
  }
  menu.style.left = `${Math.min(clientX - stageRect.left, stageRect.width - 240)}px`;
  menu.style.top = `${Math.min(clientY - stageRect.top, stageRect.height - 150)}px`;
  menu.hidden = false;
}

function closeContextMenu() {
  const menu = $("[data-context-menu]");
  if (menu) menu.hidden = true;
}

function inject(fault, label, seconds = 10) {
  // The worker applies it at its next frame, which is at or after the last one received.
  const nowS = Math.max(run.maxT1, run.playhead || 0) / 1000;
  const until = Math.round((nowS + seconds) * 1000) / 1000;
  run.stream.send({action: "inject", fault: {...fault, until_s: until}});
  toast({t: run.playhead || 0, node: fault.target, text: `${label[0].toLowerCase()}${label.slice(1)} (you injected this)`});
}

// ---- checks beside the charts ---------------------------------------------------------------

/** The run's checks (the summary's `checks`), green or red; a counterexample is a button
 *  that seeks to its moment. Before the end: what will be checked, and when. */
function renderChecks(summary, status = "finished") {
  const box = $("[data-checks]");
  if (!box) return;
  const checks = summary?.checks || [];
  $("[data-checks-state]").textContent = !summary ? (run && !run.finished ? "at the end of the run" : "")
    : checks.length ? `${checks.filter((c) => c.ok).length}/${checks.length} pass` : "";
  box.closest(".checks-card").classList.toggle("has-failure", checks.some((c) => !c.ok));
  if (!summary) {
    box.replaceChildren(h("p", {class: "muted small"}, run && !run.finished
      ? "Checked on this run's own events when it ends: each invariant, pass or fail, with the first counterexample."
      : "Run it: each invariant is checked on the run's events, pass or fail."));
    return;
  }
  if (!checks.length) {
    box.replaceChildren(h("p", {class: "muted small"}, status === "finished" ? "This run declares no checks." : `The run ${status}.`));
    return;
  }
  const list = h("ul", {class: "checks live-checks"});
  for (const c of checks) {
    const body = h("div", {}, h("b", {}, c.name), c.detail ? h("small", {}, c.detail) : null);
    const jump = counterexampleButton(c.counterexample);
    if (jump) body.append(jump);
    list.append(h("li", {class: c.ok ? "pass" : "fail", "data-check": c.name, "data-ok": String(c.ok)},
                  h("span", {class: "mark"}, c.ok ? "✓" : "✗"), body));
  }
  box.replaceChildren(list);
}

/** Go to a moment of the run: the charts mark it and the nodes it names are marked. After
 *  the end, the canvas shows the state then (re-applied from the run's events). */
function seek(tMs, nodes) {
  if (!run) return;
  charts.mark(tMs / 1000);
  editor.highlight(nodes);
  if (!run.finished) return;
  live.reset();
  for (const ev of run.history) {
    if (ev.t > tMs) break;
    live.apply(ev);
  }
  run.seekT = tMs;
  live.dirty = true;
  renderClock();
  status(`showing ${(tMs / 1000).toFixed(3)} s`, null);
  const note = $("[data-seek-note]");
  note.replaceChildren(`The canvas shows ${(tMs / 1000).toFixed(3)} s. `,
                       h("button", {type: "button", class: "link-btn", "data-action": "seek-end"}, "Back to the end"));
  note.hidden = false;
}

function seekEnd() {
  if (!run?.finished) return;
  live.reset();
  for (const ev of run.history) live.apply(ev);
  run.seekT = null;
  live.dirty = true;
  charts.mark(null);
  editor.highlight([]);
  $("[data-seek-note]").hidden = true;
  status(`${run.end?.status || "ended"}`, `/r/${run.id}`);
}

// ---- save and compare ---------------------------------------------------------------------

async function save() {
  try {
    // Saving what was opened from a saved link makes a new link that says where it came
    // from; the old link keeps showing what it showed.
    const saved = await api.saveTopology(model.toDocument(), boot.source || null);
    const url = new URL(saved.url, location.href).href;
    let copied = false;
    try {
      await navigator.clipboard.writeText(url);
      copied = true;
    } catch {
      copied = false;
    }
    const what = saved.forked_from ? "Forked to a new link (the one you opened is unchanged)" : "Saved";
    banner(copied ? `${what}, and the link is copied:` : `${what}. Share this link:`, "ok",
           h("a", {href: saved.url, class: "banner-link", "data-saved-link": ""}, url));
  } catch (err) {
    showError(err);
  }
}

/** Run a document fast (metrics only) to its end: its summary and per-second metrics. */
function fastRun(body) {
  return api.createRun({...body, mode: "fast"}).then((created) => new Promise((resolve, reject) => {
    const metrics = [];
    const stream = new RunStream(api.wsUrl(`/ws/runs/${encodeURIComponent(created.id)}/`), {
      onFrame: (frame) => {
        for (const ev of frame.events) if (ev.k === "metric" && ev.node === "*") metrics.push(ev);
        stream.ack(frame.seq);
      },
      onEnd: (message) => {
        stream.close();
        if (message.summary) resolve({summary: message.summary, metrics, id: created.id});
        else reject(new Error(message.error || `the run ${message.status}`));
      },
      onError: (message) => reject(new Error(message.error)),
    });
    stream.open(0);
  }));
}

async function compare() {
  if (!boot.pattern) return;
  const button = $("[data-action=compare]");
  button.disabled = true;
  showTab("results");
  const box = $("[data-comparison]");
  const doc = model.toDocument();
  const docJson = JSON.stringify(doc);
  box.replaceChildren(renderComparison(lastSummary?.docJson === docJson ? lastSummary.summary : null, null,
                                       "Running the baseline…"));
  try {
    const baselineBody = baselineDoc
      ? {topology: {...baselineDoc, scenario: {...baselineDoc.scenario, seed: doc.scenario.seed,
                                              duration_s: doc.scenario.duration_s}}}
      : {slug: boot.pattern, baseline: true};
    const mine = lastSummary?.docJson === docJson ? Promise.resolve({summary: lastSummary.summary, metrics: null})
      : fastRun({topology: doc});
    const [withPattern, baseline] = await Promise.all([mine, fastRun(baselineBody)]);
    box.replaceChildren(renderComparison(withPattern.summary, baseline.summary,
      "Same seed and the same teaching fault; the baseline is the system without the pattern. " +
      "Dashed lines on the charts are the baseline."));
    if (withPattern.metrics && !run) {
      charts.reset(doc.scenario.duration_s, doc.scenario.faults);
      for (const m of withPattern.metrics) charts.add(m);
      charts.flush(0, true);
      $("[data-results]").replaceChildren(renderSummary(withPattern.summary));
      renderChecks(withPattern.summary);
    }
    charts.setBaseline(baseline.metrics);
  } catch (err) {
    box.replaceChildren(h("p", {class: "error-text"}, `Comparison failed: ${err.message}`));
  } finally {
    button.disabled = false;
  }
}

start();

// ---- files: export, import, chart images, verification ------------------------------------

function closeFileMenu() {
  const menu = $("[data-file-menu]");
  if (menu) menu.open = false;
}

/** The run's event exports become available once there is a run to export. */
function showExports(id) {
  for (const link of document.querySelectorAll("[data-export]")) {
    link.href = `/api/runs/${encodeURIComponent(id)}/events.${link.dataset.export}`;
    link.hidden = false;
  }
  $("[data-export-hint]").hidden = true;
}

async function importFile(input) {
  const file = input.files?.[0];
  input.value = "";  // choosing the same file again fires change again
  if (!file) return;
  if (editor.locked) {
    banner("Stop the run before importing a topology.", "error");
    return;
  }
  try {
    const doc = await readTopologyFile(file);
    model.load(doc);
    charts.reset(doc.scenario.duration_s, doc.scenario.faults);
    banner(`Imported ${file.name}: ${doc.nodes.length} nodes, ${doc.edges.length} edges. ` +
           "Nothing is saved until you share it.", "ok");
  } catch (err) {
    // A bad file changes nothing on the canvas: say what is wrong with it.
    banner(`Could not import ${file.name}: ${err.field ? `${err.field}: ` : ""}${err.message}`, "error");
  }
}

async function chartPng(button) {
  const name = button.dataset.chartName;
  const el = $(`[data-chart=${name}]`);
  const title = button.closest("figure")?.querySelector("figcaption b")?.textContent || name;
  const stem = run ? `run-${run.id}-${name}` : `${name}`;
  try {
    await downloadChart(el, title, stem);
  } catch (err) {
    banner(`Could not make the image: ${err.message}`, "error");
  }
}

const verifying = new Set();

/** The run page says whether the run re-simulates to the same events (in the Pattern and
 * Results tabs); asked once a page, the server keeps the verdict. */
async function showVerification(id) {
  const boxes = [...document.querySelectorAll("[data-verify]")];
  if (!boxes.length || verifying.has(id)) return;
  verifying.add(id);
  const show = (make) => boxes.forEach((box) => { box.replaceChildren(make()); box.hidden = false; });
  show(() => h("p", {class: "verify muted"}, "Verifying: re-simulating this run from its stored document…"));
  try {
    const result = await api.verifyRun(id);
    show(() => renderVerification(result));
  } catch (err) {
    show(() => h("p", {class: "verify muted"}, `Could not verify this run: ${err.message}`));
  }
}
