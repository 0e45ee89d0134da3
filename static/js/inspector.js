// The parameter form of the selected node or edge. The server renders it from the kind's
// parameter declarations (GET /partials/params, swapped in with htmx); this module reads the
// typed values back from the inputs' data-* attributes into the model.

const DIST_DEFAULTS = {
  constant: (m) => ({value: m}),
  uniform: (m) => ({low: m / 2, high: m * 1.5}),
  exponential: (m) => ({mean: m}),
  normal: (m) => ({mean: m, std: m / 4}),
  lognormal: (m) => ({median: m, p99: m * 5}),
  pareto: (m) => ({scale: m / 2, alpha: 2}),
  empirical: (m) => ({values: [m / 2, m, m * 2]}),
  mixture: (m) => ({weights: [0.9, 0.1], parts: [m, m * 10]}),
};

export class Inspector {
  /**
   * @param panel the element the form is swapped into
   * @param model the document
   * @param editor the editor (selection, lock)
   */
  constructor(panel, model, editor) {
    this.panel = panel;
    this.model = model;
    this.editor = editor;
    this.selection = null;
    panel.addEventListener("change", (ev) => this._changed(ev, true));
    panel.addEventListener("input", (ev) => {
      // Text and number fields update as people type; structural ones wait for "change".
      if (ev.target.matches("input[type=number], input[type=text], textarea")) this._changed(ev, false);
    });
  }

  show(selection) {
    this.selection = selection;
    const el = this.model.element(selection);
    if (!el) {
      this.panel.replaceChildren(this.panel.ownerDocument.getElementById("inspector-empty").content.cloneNode(true));
      return;
    }
    this._load(selection, el);
  }

  refresh() {
    if (this.selection) this.show(this.selection);
  }

  _load(selection, el) {
    const values = {params: JSON.stringify(el.params || {}), id: el.id};
    if (selection.type === "node") {
      values.kind = el.kind;
      values.label = el.label || "";
    } else {
      values.kind = "edge";
      values.from = el.from;
      values.to = el.to;
    }
    if (!window.htmx) {
      this.panel.textContent = "The parameter form needs htmx, which did not load.";
      return;
    }
    window.htmx.ajax("GET", "/partials/params", {target: this.panel, swap: "innerHTML", values})
      .then(() => this._lock());
  }

  _lock() {
    const locked = this.editor.locked;
    for (const input of this.panel.querySelectorAll("input, select, textarea, button[data-action]")) {
      input.disabled = locked;
    }
    this.panel.classList.toggle("is-locked", locked);
  }

  setLocked() {
    this._lock();
  }

  _changed(ev, final) {
    const input = ev.target;
    const form = input.closest("[data-params-form]");
    if (!form || this.editor.locked) return;
    // The form names its element: a "change" fired by the blur of a click elsewhere must
    // still land on the element the form was for, not on the new selection.
    const target = {type: form.dataset.element, id: form.dataset.elementId};
    if (!this.model.element(target)) return;
    if (input.dataset.field === "label") {
      this.model.setLabel(target.id, input.value.slice(0, 80));
      return;
    }
    const sub = input.dataset.sub;
    const name = sub || input.dataset.param;
    if (!name) return;
    const type = sub ? "object" : input.dataset.type;
    let rerender = false;
    let value;
    if (type === "dist") {
      if (input.dataset.role === "shape") {
        if (!final) return;
        const current = this.model.element(target).params[name];
        value = {dist: input.value, ...DIST_DEFAULTS[input.value](roughMean(current))};
        if (input.value === "constant") value = value.value;
        rerender = true;
      } else {
        value = readDist(form, name);
        if (value === undefined) return; // mid-edit JSON
      }
    } else if (type === "object") {
      if (input.dataset.role === "toggle") {
        value = input.checked ? {} : null;
        rerender = true;
      } else {
        value = readObject(form, name);
      }
    } else {
      value = readScalar(form, name, type);
    }
    input.closest(".field")?.classList.add("changed");
    this.model.setParam(target, name, value);
    if (rerender) this.refresh();
  }
}

function inputs(form, name, sub) {
  const all = form.querySelectorAll(`[data-param="${CSS.escape(name)}"]`);
  return [...all].filter((el) => (el.dataset.sub || "") === (sub || ""));
}

function typed(el, type) {
  if (type === "bool") return el.checked;
  if (type === "int" || type === "float") {
    if (el.value.trim() === "") return el.placeholder === "none" ? null : undefined;
    const n = type === "int" ? parseInt(el.value, 10) : parseFloat(el.value);
    return Number.isFinite(n) ? n : undefined;
  }
  return el.value;
}

function readScalar(form, name, type, sub = "") {
  const els = inputs(form, name, sub);
  if (type === "list") {
    if (els.length === 1 && els[0].type === "text") {
      return els[0].value.split(",").map((v) => v.trim()).filter(Boolean);
    }
    return els.filter((el) => el.checked).map((el) => el.value);
  }
  return els.length ? typed(els[0], type) : undefined;
}

function readObject(form, name) {
  const out = {};
  for (const el of form.querySelectorAll(`[data-sub="${CSS.escape(name)}"]`)) {
    const key = el.dataset.param;
    if (key in out) continue;
    const v = readScalar(form, key, el.dataset.type, name);
    if (v !== undefined) out[key] = v;
  }
  return out;
}

function readDist(form, name) {
  const els = inputs(form, name);
  const shape = els.find((el) => el.dataset.role === "shape")?.value || "constant";
  const json = els.find((el) => el.dataset.role === "json");
  if (json) {
    try {
      const value = JSON.parse(json.value);
      json.setCustomValidity("");
      return value;
    } catch {
      json.setCustomValidity("not valid JSON");
      return undefined;
    }
  }
  const out = {dist: shape};
  for (const el of els.filter((e) => e.dataset.key)) {
    if (el.dataset.key === "values") {
      out.values = el.value.split(",").map((v) => parseFloat(v)).filter(Number.isFinite);
    } else {
      const n = parseFloat(el.value);
      if (Number.isFinite(n)) out[el.dataset.key] = n;
    }
  }
  if (shape === "constant") return out.value ?? 0;
  return out;
}

function roughMean(spec) {
  if (typeof spec === "number") return spec || 10;
  if (spec && typeof spec === "object") {
    return spec.mean ?? spec.median ?? spec.value ?? spec.scale ?? (spec.low != null ? (spec.low + spec.high) / 2 : 10);
  }
  return 10;
}
