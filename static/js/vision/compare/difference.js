// Side by side on /vision, the third panel: B − A patch by patch on a diverging scale centred at 0 (lib/plot.js
// DIVERGING, as the text page's plotly difference uses), with its range stated, drawn only where the two patch
// grids match; and its exports. Across models, and on request within one, each map is first renormalised over the
// patches (B̂ − Â); across models a single head is not compared at all (captions.js says why).
import { fmtValue } from "../../lib/colormap.js";
import { el } from "../../lib/dom.js";
import { downloadCanvas, downloadCSV, downloadJSON, exportButtons } from "../../lib/export.js";
import { fromApi, PATCH_NUMBERING, patchRowCol } from "../../lib/numbering.js";
import { DIVERGING } from "../../lib/plot.js";
import { patchLabel } from "../data.js";
import { checksum } from "../overlay.js";
import { crossModel, crossModelHeadCaption, geometryClause, gridMismatchCaption, renormCaption } from "./captions.js";
import { idxOf, sameGrid } from "./state.js";

const DIV_LUT = (() => {
  const stops = DIVERGING.map(([t, c]) => [t, [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16))]);
  const lut = new Uint8ClampedArray(256 * 4);
  for (let i = 0; i < 256; i++) {
    const t = i / 255, k = Math.max(0, stops.findIndex(([s], j) => j < stops.length - 1 && t <= stops[j + 1][0]));
    const [t0, c0] = stops[k], [t1, c1] = stops[k + 1], f = (t - t0) / (t1 - t0 || 1);
    for (let c = 0; c < 3; c++) lut[i * 4 + c] = Math.round(c0[c] * (1 - f) + c1[c] * f);
    lut[i * 4 + 3] = 255;
  }
  return lut;
})();

// (rows x cols) canvas of d on [−m, +m], 0 at the centre colour.
function paintDiverging(d, rows, cols, m) {
  const cv = document.createElement("canvas");
  cv.width = cols; cv.height = rows;
  const ctx = cv.getContext("2d"), img = ctx.createImageData(cols, rows);
  for (let i = 0; i < rows * cols; i++) {
    const j = Math.round(Math.max(0, Math.min(1, 0.5 + d[i] / (2 * m))) * 255) * 4;
    img.data.set(DIV_LUT.subarray(j, j + 4), i * 4);
  }
  ctx.putImageData(img, 0, 0);
  return cv;
}

function drawDivergingBar(cv) {
  const ctx = cv.getContext("2d"), g = ctx.createLinearGradient(0, 0, cv.width, 0);
  for (const [t, c] of DIVERGING) g.addColorStop(t, c);
  ctx.fillStyle = g; ctx.fillRect(0, 0, cv.width, cv.height);
}

// The difference panel's elements: {panel, canvas, bar, min, max, caption, exports, renorm (the checkbox),
// what (the one-line description), values (the drawn d), norm ({sa, sb}: the patch sums, or null: raw B − A)}.
export function diffPanel() {
  const renorm = el("input", { type: "checkbox", id: "cmp-renorm" });
  const diff = { canvas: el("canvas", { class: "cmp-diff-canvas", id: "cmp-diff-canvas", role: "img", "aria-label": "difference map B minus A",
    "aria-describedby": "cmp-diff-caption" }),
    bar: el("canvas", { class: "cmp-divbar", width: 240, height: 12 }),
    min: el("span", { class: "mono small", id: "cmp-diff-min" }), max: el("span", { class: "mono small", id: "cmp-diff-max" }),
    caption: el("p", { class: "vz-caption", id: "cmp-diff-caption" }), exports: el("span", { id: "cmp-diff-export" }), values: null,
    norm: null, renorm, what: el("p", { class: "vz-caption cmp-what" }, WHAT.raw) };
  diff.panel = el("section", { class: "panel cmp-panel cmp-diffpanel", id: "cmp-diff", "aria-labelledby": "cmp-diff-title" },
    el("div", { class: "vz-panelhead" }, el("h2", { id: "cmp-diff-title" }, "Difference B \u2212 A"), diff.exports),
    diff.what,
    el("label", { class: "small", id: "cmp-renorm-label", title: "Divide each map by its own sum over the patches before subtracting" },
      renorm, " renormalise over patches"),
    el("div", { class: "cmp-stage cmp-diffonly" }, diff.canvas),
    el("div", { class: "cmp-divscale cmp-diffonly" }, diff.min, diff.bar, diff.max), diff.caption);
  drawDivergingBar(diff.bar);
  return diff;
}

const WHAT = {
  raw: "The value in panel B minus the value in panel A, patch by patch.",
  renorm: "Each panel's map divided by its own sum over the patches (\u00c2, B\u0302), then B\u0302 \u2212 \u00c2 patch by patch.",
};

