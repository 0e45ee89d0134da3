// Messages in flight, drawn on one 2D canvas over the SVG with the same pan/zoom transform.
// Positions follow the simulation clock: a dot sent at sim time t with latency d is at
// u = (now - t) / d along its edge, so pause, speed and replay stay exact. A leg shorter
// than MIN_WALL_MS on screen is stretched to it (at 200 req/s a 0.5 ms hop would be
// invisible); when an edge is busy, only MAX_PER_LANE dots per direction are drawn and the
// edge's thickness carries the aggregate.

export const MIN_WALL_MS = 320;
const MAX_PER_LANE = 10;
const MAX_DOTS = 4000;
const FLASH_WALL_MS = 700;
const LANE_OFFSET = 3.5;

export const COLORS = {
  req: "#3b82f6",
  retry: "#a855f7",
  ok: "#10b981",
  err: "#ef4444",
  drop: "#ef4444",
  timeout: "#f59e0b",
  peer: "#64748b",
  vote: "#0d9488",
  undo: "#f97316",
};

/** The overlay's key for a peer link (both directions share it) and whether a message
 *  from `from` travels it backwards. */
export function peerKey(from, to) {
  return from < to ? [`peer:${from}|${to}`, false] : [`peer:${to}|${from}`, true];
}

export class Dots {
  constructor(canvas, editor) {
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d");
    this.editor = editor;
    this.dots = [];
    this.flashes = [];
    this.lanes = new Map();
    this.seen = 0;
    this.drawn = 0;
  }

  clear() {
    this.dots = [];
    this.flashes = [];
    this.lanes.clear();
    this.seen = 0;
    this.drawn = 0;
  }

  /** Share of the messages of the last few seconds that got a dot (1 = all). */
  get sampled() {
    return this.seen ? this.drawn / this.seen : 1;
  }

  /** A message event at the playhead; speed is sim-ms per wall-ms. */
  take(ev, speed) {
    if (ev.k === "peer.send") {
      const [e, rev] = peerKey(ev.from, ev.to);
      this.seen += 1;
      const key = `${e}|${rev}`;
      let lane = this.lanes.get(key);
      if (!lane) this.lanes.set(key, (lane = {busy: 0, last: -Infinity}));
      const dur = Math.max(ev.d || 0, MIN_WALL_MS * speed);
      const color = /vote/.test(ev.type || "") ? COLORS.vote : COLORS.peer;
      if (color === COLORS.peer && (lane.busy >= 2 || ev.t - lane.last < dur / 2)) return;
      if (this.dots.length >= MAX_DOTS) return;
      this.drawn += 1;
      lane.busy += 1;
      lane.last = ev.t;
      this.dots.push({e, lane, rev, t: ev.t, dur, color});
    } else if (ev.k === "peer.drop" || ev.k === "peer.hold") {
      const [e] = peerKey(ev.from, ev.to);
      this.flashes.push({e, t: ev.t, dur: FLASH_WALL_MS * speed, kind: "drop"});
      if (this.flashes.length > 200) this.flashes.shift();
    } else if (ev.k === "msg.send") {
      this.seen += 1;
      const key = `${ev.e}|${ev.dir}`;
      let lane = this.lanes.get(key);
      if (!lane) this.lanes.set(key, (lane = {busy: 0, last: -Infinity}));
      const dur = Math.max(ev.d || 0, MIN_WALL_MS * speed);
      // A compensation (a saga undoing a step) has its own colour.
      const color = ev.dir === "rep" ? (ev.ok === false ? COLORS.err : COLORS.ok)
        : ev.undo ? COLORS.undo : (ev.attempt > 1 ? COLORS.retry : COLORS.req);
      // Sample evenly in time: a busy lane gets at most MAX_PER_LANE dots per travel time.
      // Errors, retries and compensations are always drawn: they are what people look for.
      const rare = color === COLORS.err || color === COLORS.retry || color === COLORS.undo;
      if (!rare && (lane.busy >= MAX_PER_LANE || ev.t - lane.last < dur / MAX_PER_LANE)) return;
      if (this.dots.length >= MAX_DOTS) return;
      this.drawn += 1;
      lane.busy += 1;
      lane.last = ev.t;
      this.dots.push({e: ev.e, lane, rev: ev.dir === "rep", t: ev.t, dur, color});
    } else if (ev.k === "msg.drop" || ev.k === "msg.timeout") {
      this.flashes.push({e: ev.e, t: ev.t, dur: FLASH_WALL_MS * speed,
                         kind: ev.k === "msg.drop" ? "drop" : "timeout"});
      if (this.flashes.length > 200) this.flashes.shift();
    }
  }

