// The end-of-run summary (and, beside it, the baseline's): built with textContent only.

import {fmtMs, fmtNum, fmtPct, h} from "./dom.js";

const OUTCOMES = [
  ["succeeded", "ok"], ["failed", "err"], ["rejected", "rej"], ["timed_out", "to"], ["in_flight", "muted"],
];

function outcomeBar(req) {
  const total = OUTCOMES.reduce((acc, [key]) => acc + (req[key] || 0), 0) || 1;
  const bar = h("div", {class: "outcome-bar", role: "img",
                        "aria-label": OUTCOMES.map(([k]) => `${k} ${req[k] || 0}`).join(", ")});
  const legend = h("ul", {class: "outcome-legend"});
  for (const [key, tone] of OUTCOMES) {
    const n = req[key] || 0;
    if (!n && key === "in_flight") continue;
    const seg = h("span", {class: `seg tone-${tone}`, title: `${key.replace("_", " ")}: ${n}`});
    seg.style.width = `${(100 * n) / total}%`;
    bar.append(seg);
    legend.append(h("li", {}, h("i", {class: `swatch tone-${tone}`}),
                    `${key.replace("_", " ")} `, h("b", {}, fmtNum(n))));
  }
  return [bar, legend];
}

function kv(rows) {
  const table = h("table", {class: "kv"});
  for (const [k, v] of rows) table.append(h("tr", {}, h("th", {}, k), h("td", {class: "num"}, v)));
  return table;
}

function figure(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") return fmtNum(value, 3);
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (Array.isArray(value)) return value.length > 12 ? `${value.slice(0, 12).join(", ")}, …` : value.join(", ");
  if (typeof value === "object") return JSON.stringify(value).slice(0, 120);
  return String(value);
}

/** A check's first counterexample as a button that takes the page to its moment (the
 *  page handles data-action="counterexample"); null when there is none. */
export function counterexampleButton(cx) {
  if (!cx || typeof cx.t !== "number") return null;
  const nodes = cx.nodes || [];
  const what = cx.what || "";
  return h("button", {type: "button", class: "counterexample", "data-action": "counterexample",
                      "data-t": cx.t, "data-nodes": JSON.stringify(nodes),
                      title: "Show this moment: the charts mark it, the canvas shows its nodes"},
           `at ${(cx.t / 1000).toFixed(3)} s${nodes.length ? ` · ${nodes.join(", ")}` : ""}${what ? ` · ${what}` : ""}`);
}

