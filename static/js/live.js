// What a run has shown so far, per node and per edge: the state behind the badges, the edge
// thickness and the event log. It only reads events; editor.js draws what it holds.

const STATE_TONES = {
  OPEN: "danger", HALF_OPEN: "warn", CLOSED: "ok", DOWN: "danger", leader: "accent",
  candidate: "warn", follower: "muted", READY: "ok", RECOVERING: "warn",
  "pre-candidate": "warn", PAUSED: "muted",
  STABLE: "ok", PREPARING_REBALANCE: "warn", COMPLETING_REBALANCE: "warn", EMPTY: "muted",
};
const ROLES = new Set(["leader", "candidate", "follower", "pre-candidate"]);
const FAULT_WORDS = {
  crash: () => "crashed", hang: () => "hung", slow: (v) => `slow ×${v}`,
  error_rate: (v) => `errors ${Math.round(v * 100)}%`, rate: (v) => `load ×${v}`,
  drop_rate: (v) => `drop ${Math.round(v * 100)}%`, partition: () => "partitioned",
  set: () => "param set", pause: () => "paused", clock_skew: () => "clock skewed",
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
    this.cuts = [];     // partitions in force: {key, node, target, groups, direction, mode}
    this.clusters = new Map();  // cluster name → member ids (set by the page from the document)
    this.dirty = true;
  }

  _node(id) {
    let n = this.nodes.get(id);
    if (!n) {
      n = {state: null, down: false, faults: [], metric: null, term: null, paused: false, life: null,
           flowsAt: null};
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
        // A group coordinator (an event log) says which group changed state.
        this._node(ev.node).state = ev.group ? `${ev.group}: ${ev.to}` : ev.to;
        const term = /\bterm (\d+)/.exec(ev.reason || "");
        if (ROLES.has(ev.to) && term && ev.to !== "pre-candidate") this._node(ev.node).term = Number(term[1]);
        this.dirty = true;
        return this._log(ev, "state", ev.node, `${ev.from} → ${ev.to}${ev.reason ? `: ${ev.reason}` : ""}`);
      }
      case "raft.term":
        this._node(ev.node).term = ev.to;
        this.dirty = true;
        return null;
      case "raft.leader":
        this._node(ev.node).term = ev.term;
        this.dirty = true;
        return this._log(ev, "state", ev.node, `leads term ${ev.term} (${ev.votes} votes)`);
      case "lock.grant":
      case "lock.release":
      case "lock.expire": {
        if (!ev.node) return null;
        const n = this._node(ev.node);
        if (ev.k === "lock.grant") n.lock = {holder: ev.worker, token: ev.token};
        else if (!n.lock || n.lock.token === ev.token) n.lock = {holder: null, token: ev.token};
        this.dirty = true;
        return null;
      }
      case "node.life": {
        const n = this._node(ev.node);
        n.life = ev.life;
        n.paused = ev.life === "PAUSED";
        if (ev.life === "DOWN") n.down = true;
        this.dirty = true;
        return ev.life === "PAUSED" || ev.life === "RECOVERING"
          ? this._log(ev, "state", ev.node, ev.reason || ev.life.toLowerCase()) : null;
      }
      case "node.down":
        this._node(ev.node).down = true;
        this.dirty = true;
        return this._log(ev, "down", ev.node, "is down");
      case "node.up":
        this._node(ev.node).down = false;
        // A role reported while down ("down") is stale once the node is back.
        if (this._node(ev.node).state === "down") this._node(ev.node).state = null;
        this.dirty = true;
        return this._log(ev, "up", ev.node, "is up again");
      case "fault": {
        const key = faultKey(ev);
        if (ev.action === "end") {
          if (ev.of === "partition") this.cuts = this.cuts.filter((c) => c.key !== key);
          for (const holder of [this.nodes.get(ev.node ?? ev.target), this.edges.get(ev.target)]) {
            if (holder) holder.faults = holder.faults.filter((f) => f.action !== ev.of);
          }
          this.dirty = true;
          return this._log(ev, "fault", ev.target, `${ev.of} is over`);
        }
        const fault = {...ev};
        this.faults.push(fault);
        if (ev.action === "partition") {
          this.cuts.push({key, node: ev.node ?? null, target: ev.target, groups: ev.groups || null,
                          direction: ev.direction || "both", mode: ev.mode || "drop", until_s: ev.until_s});
        }
        if (ev.action !== "recover") {
          const id = ev.node ?? ev.target;
          const holder = this.nodes.has(id) || !this.edges.has(id) ? this._node(id) : this._edge(id);
          holder.faults.push(fault);
        }
        this.dirty = true;
        const until = ev.until_s != null ? ` until ${ev.until_s} s` : "";
        const who = ev.node && ev.node !== ev.target ? `${ev.target} = ${ev.node}` : ev.target;
        return this._log(ev, "fault", who, `${describeFault(ev)}${until}`);
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
      this.cuts = this.cuts.filter((c) => c.until_s == null || c.until_s > now);
    } else {
      const n = this._node(ev.node);
      n.metric = ev;
      if (ev.state) n.state = ev.state;
      if (ev.role) n.state = ev.role;
      if (typeof ev.term === "number") n.term = ev.term;
      if (typeof ev.paused === "boolean") n.paused = ev.paused;
      // Every member's commit index and log length as sampled at the same instant, so they
      // compare (the leader's live events would run ahead of the followers' samples).
      if (typeof ev.commit_index === "number") {
        n.commit = ev.commit_index;
        n.logLength = typeof ev.log === "number" ? ev.log : null;
      }
      // A lock service names its holder and token; a lease elector's version stands for a term.
      if ("revision" in ev) n.lock = {holder: ev.holder ?? null, token: ev.token ?? ev.revision};
      if (typeof ev.lease_version === "number") {
        n.term = ev.lease_version;
        n.termWord = "lease v";
      }
      // An orchestrator says where its open flows are: [at the step, undoing it] per participant.
      if (ev.at && typeof ev.at === "object") {
        for (const [pid, counts] of Object.entries(ev.at)) this._node(pid).flowsAt = counts;
      }
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
    else if (n.paused) pills.push({name: "paused", text: "PAUSED", tone: "muted"});
    else if (n.state && ROLES.has(n.state) && n.term != null) {
      pills.push({name: "role", role: n.state, term: n.term, text: `${n.state} · ${n.termWord || "term "}${n.term}`,
                  tone: STATE_TONES[n.state] || "muted"});
    } else if (n.state) {
      pills.push({name: "state", text: n.state,
                  tone: STATE_TONES[n.state] || STATE_TONES[String(n.state).split(": ").pop()] || "muted"});
    }
    if (!n.down && n.life === "RECOVERING") pills.push({name: "life", text: "RECOVERING", tone: "warn", place: "bottom"});
    if (n.lock && !n.down) {
      pills.push(n.lock.holder
        ? {name: "lock", text: `held by ${n.lock.holder} · token ${n.lock.token}`, tone: "accent",
           holder: n.lock.holder, token: n.lock.token}
        : {name: "lock", text: `free · last token ${n.lock.token || 0}`, tone: "muted", holder: null,
           token: n.lock.token || 0});
    }
    if (typeof n.commit === "number" && !n.down) {
      const log = n.logLength != null && n.logLength !== n.commit ? ` · log ${n.logLength}` : "";
      pills.push({name: "commit", text: `commit ${n.commit}${log}`, tone: "muted", place: "bottom",
                  commit: n.commit});
    }
    for (const f of n.faults.slice(-1)) {
      if (f.action !== "crash" && f.action !== "pause") pills.push({name: "fault", text: describeFault(f), tone: "warn"});
    }
    if (typeof m.q === "number" && m.q > 0) {
      pills.push({name: "queue", text: `queue ${m.q}`, tone: m.q >= 100 ? "danger" : m.q >= 10 ? "warn" : "muted", place: "bottom"});
    }
    if (n.flowsAt && (n.flowsAt[0] || n.flowsAt[1])) {
      const [at, undoing] = n.flowsAt;
      const text = [at ? `${at} at this step` : "", undoing ? `${undoing} undoing` : ""].filter(Boolean).join(" · ");
      pills.push({name: "flows", text, tone: undoing ? "warn" : "muted", place: "bottom"});
    }
    if (typeof m.open === "number") {
      pills.push({name: "open", text: `${m.open} open`, tone: "muted", place: "bottom"});
    }
    if (typeof m.backlog === "number" && (m.backlog > 0 || m.lag_ms > 0)) {
      // Events waiting: an outbox for its relay (with how long the oldest has waited), or
      // a reactor's events on the log.
      const lag = typeof m.lag_ms === "number" ? ` · lag ${m.lag_ms >= 1000 ? `${(m.lag_ms / 1000).toFixed(1)} s` : `${Math.round(m.lag_ms)} ms`}` : "";
      pills.push({name: "backlog", text: `backlog ${m.backlog}${lag}`,
                  tone: m.backlog >= 100 ? "danger" : m.backlog >= 10 ? "warn" : "muted", place: "bottom"});
    }
    if (typeof m.hit_ratio === "number") {
      pills.push({name: "hits", text: `hits ${Math.round(m.hit_ratio * 100)}%`, tone: "muted", place: "bottom"});
    }
    // An event log: each group's lag (log end − committed offset), its worst partition named.
    if (m.lag && typeof m.lag === "object") {
      for (const [group, lags] of Object.entries(m.lag)) {
        const top = Math.max(0, ...lags);
        pills.push({name: "lag", group, lags, text: `${group} lag ${top} (p${lags.indexOf(top)})`,
                    tone: lagTone(top), place: "bottom"});
      }
    }
    // A log consumer: how far behind the log's end each partition it owns is.
    if (m.plag && typeof m.plag === "object" && Object.keys(m.plag).length) {
      const lags = Object.entries(m.plag);
      pills.push({name: "plag", text: `lag ${lags.map(([p, v]) => `${p} ${v}`).join(" · ")}`,
                  tone: lagTone(Math.max(...lags.map(([, v]) => v))), place: "bottom"});
    }
    return {down: n.down, paused: n.paused && !n.down, fault: n.faults.length > 0, util: typeof m.util === "number" ? m.util : null,
            sub: subline(m), pills};
  }

  edgeView(id) {
    const e = this.edges.get(id);
    if (!e) return null;
    return {rate: e.rate, fault: e.faults.length > 0};
  }
}