  _resize() {
    const dpr = window.devicePixelRatio || 1;
    const w = this.canvas.clientWidth, h = this.canvas.clientHeight;
    if (this.canvas.width !== Math.round(w * dpr) || this.canvas.height !== Math.round(h * dpr)) {
      this.canvas.width = Math.round(w * dpr);
      this.canvas.height = Math.round(h * dpr);
    }
    return dpr;
  }

  /** Draw everything in flight at sim time now. */
  draw(now) {
    const ctx = this.ctx;
    const dpr = this._resize();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    const {x, y, k} = this.editor.view;
    ctx.setTransform(dpr * k, 0, 0, dpr * k, dpr * x, dpr * y);
    const curves = this.editor.curves;

    // Retire dots that arrived (or whose edge is gone); one path per colour.
    const byColor = new Map();
    const alive = [];
    for (const dot of this.dots) {
      const u = (now - dot.t) / dot.dur;
      const curve = curves.get(dot.e);
      if (u >= 1 || !curve) {
        dot.lane.busy -= 1;
        continue;
      }
      alive.push(dot);
      if (u < 0) continue;
      let list = byColor.get(dot.color);
      if (!list) byColor.set(dot.color, (list = []));
      list.push(position(curve, dot.rev ? 1 - u : u, dot.rev ? -LANE_OFFSET : LANE_OFFSET));
    }
    this.dots = alive;
    const r = Math.max(3, 3.2 / Math.sqrt(k));
    for (const [color, points] of byColor) {
      ctx.beginPath();
      for (const [px, py] of points) {
        ctx.moveTo(px + r, py);
        ctx.arc(px, py, r, 0, Math.PI * 2);
      }
      ctx.fillStyle = color;
      ctx.fill();
    }

    // Drops (a red cross mid-edge) and timeouts (an amber ring at the caller) fade out.
    this.flashes = this.flashes.filter((f) => now - f.t < f.dur && curves.has(f.e));
    ctx.lineWidth = 2;
    for (const f of this.flashes) {
      const a = Math.max(0, 1 - (now - f.t) / f.dur);
      if (now < f.t) continue;
      const curve = curves.get(f.e);
      ctx.globalAlpha = a;
      if (f.kind === "drop") {
        const [px, py] = position(curve, 0.5, 0);
        ctx.strokeStyle = COLORS.drop;
        ctx.beginPath();
        ctx.moveTo(px - 5, py - 5); ctx.lineTo(px + 5, py + 5);
        ctx.moveTo(px + 5, py - 5); ctx.lineTo(px - 5, py + 5);
        ctx.stroke();
      } else {
        const [px, py] = position(curve, 0.04, 0);
        ctx.strokeStyle = COLORS.timeout;
        ctx.beginPath();
        ctx.arc(px, py, 6 + 10 * (1 - a), 0, Math.PI * 2);
        ctx.stroke();
      }
    }
    ctx.globalAlpha = 1;
    // Forget old counts slowly so "sampled" describes the recent past.
    if (this.seen > 5000) {
      this.seen /= 2;
      this.drawn /= 2;
    }
  }
}

/** A point at u along a Bézier, moved sideways by offset (requests and replies use
 *  opposite sides of the edge, so both directions stay visible). */
function position(c, u, offset) {
  const v = 1 - u;
  const a = v * v * v, b = 3 * v * v * u, d = 3 * v * u * u, e = u * u * u;
  const px = a * c[0] + b * c[2] + d * c[4] + e * c[6];
  const py = a * c[1] + b * c[3] + d * c[5] + e * c[7];
  if (!offset) return [px, py];
  const tx = 3 * v * v * (c[2] - c[0]) + 6 * v * u * (c[4] - c[2]) + 3 * u * u * (c[6] - c[4]);
  const ty = 3 * v * v * (c[3] - c[1]) + 6 * v * u * (c[5] - c[3]) + 3 * u * u * (c[7] - c[5]);
  const len = Math.hypot(tx, ty) || 1;
  return [px - (ty / len) * offset, py + (tx / len) * offset];
}