// B − A per patch of two maps on one grid: {d: Float32Array (P), m: max |d|, arg: where, l1: Σ |d|}.
export function difference(a, b) {
  const d = new Float32Array(a.length); // (P,): B − A per patch
  let m = 0, arg = 0, l1 = 0;
  for (let i = 0; i < a.length; i++) {
    d[i] = b[i] - a[i];
    l1 += Math.abs(d[i]);
    if (Math.abs(d[i]) > m) { m = Math.abs(d[i]); arg = i; }
  }
  return { d, m, arg, l1 };
}

// B̂ − Â per patch: each (P,) map divided by its own sum over the patches first (its share of the patch attention
// at each patch; a map that sends mass to [CLS] or registers sums to less than 1 there), so Σ d = 0 and
// Σ |d| ∈ [0, 2]. Returns difference()'s fields plus sa, sb: the two sums (float64, summed in patch order).
export function renormalisedDifference(a, b) {
  const P = a.length, d = new Float32Array(P); // (P,): B̂ − Â per patch
  const sum = (v) => { let s = 0; for (let i = 0; i < P; i++) s += v[i]; return s; };
  const sa = sum(a), sb = sum(b);
  const fa = sa > 0 ? (i) => a[i] / sa : () => 0, fb = sb > 0 ? (i) => b[i] / sb : () => 0;
  let m = 0, arg = 0, l1 = 0;
  for (let i = 0; i < P; i++) {
    d[i] = fb(i) - fa(i);
    l1 += Math.abs(d[i]);
    if (Math.abs(d[i]) > m) { m = Math.abs(d[i]); arg = i; }
  }
  return { d, m, arg, l1, sa, sb };
}

// No map drawn: clear the canvas, the range and the exports, and say why.
function noDiff(diff, caption) {
  const cv = diff.canvas;
  cv.getContext("2d").clearRect(0, 0, cv.width, cv.height);
  delete cv.dataset.checksum;
  diff.min.textContent = diff.max.textContent = "";
  diff.caption.textContent = caption;
  diff.exports.replaceChildren();
}

// The renormalise toggle: forced on (and disabled) across models, the user's choice (C.renorm) within one.
function syncToggle(C, diff, cross) {
  diff.renorm.checked = cross || Boolean(C.renorm);
  diff.renorm.disabled = cross;
  diff.renorm.parentElement.title = cross
    ? "A and B are different models: their maps are always renormalised over the patches before subtracting"
    : "Divide each map by its own sum over the patches before subtracting";
  diff.what.textContent = diff.renorm.checked ? WHAT.renorm : WHAT.raw;
}

// Draw B − A (or B̂ − Â) of state C into the panel `diff`, or say why there is none.
export function drawDiff(C, diff) {
  const a = C.sides.a, b = C.sides.b;
  diff.panel.dataset.state = "none";
  diff.canvas.dataset.state = "none";
  diff.values = diff.norm = null;
  diff.panel.classList.toggle("cmp-nodiff", !sameGrid(a.A, b.A));
  if (!a.A || !b.A || !a.values || !b.values) { diff.caption.textContent = "Waiting for both panels\u2026"; return; }
  const cross = crossModel(a, b);
  syncToggle(C, diff, cross);
  if (!sameGrid(a.A, b.A)) { noDiff(diff, gridMismatchCaption(a, b)); return; }
  if (cross && (a.view === "head" || b.view === "head")) {
    diff.panel.classList.add("cmp-nodiff");
    noDiff(diff, crossModelHeadCaption(a, b));
    return;
  }
  const renorm = diff.renorm.checked;
  const r = renorm ? renormalisedDifference(a.values.values, b.values.values) : difference(a.values.values, b.values.values);
  diff.values = r.d;
  diff.norm = renorm ? { sa: r.sa, sb: r.sb } : null;
  const samePhoto = paintDiff(C, diff, r);
  diff.panel.dataset.state = "ready";
  diff.caption.textContent = diffCaption(a, b, r, renorm, samePhoto);
  diff.exports.replaceChildren(diffExports(C, diff));
}

// Paint d = r.d on the panel's canvas (over the faint photo when both panels analysed the same one); -> samePhoto.
function paintDiff(C, diff, { d, m }) {
  const a = C.sides.a, b = C.sides.b, cv = diff.canvas;
  const { rows, cols, patch_size: ps, resolution } = a.A.grid;
  const scale = m > 0 ? m : 1;
  const css = cv.clientWidth || 360, size = Math.round(css * (window.devicePixelRatio || 1));
  if (cv.width !== size) { cv.width = size; cv.height = size; }
  const ctx = cv.getContext("2d");
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, size, size);
  const samePhoto = a.A.hash === b.A.hash && a.A.grid.resolution === b.A.grid.resolution;
  if (samePhoto) { ctx.globalAlpha = 0.35; ctx.drawImage(a.A.image, 0, 0, size, size); }
  const fx = (cols * ps) / resolution, fy = (rows * ps) / resolution;
  ctx.globalAlpha = samePhoto ? 0.8 : 1;
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(paintDiverging(d, rows, cols, scale), 0, 0, size * fx, size * fy);
  ctx.globalAlpha = 1;
  const q = C.query ? idxOf(a.A, C.query) : null;
  if (q !== null) {
    const w = (size * fx) / cols, h = (size * fy) / rows;
    ctx.lineWidth = 2; ctx.strokeStyle = "#1d2430";
    ctx.strokeRect((q % cols) * w + 1, Math.floor(q / cols) * h + 1, w - 2, h - 2);
  }
  Object.assign(cv.dataset, { checksum: checksum(d), rows, cols, absmax: String(m), state: "ready",
    normalisation: diff.norm ? "patches" : "none" });
  diff.min.textContent = `\u2212${fmtValue(scale)}`;
  diff.max.textContent = `+${fmtValue(scale)}`;
  return samePhoto;
}

