// What a run has shown so far, per node and per edge: the state behind the badges, the edge
// thickness and the event log. It only reads events; editor.js draws what it holds.

const STATE_TONES = {
  OPEN: "danger", HALF_OPEN: "warn", CLOSED: "ok", DOWN: "danger", leader: "accent",
  candidate: "warn", follower: "muted", READY: "ok", RECOVERING: "warn",
};
const FAULT_WORDS = {
  crash: () => "crashed", hang: () => "hung", slow: (v) => `slow ×${v}`,
  error_rate: (v) => `errors ${Math.round(v * 100)}%`, rate: (v) => `load ×${v}`,
  drop_rate: (v) => `drop ${Math.round(v * 100)}%`, partition: () => "partitioned",
  set: () => "param set",
};
const LOG_LIMIT = 400;

export function describeFault(f) {
  const word = FAULT_WORDS[f.action]?.(f.value) ?? f.action;
  return word;
}

export class LiveState {
  constructor() {
    this.reset();
  }

  reset() {
    this.nodes = new Map();
    this.edges = new Map();
    this.system = null;
    this.log = [];
    this.faults = [];   // every fault seen: {target, action, value, at_s, until_s}
    this.dirty = true;
  }

  _node(id) {
    let n = this.nodes.get(id);
    if (!n) {
      n = {state: null, down: false, faults: [], metric: null};
      this.nodes.set(id, n);
    }
    return n;
  }

  _edge(id) {
    let e = this.edges.get(id);
    if (!e) {
      e = {bucket: -1, count: 0, rate: 0, faults: []};
      this.edges.set(id, e);
    }
    return e;
  }

  /** Take one event in. Returns a log entry for the events people should read. */
  apply(ev) {
    switch (ev.k) {
      case "msg.send": {
        if (ev.dir !== "req") return null;
        const e = this._edge(ev.e);
        const bucket = Math.floor(ev.t / 1000);
        if (bucket !== e.bucket) {
          e.rate = bucket === e.bucket + 1 ? e.count : 0;
          e.bucket = bucket;
          e.count = 0;
        }
        e.count += 1;
        return null;
      }
      case "metric":
        this._metric(ev);
        return null;
      case "node.state": {
        this._node(ev.node).state = ev.to;
        this.dirty = true;
        return this._log(ev, "state", ev.node, `${ev.from} → ${ev.to}${ev.reason ? `: ${ev.reason}` : ""}`);
      }
      case "node.down":
        this._node(ev.node).down = true;
        this.dirty = true;
        return this._log(ev, "down", ev.node, "is down");
      case "node.up":
        this._node(ev.node).down = false;
        this.dirty = true;
        return this._log(ev, "up", ev.node, "is up again");
      case "fault": {
        if (ev.action === "end") {
          for (const holder of [this.nodes.get(ev.target), this.edges.get(ev.target)]) {
            if (holder) holder.faults = holder.faults.filter((f) => f.action !== ev.of);
          }
          this.dirty = true;
          return this._log(ev, "fault", ev.target, `${ev.of} is over`);
        }
        const fault = {...ev};
        this.faults.push(fault);
        if (ev.action !== "recover") {
          const holder = this.nodes.has(ev.target) || !this.edges.has(ev.target)
            ? this._node(ev.target) : this._edge(ev.target);
          holder.faults.push(fault);
        }
        this.dirty = true;
        const until = ev.until_s != null ? ` until ${ev.until_s} s` : "";
        return this._log(ev, "fault", ev.target, `${describeFault(ev)}${until}`);
      }
      case "note":
        return this._log(ev, "note", ev.node, ev.text);
      default:
        return null;
    }
  }

  _metric(ev) {
    if (ev.node === "*") {
      this.system = ev;
      // Once a second: edges that carried nothing in the last second fall back to idle.
      const bucket = Math.floor(ev.t / 1000);
      for (const e of this.edges.values()) {
        if (e.bucket < bucket - 1) e.rate = 0;
        else if (e.bucket === bucket - 1 && e.count && !e.rate) e.rate = e.count;
      }
      // Faults whose time is up come off the badges.
      const now = ev.t / 1000;
      for (const holder of [...this.nodes.values(), ...this.edges.values()]) {
        holder.faults = holder.faults.filter((f) => f.until_s == null || f.until_s > now);
      }
    } else {
      const n = this._node(ev.node);
      n.metric = ev;
      if (ev.state) n.state = ev.state;
    }
    this.dirty = true;
  }

  _log(ev, type, node, message) {
    const entry = {t: ev.t, type, node: node ?? "", text: message};
    this.log.push(entry);
    if (this.log.length > LOG_LIMIT) this.log.splice(0, this.log.length - LOG_LIMIT);
    return entry;
  }

  /** What the editor draws on a node: badges, the line under its label, its load. */
  nodeView(id) {
    const n = this.nodes.get(id);
    if (!n) return null;
    const m = n.metric || {};
    const pills = [];
    if (n.down) pills.push({name: "down", text: "DOWN", tone: "danger"});
    else if (n.state) pills.push({name: "state", text: n.state, tone: STATE_TONES[n.state] || "muted"});
    for (const f of n.faults.slice(-1)) {
      if (f.action !== "crash") pills.push({name: "fault", text: describeFault(f), tone: "warn"});
    }
    if (typeof m.q === "number" && m.q > 0) {
      pills.push({name: "queue", text: `queue ${m.q}`, tone: m.q >= 100 ? "danger" : m.q >= 10 ? "warn" : "muted", place: "bottom"});
    }
    if (typeof m.hit_ratio === "number") {
      pills.push({name: "hits", text: `hits ${Math.round(m.hit_ratio * 100)}%`, tone: "muted", place: "bottom"});
    }
    return {down: n.down, fault: n.faults.length > 0, util: typeof m.util === "number" ? m.util : null,
            sub: subline(m), pills};
  }

  edgeView(id) {
    const e = this.edges.get(id);
    if (!e) return null;
    return {rate: e.rate, fault: e.faults.length > 0};
  }
}

function subline(m) {
  if (!m || !m.node) return "";
  if (typeof m.util === "number") return `${m.done ?? 0}/s · util ${Math.round(m.util * 100)}%`;
  if (typeof m.permitted === "number") return `${m.permitted} ok · ${m.rejected ?? 0} rej /s`;
  if (typeof m.healthy === "number") return `${m.healthy} healthy · ${m.inflight ?? 0} busy`;
  if (typeof m.arr === "number") return `${m.arr} in · ${m.done ?? 0} out /s`;
  if (typeof m.inflight === "number") return `${m.inflight} in flight`;
  return "";
}
