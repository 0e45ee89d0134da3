// Live charts (Plotly, loaded as a plain script): latency p50/p99, throughput, errors.
// Points come from the system-wide "metric" events (node "*"), one per sim-second, and are
// appended in batches (Plotly.extendTraces) at most every FLUSH_MS.

const FLUSH_MS = 250;
const FONT = {family: "Inter, system-ui, sans-serif", size: 11, color: "#475569"};
const CONFIG = {displayModeBar: false, responsive: true};

// Titles and keys are HTML above each chart (playground.html), so the plots keep their room.
function layout(extra = {}) {
  return {
    font: FONT,
    margin: {l: 40, r: 10, t: 6, b: 22},
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    showlegend: false,
    xaxis: {range: [0, 60], gridcolor: "#eef2f7", zeroline: false, ticksuffix: " s", fixedrange: true},
    yaxis: {gridcolor: "#eef2f7", zeroline: false, rangemode: "tozero", fixedrange: true},
    shapes: [],
    annotations: [],
    ...extra,
  };
}

const line = (name, color, extra = {}) => ({
  x: [], y: [], name, type: "scatter", mode: "lines", line: {color, width: 2, shape: "linear"},
  hovertemplate: `%{y:.3~f}<extra>${name}</extra>`, ...extra,
});

export class Charts {
  constructor(latencyEl, throughputEl, errorsEl) {
    this.els = [latencyEl, throughputEl, errorsEl];
    this.ready = typeof window.Plotly !== "undefined";
    this.pending = [];
    this.lastFlush = 0;
    this.baseline = null;
    this.faultKeys = new Set();
    if (!this.ready) {
      for (const el of this.els) el.textContent = "Charts need plotly.js, which did not load.";
    }
  }

  /** Empty charts spanning the run's duration, with its scheduled faults shaded. */
  reset(durationS, faults = []) {
    if (!this.ready) return;
    this.pending = [];
    this.faultKeys.clear();
    const range = [0, Math.max(1, durationS)];
    const P = window.Plotly;
    P.react(this.els[0], [line("p50", "#3b82f6"), line("p99", "#8b5cf6")],
            layout({yaxis: {gridcolor: "#eef2f7", zeroline: false, type: "log", dtick: 1, fixedrange: true}}), CONFIG);
    P.react(this.els[1], [line("ok/s", "#10b981", {fill: "tozeroy", fillcolor: "rgba(16,185,129,0.12)"}),
                          line("done/s", "#64748b", {line: {color: "#64748b", width: 1.5, dash: "dot"}})],
            layout(), CONFIG);
    P.react(this.els[2], [bar("failed", "#ef4444"), bar("rejected", "#f97316"), bar("timeout", "#f59e0b")],
            layout({barmode: "stack", bargap: 0.15}), CONFIG);
    for (const el of this.els) P.relayout(el, {"xaxis.range": range});
    for (const f of faults) this.addFault(f);
    if (this.baseline) this._drawBaseline();
  }

  /** Shade a fault's window on every chart. */
  addFault(f) {
    if (!this.ready || f.action === "end" || f.action === "recover") return;
    const key = `${f.target}|${f.action}|${f.at_s}`;
    if (this.faultKeys.has(key)) return;
    this.faultKeys.add(key);
    const end = f.until_s ?? this.els[0].layout?.xaxis?.range?.[1] ?? f.at_s + 1;
    for (const el of this.els) {
      const shapes = [...(el.layout.shapes || []), {
        type: "rect", xref: "x", yref: "paper", x0: f.at_s, x1: end, y0: 0, y1: 1,
        fillcolor: "rgba(239,68,68,0.07)", line: {width: 0}, layer: "below"}];
      // Stagger the labels so that faults close in time stay readable.
      const row = (this.faultKeys.size - 1) % 3;
      const annotations = el === this.els[0] ? [...(el.layout.annotations || []), {
        x: f.at_s, xref: "x", y: 1, yref: "paper", xanchor: "left", yanchor: "top", yshift: -12 * row,
        text: `${f.target}: ${f.action}`, showarrow: false,
        font: {size: 9, color: "#b91c1c"}}] : el.layout.annotations;
      window.Plotly.relayout(el, {shapes, annotations});
    }
  }

  /** Mark a moment (a counterexample's) on every chart with a vertical line; null clears it. */
  mark(tS) {
    this.marked = tS;
    if (!this.ready) return;
    for (const el of this.els) {
      if (!el.layout) continue;
      const shapes = (el.layout.shapes || []).filter((sh) => sh.name !== "seek");
      if (tS !== null && tS !== undefined) {
        shapes.push({type: "line", name: "seek", xref: "x", yref: "paper", x0: tS, x1: tS, y0: 0, y1: 1,
                     line: {color: "#dc2626", width: 2}});
      }
      window.Plotly.relayout(el, {shapes});
    }
  }

  /** One system metric event ("*"): its point is drawn at the next flush. */
  add(ev) {
    this.pending.push(ev);
  }

  flush(wallNow, force = false) {
    if (!this.ready || !this.pending.length) return;
    if (!force && wallNow - this.lastFlush < FLUSH_MS) return;
    this.lastFlush = wallNow;
    const pts = this.pending;
    this.pending = [];
    const xs = pts.map((m) => m.t / 1000);
    const P = window.Plotly;
    // Log axes cannot show 0: a second with no completed request has no latency point.
    const lat = (key) => pts.map((m) => (m.done > 0 && m[key] > 0 ? m[key] : null));
    P.extendTraces(this.els[0], {x: [xs, xs], y: [lat("p50"), lat("p99")]}, [0, 1]);
    P.extendTraces(this.els[1], {x: [xs, xs], y: [pts.map((m) => m.ok ?? 0), pts.map((m) => m.done ?? 0)]}, [0, 1]);
    P.extendTraces(this.els[2], {x: [xs, xs, xs],
                                 y: [pts.map((m) => m.err ?? 0), pts.map((m) => m.rej ?? 0), pts.map((m) => m.to ?? 0)]},
                   [0, 1, 2]);
  }

  /** The baseline's per-second p99 and throughput, drawn dashed for comparison. */
  setBaseline(points) {
    this.baseline = points;
    if (this.ready) this._drawBaseline();
  }

  _drawBaseline() {
    const pts = this.baseline;
    const xs = pts.map((m) => m.t / 1000);
    const P = window.Plotly;
    const dashed = (name, color) => line(name, color, {line: {color, width: 1.5, dash: "dash"}, opacity: 0.8});
    const drop = (el, name) => {
      const i = el.data.findIndex((t) => t.name === name);
      if (i >= 0) P.deleteTraces(el, i);
    };
    drop(this.els[0], "p99 baseline");
    drop(this.els[1], "ok/s baseline");
    P.addTraces(this.els[0], {...dashed("p99 baseline", "#94a3b8"), x: xs,
                              y: pts.map((m) => (m.done > 0 && m.p99 > 0 ? m.p99 : null))});
    P.addTraces(this.els[1], {...dashed("ok/s baseline", "#94a3b8"), x: xs, y: pts.map((m) => m.ok ?? 0)});
    for (const key of document.querySelectorAll("[data-baseline-key]")) key.hidden = false;
  }
}

function bar(name, color) {
  return {x: [], y: [], name, type: "bar", marker: {color},
          hovertemplate: `%{y}<extra>${name}</extra>`};
}
