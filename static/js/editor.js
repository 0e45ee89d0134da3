// The canvas editor: render(model, selection, live) → SVG, plus the gestures that edit the
// model (drag to add, drag to move, drag from a port to connect, select, delete, pan, zoom).
// Nodes, ports, edges and badges are real SVG elements with stable data-* selectors.

import {attr, s, text} from "./dom.js";
import {NODE_H, NODE_W} from "./model.js";

const MIN_ZOOM = 0.25;
const MAX_ZOOM = 3;
const DRAG_THRESHOLD = 3;

const MONOGRAM = {client: "C", service: "S", database: "DB", queue: "Q", topic: "T",
                  load_balancer: "LB", circuit_breaker: "CB", cache: "$", lease_store: "LS"};

export function monogram(kind) {
  return MONOGRAM[kind] || kind.slice(0, 2).toUpperCase();
}

/** The cubic Bézier of an edge: [p0, p1, p2, p3], from the caller's out port to the
 *  callee's in port. Shared by the SVG path and the dots overlay. */
export function edgeCurve(from, to) {
  const x0 = from.x + NODE_W / 2, y0 = from.y;
  const x3 = to.x - NODE_W / 2, y3 = to.y;
  const dx = Math.max(40, Math.abs(x3 - x0) / 2);
  return [x0, y0, x0 + dx, y0, x3 - dx, y3, x3, y3];
}

function curvePath(c) {
  return `M${c[0]},${c[1]} C${c[2]},${c[3]} ${c[4]},${c[5]} ${c[6]},${c[7]}`;
}

function curvePoint(c, u) {
  const v = 1 - u;
  const a = v * v * v, b = 3 * v * v * u, d = 3 * v * u * u, e = u * u * u;
  return [a * c[0] + b * c[2] + d * c[4] + e * c[6], a * c[1] + b * c[3] + d * c[5] + e * c[7]];
}

export class Editor {
  /**
   * @param stage the element holding the SVG ([data-editor]) and the dots canvas
   * @param model the document (model.js)
   * @param options {kinds, onSelect(selection), onContextMenu(nodeId, clientX, clientY),
   *                 onViewChange()}
   */
  constructor(stage, model, options) {
    this.stage = stage;
    this.svg = stage.querySelector("[data-editor]");
    this.model = model;
    this.kinds = options.kinds || {};
    this.options = options;
    this.view = {x: 0, y: 0, k: 1};
    this.selection = null;
    this.locked = false;     // during a run: no structural edits
    this.live = null;        // LiveState while a run is shown
    this.curves = new Map(); // edge id → Bézier, for the dots (peer links: "peer:a|b", a < b)
    this.highlighted = new Set(); // nodes a counterexample names
    this._build();
    this._bind();
  }

  _build() {
    const svg = this.svg;
    const defs = s("defs");
    const grid = s("pattern", {id: "grid", width: 24, height: 24, patternUnits: "userSpaceOnUse"});
    grid.append(s("circle", {cx: 1, cy: 1, r: 1, class: "grid-dot"}));
    defs.append(grid);
    for (const [id, cls] of [["arrow", "arrow"], ["arrow-sel", "arrow arrow-sel"]]) {
      const marker = s("marker", {id, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 9,
                                  markerHeight: 9, markerUnits: "userSpaceOnUse",
                                  orient: "auto-start-reverse"});
      marker.append(s("path", {d: "M0,0 L10,5 L0,10 z", class: cls}));
      defs.append(marker);
    }
    svg.append(defs);
    this.viewport = s("g", {class: "viewport"});
    this.viewport.append(s("rect", {class: "grid", x: -5000, y: -5000, width: 10000, height: 10000,
                                    fill: "url(#grid)"}));
    this.peerLayer = s("g", {class: "peers"});
    this.edgeLayer = s("g", {class: "edges"});
    this.nodeLayer = s("g", {class: "nodes"});
    this.ghost = s("path", {class: "ghost-edge", d: ""});
    this.viewport.append(this.peerLayer, this.edgeLayer, this.nodeLayer, this.ghost);
    svg.append(this.viewport);
  }

  // ---- view ---------------------------------------------------------------------------

  setView(x, y, k) {
    this.view = {x, y, k};
    attr(this.viewport, "transform", `translate(${x} ${y}) scale(${k})`);
    this.options.onViewChange?.();
  }

