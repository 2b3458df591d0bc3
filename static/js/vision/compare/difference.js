// Side by side on /vision, the third panel: B − A patch by patch on a diverging scale centred at 0 (lib/plot.js
// DIVERGING, as the text page's plotly difference uses), with its range stated, drawn only where the two patch
// grids match; and its exports.
import { fmtValue } from "../../lib/colormap.js";
import { el } from "../../lib/dom.js";
import { downloadCanvas, downloadCSV, downloadJSON, exportButtons } from "../../lib/export.js";
import { fromApi, PATCH_NUMBERING, patchRowCol } from "../../lib/numbering.js";
import { DIVERGING } from "../../lib/plot.js";
import { patchLabel } from "../data.js";
import { checksum } from "../overlay.js";
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

// The difference panel's elements: {panel, canvas, bar, min, max, caption, exports, values}.
export function diffPanel() {
  const diff = { canvas: el("canvas", { class: "cmp-diff-canvas", id: "cmp-diff-canvas", role: "img", "aria-label": "difference map B minus A",
    "aria-describedby": "cmp-diff-caption" }),
    bar: el("canvas", { class: "cmp-divbar", width: 240, height: 12 }),
    min: el("span", { class: "mono small", id: "cmp-diff-min" }), max: el("span", { class: "mono small", id: "cmp-diff-max" }),
    caption: el("p", { class: "vz-caption", id: "cmp-diff-caption" }), exports: el("span", { id: "cmp-diff-export" }), values: null };
  diff.panel = el("section", { class: "panel cmp-panel cmp-diffpanel", id: "cmp-diff", "aria-labelledby": "cmp-diff-title" },
    el("div", { class: "vz-panelhead" }, el("h2", { id: "cmp-diff-title" }, "Difference B \u2212 A"), diff.exports),
    el("p", { class: "vz-caption cmp-what" }, "The value in panel B minus the value in panel A, patch by patch."),
    el("div", { class: "cmp-stage cmp-diffonly" }, diff.canvas),
    el("div", { class: "cmp-divscale cmp-diffonly" }, diff.min, diff.bar, diff.max), diff.caption);
  drawDivergingBar(diff.bar);
  return diff;
}

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

// Draw B − A of state C into the panel `diff` (or say why there is none).
export function drawDiff(C, diff) {
  const a = C.sides.a, b = C.sides.b, cv = diff.canvas;
  diff.panel.dataset.state = "none";
  diff.values = null;
  diff.panel.classList.toggle("cmp-nodiff", !sameGrid(a.A, b.A));
  if (!a.A || !b.A || !a.values || !b.values) { diff.caption.textContent = "Waiting for both panels\u2026"; return; }
  if (!sameGrid(a.A, b.A)) {
    cv.getContext("2d").clearRect(0, 0, cv.width, cv.height);
    diff.min.textContent = diff.max.textContent = "";
    diff.caption.textContent = `No difference map: A has ${a.A.grid.rows}\u00d7${a.A.grid.cols} patches, B has `
      + `${b.A.grid.rows}\u00d7${b.A.grid.cols}. A patch-by-patch difference needs the same patch grid (same patch size and input resolution).`;
    diff.exports.replaceChildren();
    return;
  }
  const { rows, cols, patch_size: ps, resolution } = a.A.grid;
  const { d, m, arg, l1 } = difference(a.values.values, b.values.values);
  diff.values = d;
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
  Object.assign(cv.dataset, { checksum: checksum(d), rows, cols, absmax: String(m), state: "ready" });
  diff.panel.dataset.state = "ready";
  diff.min.textContent = `\u2212${fmtValue(scale)}`;
  diff.max.textContent = `+${fmtValue(scale)}`;
  const same = a.values.what === b.values.what;
  diff.caption.textContent = `B \u2212 A over the ${rows}\u00d7${cols} patches: A is ${a.values.where}, ${a.values.what}; B is ${b.values.where}, ${b.values.what}. `
    + (m === 0 ? "B \u2212 A is exactly 0 at every patch: the two panels show the same values (white everywhere)." : `Colour scale centred at 0 and symmetric, from \u2212${fmtValue(scale)} (blue: A larger) to +${fmtValue(scale)} (red: B larger); `
    + `the largest |B \u2212 A| is ${fmtValue(m)} at ${patchLabel(a.A, arg)}, and \u03a3 |B \u2212 A| = ${fmtValue(l1)}.`)
    + (same ? "" : " The two panels show different quantities, so read the difference with care.")
    + (samePhoto ? " The photo (faint) is the one both panels analysed." : " The panels analysed different images, so no photo is drawn.");
  diff.exports.replaceChildren(diffExports(C, diff));
}

// ---- exports ---------------------------------------------------------------------------------------------------
const sideName = (s) => `${s.sample || s.A.hash.slice(0, 8)}-${s.model}-${s.view === "rollout" ? "rollout"
  : `L${fromApi(s.layer)}${s.view === "mean" ? "mean" : `H${fromApi(s.head)}`}`}`;

function diffTable(C, diff) {
  const a = C.sides.a, b = C.sides.b, cols = a.A.grid.cols, rows = [];
  for (let p = 0; p < a.A.P; p++) {
    const { row, col } = patchRowCol(p, cols);
    rows.push([fromApi(p), row, col, a.values.values[p], b.values.values[p], diff.values[p]]);
  }
  const meta = { indexing: PATCH_NUMBERING, difference: "B - A" };
  for (const s of [a, b]) {
    meta[s.name.toUpperCase()] = { model: s.A.model.id, image: s.sample ? { sample: s.sample } : { image_hash: s.A.hash },
      resolution: s.A.grid.resolution, view: s.view, layer: s.view === "rollout" ? null : fromApi(s.layer),
      head: s.view === "head" ? fromApi(s.head) : s.view === "mean" ? "mean" : null, shows: s.values.what };
  }
  return { header: ["patch", "row", "col", "A", "B", "B_minus_A"], rows, meta };
}

function diffExports(C, diff) {
  const name = () => `diff-${sideName(C.sides.b)}-minus-${sideName(C.sides.a)}`, cv = diff.canvas;
  return exportButtons({
    png: () => downloadCanvas(name(), cv, "png"), svg: () => downloadCanvas(name(), cv, "svg"),
    csv: () => { const t = diffTable(C, diff); downloadCSV(`${name()}.csv`, t.header, t.rows); },
    json: () => { const t = diffTable(C, diff); downloadJSON(`${name()}.json`, { meta: t.meta, header: t.header, rows: t.rows }); },
  }, "Export the difference map");
}
