// The topology document being edited, and the only code that changes it.
// Rendering reads it (editor.js); nothing here touches the DOM.

export const NODE_W = 132;
export const NODE_H = 62;
const ID_OK = /^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$/;

export function emptyDocument() {
  return {version: 1, title: "Untitled", pattern: null, nodes: [], edges: [],
          scenario: {duration_s: 60, seed: 42, faults: []}};
}

export class Model {
  constructor() {
    this.doc = emptyDocument();
    this.listeners = new Set();
  }

  /** fn(reason) runs after every change; returns an unsubscribe function. */
  onChange(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  _changed(reason) {
    for (const fn of this.listeners) fn(reason);
  }

  load(doc) {
    const copy = structuredClone(doc);
    copy.nodes = copy.nodes || [];
    copy.edges = copy.edges || [];
    copy.scenario = {duration_s: 60, seed: 42, faults: [], ...(copy.scenario || {})};
    for (const node of copy.nodes) node.params = node.params || {};
    for (const edge of copy.edges) edge.params = edge.params || {};
    this.doc = copy;
    this._changed("load");
  }

  node(id) { return this.doc.nodes.find((n) => n.id === id) || null; }
  edge(id) { return this.doc.edges.find((e) => e.id === id) || null; }

  _freshId(base) {
    const taken = new Set([...this.doc.nodes, ...this.doc.edges].map((x) => x.id));
    let stem = base.replace(/[^A-Za-z0-9_.:-]/g, "_").slice(0, 56) || "n";
    if (!ID_OK.test(stem)) stem = `n_${stem}`;
    if (!taken.has(stem)) return stem;
    for (let i = 2; ; i++) if (!taken.has(`${stem}${i}`)) return `${stem}${i}`;
  }

  addNode(kind, x, y, label = "") {
    const id = this._freshId(kind.replace(/_/g, ""));
    this.doc.nodes.push({id, kind, label, x: Math.round(x), y: Math.round(y), params: {}});
    this._changed("add-node");
    return id;
  }

  moveNode(id, x, y) {
    const node = this.node(id);
    if (!node) return;
    node.x = Math.round(x);
    node.y = Math.round(y);
    this._changed("move");
  }

  /** A new edge from → to, or null when it would be a self-loop or a duplicate. */
  connect(from, to) {
    if (from === to || !this.node(from) || !this.node(to)) return null;
    if (this.doc.edges.some((e) => e.from === from && e.to === to)) return null;
    const id = this._freshId(`${from}-${to}`);
    this.doc.edges.push({id, from, to, params: {}});
    this._changed("connect");
    return id;
  }

  remove(selection) {
    if (!selection) return;
    if (selection.type === "node") {
      this.doc.nodes = this.doc.nodes.filter((n) => n.id !== selection.id);
      this.doc.edges = this.doc.edges.filter((e) => e.from !== selection.id && e.to !== selection.id);
      this.doc.scenario.faults = this.doc.scenario.faults.filter((f) => f.target !== selection.id);
    } else {
      this.doc.edges = this.doc.edges.filter((e) => e.id !== selection.id);
    }
    this._changed("remove");
  }

  element(selection) {
    if (!selection) return null;
    return selection.type === "node" ? this.node(selection.id) : this.edge(selection.id);
  }

  /** Set (or, with undefined, clear) one parameter of a node or an edge. */
  setParam(selection, name, value) {
    const el = this.element(selection);
    if (!el) return;
    if (value === undefined) delete el.params[name];
    else el.params[name] = value;
    this._changed("param");
  }

  setLabel(id, label) {
    const node = this.node(id);
    if (!node) return;
    node.label = label;
    this._changed("label");
  }

  setScenario(key, value) {
    this.doc.scenario[key] = value;
    this._changed("scenario");
  }

  removeFault(index) {
    this.doc.scenario.faults.splice(index, 1);
    this._changed("scenario");
  }

  /** The document to send to the server: a copy, with whole-number positions. */
  toDocument() {
    const doc = structuredClone(this.doc);
    for (const node of doc.nodes) {
      node.x = Math.round(node.x);
      node.y = Math.round(node.y);
      if (!node.label) delete node.label;
    }
    return doc;
  }
}