// The difference caption: what is subtracted, its range, where it peaks, and the caveats.
function diffCaption(a, b, { m, arg, l1 }, renorm, samePhoto) {
  const { rows, cols } = a.A.grid, scale = m > 0 ? m : 1;
  const D = renorm ? "B\u0302 \u2212 \u00c2" : "B \u2212 A";
  return (renorm ? `${renormCaption(a, b, l1)} ` : "")
    + `${D} over the ${rows}\u00d7${cols} patches: A is ${a.values.where}, ${a.values.what}; B is ${b.values.where}, ${b.values.what}. `
    + (m === 0 ? `${D} is exactly 0 at every patch: the two panels show the same ${renorm ? "shares" : "values"} (white everywhere).`
      : `Colour scale centred at 0 and symmetric, from \u2212${fmtValue(scale)} (blue: A larger) to +${fmtValue(scale)} (red: B larger); `
      + `the largest |${D}| is ${fmtValue(m)} at ${patchLabel(a.A, arg)}` + (renorm ? "." : `, and \u03a3 |B \u2212 A| = ${fmtValue(l1)}.`))
    + (a.values.what === b.values.what ? "" : " The two panels show different quantities, so read the difference with care.")
    + geometryClause(a, b)
    + (samePhoto ? " The photo (faint) is the one both panels analysed." : " The panels analysed different images, so no photo is drawn.");
}

// ---- exports ---------------------------------------------------------------------------------------------------
const sideName = (s) => `${s.sample || s.A.hash.slice(0, 8)}-${s.model}-${s.view === "rollout" ? "rollout"
  : `L${fromApi(s.layer)}${s.view === "mean" ? "mean" : `H${fromApi(s.head)}`}`}`;

// The exported table. Raw: A, B, B − A. Renormalised: also each map's share of its patch sum (Â, B̂) and B̂ − Â;
// meta.normalisation says which, and meta.A / meta.B hold each map's sum over the patches.
function diffTable(C, diff) {
  const a = C.sides.a, b = C.sides.b, cols = a.A.grid.cols, rows = [], n = diff.norm;
  const share = (v, s) => (s > 0 ? v / s : 0);
  for (let p = 0; p < a.A.P; p++) {
    const { row, col } = patchRowCol(p, cols), va = a.values.values[p], vb = b.values.values[p];
    rows.push(n ? [fromApi(p), row, col, va, vb, share(va, n.sa), share(vb, n.sb), diff.values[p]]
      : [fromApi(p), row, col, va, vb, diff.values[p]]);
  }
  const meta = { indexing: PATCH_NUMBERING, difference: n ? "B_hat - A_hat" : "B - A",
    normalisation: n ? "each map divided by its sum over the patches" : "none: the values the panels show" };
  for (const s of [a, b]) {
    meta[s.name.toUpperCase()] = { model: s.A.model.id, image: s.sample ? { sample: s.sample } : { image_hash: s.A.hash },
      resolution: s.A.grid.resolution, view: s.view, layer: s.view === "rollout" ? null : fromApi(s.layer),
      head: s.view === "head" ? fromApi(s.head) : s.view === "mean" ? "mean" : null, shows: s.values.what,
      ...(n ? { patch_sum: s.name === "a" ? n.sa : n.sb } : {}) };
  }
  const header = n ? ["patch", "row", "col", "A", "B", "A_hat", "B_hat", "B_hat_minus_A_hat"] : ["patch", "row", "col", "A", "B", "B_minus_A"];
  return { header, rows, meta };
}

function diffExports(C, diff) {
  const name = () => `diff-${sideName(C.sides.b)}-minus-${sideName(C.sides.a)}${diff.norm ? "-renormalised" : ""}`, cv = diff.canvas;
  return exportButtons({
    png: () => downloadCanvas(name(), cv, "png"), svg: () => downloadCanvas(name(), cv, "svg"),
    csv: () => { const t = diffTable(C, diff); downloadCSV(`${name()}.csv`, t.header, t.rows); },
    json: () => { const t = diffTable(C, diff); downloadJSON(`${name()}.json`, { meta: t.meta, header: t.header, rows: t.rows }); },
  }, "Export the difference map");
}
