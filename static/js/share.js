// Files in and out: the topology as JSON (download and import), a chart as PNG, and the
// verification line of a run's page. User text only ever goes in through textContent.

import * as api from "./api.js";
import {ApiError} from "./api.js";
import {fmtNum, h} from "./dom.js";

const MAX_IMPORT_BYTES = 1_000_000;
const PNG_W = 960;
const PNG_H = 400;

/** A file name from a title: lower-case words joined by "-", or the fallback. */
export function fileName(title, fallback = "topology") {
  const stem = String(title || "").toLowerCase().normalize("NFKD")
    .replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 60);
  return stem || fallback;
}

/** Offer `data` as a download, made in the browser (no round trip). */
export function download(data, name, type = "application/json") {
  const blob = new Blob([data], {type});
  const url = URL.createObjectURL(blob);
  const link = h("a", {href: url, download: name, hidden: true});
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export function downloadTopology(doc) {
  download(`${JSON.stringify(doc, null, 2)}\n`, `${fileName(doc.title)}.json`);
}

/**
 * Read a topology file and have the server check it (POST /api/topologies/validate, which
 * stores nothing). Resolves with the normalised document; rejects with an ApiError whose
 * message (and field) names the problem, and then the caller changes nothing.
 */
export async function readTopologyFile(file) {
  if (file.size > MAX_IMPORT_BYTES) {
    throw new ApiError(`${file.name} is larger than ${MAX_IMPORT_BYTES / 1_000_000} MB; a topology file is much smaller`);
  }
  let doc;
  try {
    doc = JSON.parse(await file.text());
  } catch (err) {
    throw new ApiError(`${file.name} is not JSON: ${err.message}`);
  }
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) {
    throw new ApiError(`${file.name} does not hold a topology: expected a JSON object`);
  }
  if (!Array.isArray(doc.nodes)) {
    throw new ApiError(`${file.name}: must be a list of nodes`, "nodes");
  }
  const checked = await api.validateTopology(doc);
  return checked.document;
}

/**
 * Download a chart as PNG with Plotly's own image export. The chart is drawn again off
 * screen on white, with its title, so the image reads on its own; the live one is untouched.
 */
export async function downloadChart(el, title, name) {
  const P = window.Plotly;
  if (!P || !el.data) throw new Error("the charts did not load");
  const box = h("div", {class: "offscreen-chart"});
  document.body.append(box);
  try {
    const layout = {...el.layout, width: PNG_W, height: PNG_H, paper_bgcolor: "#ffffff",
                    plot_bgcolor: "#ffffff", showlegend: true,
                    title: {text: title, x: 0.02, font: {size: 15}},
                    margin: {l: 56, r: 16, t: 48, b: 40}};
    await P.newPlot(box, el.data, layout, {staticPlot: true});
    await P.downloadImage(box, {format: "png", filename: name, width: PNG_W, height: PNG_H});
  } finally {
    P.purge(box);
    box.remove();
  }
}

/** The verification of a run (GET /api/runs/<id>/verify) as a paragraph. */
export function renderVerification(result) {
  if (result.verified === true) {
    return h("p", {class: "verify is-verified", "data-verified": "true"},
             h("b", {}, "✓ Verified"),
             `: re-simulated from its stored document, seed and interventions, all ${fmtNum(result.events)} ` +
             `events are byte-identical to the frames streamed.`);
  }
  if (result.verified === false) {
    const diff = result.first_difference || {};
    return h("div", {class: "verify is-different", "data-verified": "false"},
             h("p", {}, h("b", {}, "✗ Not verified"), `: the re-simulation differs at event ${fmtNum(diff.index ?? 0)}.`),
             h("details", {},
               h("summary", {}, "The first difference"),
               h("pre", {class: "small"},
                 `stored:   ${JSON.stringify(diff.stored)}\nreplayed: ${JSON.stringify(diff.replayed)}`)));
  }
  return h("p", {class: "verify is-unknown muted", "data-verified": "unknown"},
           h("b", {}, "Not verified"), `: ${result.reason}`);
}