function faultKey(ev) {
  return `${ev.target}|${ev.action === "end" ? ev.of : ev.action}|${ev.node ?? ""}`;
}

/** Whether a partition in force cuts the way from a to b. */
function cutBetween(cut, a, b, members) {
  const dir = cut.direction;
  if (cut.groups || members.has(cut.target)) {
    const groups = (cut.groups || []).map((g) => new Set(g));
    const listed = new Set(groups.flatMap((g) => [...g]));
    const rest = new Set([...(members.get(cut.target) || [])].filter((id) => !listed.has(id)));
    if (rest.size) groups.push(rest);
    const side = (id) => groups.findIndex((g) => g.has(id));
    const sa = side(a), sb = side(b);
    if (sa < 0 || sb < 0 || sa === sb) return false;
    if (dir === "outbound") return sa === 0;
    if (dir === "inbound") return sb === 0;
    return true;
  }
  const target = cut.node ?? cut.target;
  if (dir === "outbound") return a === target;
  if (dir === "inbound") return b === target;
  return a === target || b === target;
}

LiveState.prototype.linkCut = function linkCut(a, b) {
  for (const cut of this.cuts) {
    if (cutBetween(cut, a, b, this.clusters) || cutBetween(cut, b, a, this.clusters)) return cut;
  }
  return null;
};

function lagTone(lag) {
  return lag >= 1000 ? "danger" : lag >= 300 ? "warn" : "muted";
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