  zoomBy(factor, cx, cy) {
    const rect = this.svg.getBoundingClientRect();
    const px = cx ?? rect.width / 2, py = cy ?? rect.height / 2;
    const k = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, this.view.k * factor));
    const wx = (px - this.view.x) / this.view.k, wy = (py - this.view.y) / this.view.k;
    this.setView(px - wx * k, py - wy * k, k);
  }

  /** Fit every node in view, never zooming in past 1.25×. */
  fit() {
    const nodes = this.model.doc.nodes;
    const rect = this.svg.getBoundingClientRect();
    if (!nodes.length || !rect.width) {
      this.setView(rect.width / 2, rect.height / 2, 1);
      return;
    }
    const xs = nodes.map((n) => n.x), ys = nodes.map((n) => n.y);
    const x0 = Math.min(...xs) - NODE_W / 2 - 40, x1 = Math.max(...xs) + NODE_W / 2 + 40;
    const y0 = Math.min(...ys) - NODE_H / 2 - 56, y1 = Math.max(...ys) + NODE_H / 2 + 56;
    const k = Math.min(1.25, rect.width / (x1 - x0), rect.height / (y1 - y0));
    this.setView((rect.width - (x1 - x0) * k) / 2 - x0 * k,
                 (rect.height - (y1 - y0) * k) / 2 - y0 * k, k);
  }

  toWorld(clientX, clientY) {
    const rect = this.svg.getBoundingClientRect();
    return {x: (clientX - rect.left - this.view.x) / this.view.k,
            y: (clientY - rect.top - this.view.y) / this.view.k};
  }

  // ---- selection ----------------------------------------------------------------------

  select(selection) {
    const same = selection && this.selection && selection.type === this.selection.type
      && selection.id === this.selection.id;
    this.selection = selection;
    this.render();
    if (!same) this.options.onSelect?.(selection);
  }

  /** Mark the nodes a counterexample names (an empty list clears the marks). */
  highlight(ids) {
    this.highlighted = new Set(ids || []);
    this.render();
  }

  // ---- render -------------------------------------------------------------------------

  /** Bring the SVG in line with the model, the selection and the live state. */
  render() {
    const doc = this.model.doc;
    const byId = new Map(doc.nodes.map((n) => [n.id, n]));
    this.svg.classList.toggle("is-locked", this.locked);
    this.stage.classList.toggle("is-empty", doc.nodes.length === 0);

    const seenNodes = new Set();
    for (const node of doc.nodes) {
      seenNodes.add(node.id);
      this._renderNode(node);
    }
    for (const el of [...this.nodeLayer.children]) {
      if (!seenNodes.has(el.dataset.nodeId)) el.remove();
    }

    const seenEdges = new Set();
    this.curves.clear();
    for (const edge of doc.edges) {
      const from = byId.get(edge.from), to = byId.get(edge.to);
      if (!from || !to) continue;
      seenEdges.add(edge.id);
      const curve = edgeCurve(from, to);
      this.curves.set(edge.id, curve);
      this._renderEdge(edge, curve);
    }
    for (const el of [...this.edgeLayer.children]) {
      if (!seenEdges.has(el.dataset.edgeId)) el.remove();
    }
    this._renderPeers(doc, byId);
  }

  /** A cluster's members are linked all to all: faint straight lines (no edges exist for
   *  peer messages), dashed red while a partition cuts them. */
  _renderPeers(doc, byId) {
    const groups = new Map();
    for (const node of doc.nodes) {
      const cluster = node.params?.cluster;
      if (!cluster) continue;
      if (!groups.has(cluster)) groups.set(cluster, []);
      groups.get(cluster).push(node.id);
    }
    if (this.live) this.live.clusters = groups;
    const seen = new Set();
    for (const ids of groups.values()) {
      const sorted = [...ids].sort();
      for (let i = 0; i < sorted.length; i++) {
        for (let j = i + 1; j < sorted.length; j++) {
          const a = byId.get(sorted[i]), b = byId.get(sorted[j]);
          const key = `peer:${a.id}|${b.id}`;
          seen.add(key);
          // From border to border: the fraction of the centre line inside each node.
          const dx = b.x - a.x, dy = b.y - a.y;
          const f = Math.min(0.45, Math.min(dx ? NODE_W / 2 / Math.abs(dx) : 1, dy ? NODE_H / 2 / Math.abs(dy) : 1));
          const x0 = a.x + dx * f, y0 = a.y + dy * f, x3 = b.x - dx * f, y3 = b.y - dy * f;
          const curve = [x0, y0, x0 + (x3 - x0) / 3, y0 + (y3 - y0) / 3,
                         x0 + (2 * (x3 - x0)) / 3, y0 + (2 * (y3 - y0)) / 3, x3, y3];
          this.curves.set(key, curve);
          let line = this.peerLayer.querySelector(`[data-peer="${CSS.escape(key)}"]`);
          if (!line) {
            line = s("line", {class: "peer-link", "data-peer": key, "data-a": a.id, "data-b": b.id});
            this.peerLayer.append(line);
          }
          attr(line, "x1", x0.toFixed(1)); attr(line, "y1", y0.toFixed(1));
          attr(line, "x2", x3.toFixed(1)); attr(line, "y2", y3.toFixed(1));
          const cut = this.live?.linkCut(a.id, b.id);
          line.classList.toggle("is-cut", Boolean(cut));
          line.classList.toggle("is-held", cut?.mode === "hold");
        }
      }
    }
    for (const el of [...this.peerLayer.children]) {
      if (!seen.has(el.dataset.peer)) el.remove();
    }
  }

  _nodeEl(id) {
    return this.nodeLayer.querySelector(`[data-node-id="${CSS.escape(id)}"]`);
  }

  _renderNode(node) {
    let g = this._nodeEl(node.id);
    if (!g) {
      g = s("g", {class: "node", "data-node-id": node.id, "data-kind": node.kind, tabindex: 0});
      g.append(
        s("rect", {class: "node-body", width: NODE_W, height: NODE_H, rx: 10}),
        s("rect", {class: "node-stripe", width: 5, height: NODE_H - 16, x: 0, y: 8, rx: 2}),
        s("circle", {class: "node-icon", cx: 26, cy: 24, r: 13}),
        s("text", {class: "node-mono", x: 26, y: 28, "text-anchor": "middle"}),
        s("text", {class: "node-label", x: 46, y: 23}),
        s("text", {class: "node-sub", x: 46, y: 39}),
        s("rect", {class: "util-track", x: 12, y: NODE_H - 12, width: NODE_W - 24, height: 4, rx: 2}),
        s("rect", {class: "util-fill", x: 12, y: NODE_H - 12, width: 0, height: 4, rx: 2}),
        s("circle", {class: "port port-in", "data-port": "in", cx: 0, cy: NODE_H / 2, r: 6}),
        s("circle", {class: "port port-out", "data-port": "out", cx: NODE_W, cy: NODE_H / 2, r: 6}),
        s("g", {class: "badges"}),
      );
      this.nodeLayer.append(g);
    }
    attr(g, "transform", `translate(${node.x - NODE_W / 2} ${node.y - NODE_H / 2})`);
    g.classList.toggle("is-selected", this.selection?.type === "node" && this.selection.id === node.id);
    const kindLabel = this.kinds[node.kind]?.label || node.kind;
    text(g.querySelector(".node-mono"), monogram(node.kind));
    text(g.querySelector(".node-label"), clip(node.label || node.id, 12));
    const view = this.live?.nodeView(node.id);
    text(g.querySelector(".node-sub"), view?.sub || clip(kindLabel, 16));
    g.classList.toggle("is-down", Boolean(view?.down));
    g.classList.toggle("is-paused", Boolean(view?.paused));
    g.classList.toggle("is-highlighted", this.highlighted.has(node.id));
    const role = view?.pills?.find((p) => p.name === "role");
    if (role) {
      attr(g, "data-role", role.role);
      attr(g, "data-term", role.term);
    } else {
      g.removeAttribute("data-role");
      g.removeAttribute("data-term");
    }
    g.classList.toggle("has-fault", Boolean(view?.fault));
    const util = view?.util;
    g.classList.toggle("has-util", util !== null && util !== undefined);
    attr(g.querySelector(".util-fill"), "width", ((NODE_W - 24) * Math.min(1, util || 0)).toFixed(1));
    g.querySelector(".util-fill").classList.toggle("is-hot", (util || 0) >= 0.85);
    this._renderBadges(g.querySelector(".badges"), view);
  }

  _renderBadges(layer, view) {
    // Rebuilt only when what they say changes.
    const pills = view?.pills || [];
    const key = JSON.stringify(pills);
    if (layer.dataset.key === key) return;
    layer.dataset.key = key;
    layer.replaceChildren();
    let xTop = NODE_W;
    let xBottom = 0;
    for (const pill of pills) {
      const width = 10 + pill.text.length * 6.4;
      let x, y;
      if (pill.place === "bottom") {
        x = xBottom;
        y = NODE_H + 6;
        xBottom += width + 4;
      } else {
        x = xTop - width;
        y = -11;
        xTop -= width + 4;
      }
      const g = s("g", {class: `badge tone-${pill.tone}`, "data-badge": pill.name, "data-text": pill.text,
                        transform: `translate(${x.toFixed(1)} ${y})`});
      g.append(s("rect", {width: width.toFixed(1), height: 18, rx: 9}),
               s("text", {x: (width / 2).toFixed(1), y: 13, "text-anchor": "middle", text: pill.text}));
      layer.append(g);
    }
  }

  _renderEdge(edge, curve) {
    let g = this.edgeLayer.querySelector(`[data-edge-id="${CSS.escape(edge.id)}"]`);
    if (!g) {
      g = s("g", {class: "edge", "data-edge-id": edge.id});
      g.append(s("path", {class: "edge-hit"}), s("path", {class: "edge-line"}),
               s("text", {class: "edge-rate", "text-anchor": "middle"}));
      this.edgeLayer.append(g);
    }
    attr(g, "data-from", edge.from);
    attr(g, "data-to", edge.to);
    const d = curvePath(curve);
    attr(g.children[0], "d", d);
    attr(g.children[1], "d", d);
    const selected = this.selection?.type === "edge" && this.selection.id === edge.id;
    g.classList.toggle("is-selected", selected);
    attr(g.children[1], "marker-end", selected ? "url(#arrow-sel)" : "url(#arrow)");
    const view = this.live?.edgeView(edge.id);
    const rate = view?.rate || 0;
    // Edge thickness carries the aggregate traffic: 1.5 px idle, +2.2 px per decade of msg/s.
    const width = 1.5 + (rate > 0 ? 2.2 * Math.log10(1 + rate) : 0);
    attr(g.children[1], "stroke-width", width.toFixed(2));
    g.classList.toggle("is-busy", rate > 0);
    g.classList.toggle("is-cut", Boolean(view?.fault));
    const [mx, my] = curvePoint(curve, 0.5);
    const label = g.children[2];
    attr(label, "x", mx.toFixed(1));
    attr(label, "y", (my - 8).toFixed(1));
    const hasParams = Object.keys(edge.params || {}).length > 0;
    let caption = rate > 0 ? `${formatRate(rate)}/s` : (hasParams ? paramHint(edge.params) : "");
    // A caption wider than the gap between the nodes would sit on them: leave it out.
    const gap = Math.hypot(curve[6] - curve[0], curve[7] - curve[1]);
    if (caption.length * 6.2 + 12 > gap) caption = rate > 0 && gap > 30 ? formatRate(rate) : "";
    text(label, caption);
  }

  // ---- gestures -----------------------------------------------------------------------

  _bind() {
    const svg = this.svg;
    svg.addEventListener("pointerdown", (ev) => this._pointerDown(ev));
    svg.addEventListener("pointermove", (ev) => this._pointerMove(ev));
    svg.addEventListener("pointerup", (ev) => this._pointerUp(ev));
    svg.addEventListener("pointercancel", () => { this.gesture = null; this._endGhost(); });
    svg.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const rect = svg.getBoundingClientRect();
      this.zoomBy(Math.exp(-ev.deltaY * 0.0015), ev.clientX - rect.left, ev.clientY - rect.top);
    }, {passive: false});
    svg.addEventListener("contextmenu", (ev) => {
      const nodeEl = ev.target.closest("[data-node-id]");
      if (!nodeEl) return;
      ev.preventDefault();
      this.select({type: "node", id: nodeEl.dataset.nodeId});
      this.options.onContextMenu?.(nodeEl.dataset.nodeId, ev.clientX, ev.clientY);
    });
    // Drag a kind from the palette (HTML5 drag and drop) onto the canvas.
    this.stage.addEventListener("dragover", (ev) => {
      if (this.locked || !ev.dataTransfer.types.includes("application/x-pattern-kind")) return;
      ev.preventDefault();
      ev.dataTransfer.dropEffect = "copy";
    });
    this.stage.addEventListener("drop", (ev) => {
      const kind = ev.dataTransfer.getData("application/x-pattern-kind");
      if (!kind || this.locked) return;
      ev.preventDefault();
      const p = this.toWorld(ev.clientX, ev.clientY);
      this.addNode(kind, p.x, p.y);
    });
  }

  addNode(kind, x, y) {
    if (this.locked) return null;
    if (x === undefined) {
      const rect = this.svg.getBoundingClientRect();
      const c = this.toWorld(rect.left + rect.width / 2, rect.top + rect.height / 2);
      // Step new nodes so that several clicks do not stack them.
      const n = this.model.doc.nodes.length;
      x = c.x + (n % 5) * 16;
      y = c.y + (n % 5) * 16;
    }
    const id = this.model.addNode(kind, x, y, this.kinds[kind]?.label || kind);
    this.select({type: "node", id});
    return id;
  }

  deleteSelection() {
    if (this.locked || !this.selection) return;
    this.model.remove(this.selection);
    this.select(null);
  }

  _pointerDown(ev) {
    if (ev.button !== 0) return;
    const target = ev.target;
    const port = target.closest("[data-port]");
    const nodeEl = target.closest("[data-node-id]");
    const edgeEl = target.closest("[data-edge-id]");
    const start = {x: ev.clientX, y: ev.clientY};
    this.svg.setPointerCapture(ev.pointerId);
    if (port && nodeEl && port.dataset.port === "out" && !this.locked) {
      this.gesture = {type: "connect", from: nodeEl.dataset.nodeId, start};
      this.svg.classList.add("is-connecting");
    } else if (nodeEl) {
      const node = this.model.node(nodeEl.dataset.nodeId);
      const p = this.toWorld(ev.clientX, ev.clientY);
      this.gesture = {type: "move", id: node.id, dx: p.x - node.x, dy: p.y - node.y, start, moved: false};
      this.select({type: "node", id: node.id});
    } else if (edgeEl) {
      this.gesture = null;
      this.select({type: "edge", id: edgeEl.dataset.edgeId});
    } else {
      this.gesture = {type: "pan", start, vx: this.view.x, vy: this.view.y, moved: false};
    }
  }

  _pointerMove(ev) {
    const g = this.gesture;
    if (!g) return;
    const far = Math.hypot(ev.clientX - g.start.x, ev.clientY - g.start.y) > DRAG_THRESHOLD;
    if (g.type === "pan") {
      if (!far && !g.moved) return;
      g.moved = true;
      this.svg.classList.add("is-panning");
      this.setView(g.vx + ev.clientX - g.start.x, g.vy + ev.clientY - g.start.y, this.view.k);
    } else if (g.type === "move") {
      if (!far && !g.moved) return;
      g.moved = true;
      const p = this.toWorld(ev.clientX, ev.clientY);
      this.model.moveNode(g.id, p.x - g.dx, p.y - g.dy);
    } else if (g.type === "connect") {
      const from = this.model.node(g.from);
      const p = this.toWorld(ev.clientX, ev.clientY);
      const hover = document.elementFromPoint(ev.clientX, ev.clientY)?.closest("[data-node-id]");
      for (const el of this.nodeLayer.querySelectorAll(".is-drop-target")) el.classList.remove("is-drop-target");
      if (hover && hover.dataset.nodeId !== g.from) hover.classList.add("is-drop-target");
      const c = edgeCurve(from, {x: p.x + NODE_W / 2, y: p.y});
      attr(this.ghost, "d", curvePath(c));
    }
  }

  _pointerUp(ev) {
    const g = this.gesture;
    this.gesture = null;
    this.svg.classList.remove("is-panning", "is-connecting");
    if (!g) return;
    if (g.type === "pan" && !g.moved) this.select(null);
    // During a run a click on a node offers what can be done to it (crash, pause, cut off).
    if (g.type === "move" && !g.moved && this.locked) {
      this.options.onNodeClick?.(g.id, ev.clientX, ev.clientY);
    }
    if (g.type === "connect") {
      this._endGhost();
      const hover = document.elementFromPoint(ev.clientX, ev.clientY)?.closest("[data-node-id]");
      if (hover) {
        const id = this.model.connect(g.from, hover.dataset.nodeId);
        if (id) this.select({type: "edge", id});
      }
    }
  }

  _endGhost() {
    attr(this.ghost, "d", "");
    for (const el of this.nodeLayer.querySelectorAll(".is-drop-target")) el.classList.remove("is-drop-target");
  }
}

function clip(value, n) {
  const str = String(value);
  return str.length > n ? `${str.slice(0, n - 1)}…` : str;
}

function formatRate(rate) {
  if (rate >= 1000) return `${(rate / 1000).toFixed(1)}k`;
  return String(Math.round(rate));
}

function paramHint(params) {
  const bits = [];
  if (params.retry) bits.push("retry");
  if (params.timeout_ms) bits.push(`timeout ${params.timeout_ms} ms`);
  if (params.drop_rate) bits.push(`drop ${Math.round(params.drop_rate * 100)}%`);
  return bits.join(" · ");
}