/** The whole summary of one run. */
export function renderSummary(summary, {status = "finished", error = null} = {}) {
  const root = h("div", {class: "summary", "data-summary": ""});
  if (!summary) {
    root.append(h("p", {class: "error-text"}, `The run ${status}${error ? `: ${error}` : "."}`));
    return root;
  }
  const req = summary.requests || {};
  const lat = summary.latency_ms || {};
  const sent = req.sent || 0;
  root.append(
    h("div", {class: "headline"},
      stat("requests", fmtNum(sent)),
      stat("succeeded", sent ? fmtPct((req.succeeded || 0) / sent) : "–", (req.succeeded || 0) / (sent || 1) < 0.95 ? "bad" : "good"),
      stat("p99", fmtMs(lat.p99)),
      stat("throughput", `${fmtNum(summary.throughput_rps, 1)}/s`)),
    ...outcomeBar(req),
  );
  if (status !== "finished") root.prepend(h("p", {class: "status-note"}, `Run ${status}: the figures cover the part that ran.`));

  const checks = summary.checks || [];
  if (checks.length) {
    const list = h("ul", {class: "checks"});
    for (const c of checks) {
      list.append(h("li", {class: c.ok ? "pass" : "fail"},
                    h("span", {class: "mark"}, c.ok ? "✓" : "✗"),
                    h("div", {}, h("b", {}, c.name), h("small", {}, c.detail || ""),
                      counterexampleButton(c.counterexample))));
    }
    root.append(h("h3", {}, "Checks"), list);
  }

  root.append(h("h3", {}, "Latency"), kv([
    ["mean", fmtMs(lat.mean)], ["p50", fmtMs(lat.p50)], ["p90", fmtMs(lat.p90)],
    ["p99", fmtMs(lat.p99)], ["p99.9", fmtMs(lat.p999)], ["max", fmtMs(lat.max)],
  ]));

  const pattern = summary.pattern || {};
  if (Object.keys(pattern).length) {
    root.append(h("h3", {}, "Pattern figures"),
                kv(Object.entries(pattern).map(([k, v]) => [k.replaceAll("_", " "), figure(v)])));
  }

  const nodes = summary.nodes || {};
  const table = h("table", {class: "nodes-table"},
                  h("thead", {}, h("tr", {}, h("th", {}, "node"), h("th", {class: "num"}, "processed"),
                                   h("th", {class: "num"}, "util"), h("th", {class: "num"}, "max q"),
                                   h("th", {class: "num"}, "states"))));
  const body = h("tbody");
  for (const [id, n] of Object.entries(nodes)) {
    const states = n.states || [];
    const tr = h("tr", {"data-node-id": id},
                 h("td", {}, h("b", {}, id), h("small", {}, ` ${n.kind || ""}`)),
                 h("td", {class: "num"}, fmtNum(n.processed)),
                 h("td", {class: "num"}, n.utilisation ? fmtPct(n.utilisation) : "–"),
                 h("td", {class: "num"}, fmtNum(n.max_queue)),
                 h("td", {class: "num", title: states.map((s) => `${(s.t / 1000).toFixed(1)} s ${s.from}→${s.to}`).join("\n")},
                   states.length ? String(states.length) : "–"));
    body.append(tr);
  }
  table.append(body);
  root.append(h("h3", {}, "Per node"), table);
  return root;
}

function stat(label, value, tone = "") {
  return h("div", {class: `stat ${tone}`}, h("span", {class: "stat-value"}, value), h("span", {class: "stat-label"}, label));
}

const COMPARE_ROWS = [
  ["requests sent", (s) => s.requests?.sent, fmtNum, 0],
  ["succeeded", (s) => s.requests?.succeeded, fmtNum, 1],
  ["failed", (s) => s.requests?.failed, fmtNum, -1],
  ["rejected", (s) => s.requests?.rejected, fmtNum, -1],
  ["timed out", (s) => s.requests?.timed_out, fmtNum, -1],
  ["latency p50", (s) => s.latency_ms?.p50, fmtMs, -1],
  ["latency p99", (s) => s.latency_ms?.p99, fmtMs, -1],
  ["latency max", (s) => s.latency_ms?.max, fmtMs, -1],
  ["throughput", (s) => s.throughput_rps, (v) => `${fmtNum(v, 1)}/s`, 1],
];

/** With the pattern and without it, side by side; the better figure of each row is marked. */
export function renderComparison(withPattern, baseline, note = "") {
  const table = h("table", {class: "compare", "data-compare": ""},
                  h("thead", {}, h("tr", {}, h("th", {}, ""), h("th", {class: "num"}, "with pattern"),
                                   h("th", {class: "num"}, "baseline"))));
  const body = h("tbody");
  for (const [label, get, fmt, better] of COMPARE_ROWS) {
    const a = withPattern ? get(withPattern) : null;
    const b = baseline ? get(baseline) : null;
    const cls = (mine, other) => {
      if (!better || mine == null || other == null || mine === other) return "num";
      return (better > 0 ? mine > other : mine < other) ? "num better" : "num";
    };
    body.append(h("tr", {}, h("th", {}, label),
                  h("td", {class: cls(a, b)}, a == null ? "…" : fmt(a)),
                  h("td", {class: cls(b, a)}, b == null ? "…" : fmt(b))));
  }
  table.append(body);
  const root = h("div", {class: "comparison"}, h("h3", {}, "With and without the pattern"), table);
  if (note) root.append(h("p", {class: "muted small"}, note));
  return root;
}
