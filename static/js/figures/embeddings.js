// /vit-embeddings: ViT paper Fig. 7 left (PCA of the patch-embedding filters) and centre (position-embedding
// cosine similarity). Numbers come from /api/vit-embeddings/*; this file only draws them.
// URL: model, stride, row/col (the selected position, 1-based as on screen), range, cmap, k.
import { apiGet, pageData, showError } from "../lib/api.js";
import { COLORMAPS, colorAt, colormapLUT, drawColorbar, fmtValue } from "../lib/colormap.js";
import { $, el, fillSelect } from "../lib/dom.js";
import { downloadCanvas, downloadCSV, downloadJSON, exportButtons, plotlyExports } from "../lib/export.js";
import { CONFIG, layout, ordinal } from "../lib/plot.js";
import { decodeTyped } from "../lib/typed.js";
import { readState, writeState } from "../lib/urlstate.js";

const PD = pageData();
const MODELS = PD.models || [];
const GAP = 1; // blank pixels between tiles, as in the paper
const COUNTING = "rows and columns count from 1 (1 = top left), as on screen; the API counts from 0";

const url = readState({ model: PD.default_model, stride: 1, row: 0, col: 0, range: "paper", cmap: "viridis", k: 28, zoom: "fit" });
const S = {
  model: MODELS.some((m) => m.id === url.model) ? url.model : PD.default_model,
  stride: Math.max(1, Math.min(64, Math.round(url.stride) || 1)),
  row: url.row > 0 ? url.row - 1 : null, // selected position, 0-based; null = centre once known
  col: url.col > 0 ? url.col - 1 : null,
  range: url.range === "data" ? "data" : "paper",
  cmap: COLORMAPS.includes(url.cmap) ? url.cmap : "viridis",
  k: Math.max(1, Math.min(64, Math.round(url.k) || 28)),
  zoom: ["fit", "1", "2", "4"].includes(url.zoom) ? url.zoom : "fit", // fit the panel, or n screen px per cell
  sim: null, // the position-similarity response, decoded
  pca: null,
};
const mosaic = { base: null, canvas: $("emb-mosaic") };

function syncURL() {
  writeState({
    model: S.model, stride: S.stride, row: S.row !== null ? S.row + 1 : "", col: S.col !== null ? S.col + 1 : "",
    range: S.range !== "paper" ? S.range : "", cmap: S.cmap !== "viridis" ? S.cmap : "", k: S.k !== 28 ? S.k : "",
    zoom: S.zoom !== "fit" ? S.zoom : "",
  });
}

function busy(text) {
  $("emb-app").dataset.busy = text ? "1" : "0";
  $("emb-status").replaceChildren(...(text ? [el("span", { class: "spinner", "aria-hidden": "true" }), text] : []));
}

// ---- position similarity: the mosaic ----------------------------------------------------------------------
function valueOf(q) { return (q / 255) * (S.sim.scale_max - S.sim.scale_min) + S.sim.scale_min; }

function colourRange() {
  return S.range === "data" ? { min: S.sim.min_off_diagonal, max: S.sim.max_off_diagonal } : { min: -1, max: 1 };
}

// One canvas pixel per cell: tile (a, b) at block row a, block column b, GAP blank pixels between tiles.
function paintMosaic() {
  const { R, C, TR, TC, q } = S.sim;
  const W = TC * C + (TC - 1) * GAP, H = TR * R + (TR - 1) * GAP;
  const base = document.createElement("canvas");
  base.width = W; base.height = H;
  const ctx = base.getContext("2d");
  const img = ctx.createImageData(W, H);
  img.data.fill(255); // white gaps
  const lut = colormapLUT(S.cmap), { min, max } = colourRange(), span = max > min ? max - min : 1;
  const code = new Uint8Array(256); // quantised cosine -> LUT index, once per paint
  for (let v = 0; v < 256; v++) code[v] = Math.round(Math.max(0, Math.min(1, (valueOf(v) - min) / span)) * 255);
  for (let a = 0; a < TR; a++) for (let b = 0; b < TC; b++) {
    const off = (a * TC + b) * R * C, top = a * (R + GAP), left = b * (C + GAP);
    for (let i = 0; i < R; i++) {
      let p = ((top + i) * W + left) * 4;
      for (let j = 0; j < C; j++, p += 4) {
        const k = code[q[off + i * C + j]] * 4;
        img.data[p] = lut[k]; img.data[p + 1] = lut[k + 1]; img.data[p + 2] = lut[k + 2];
      }
    }
  }
  ctx.putImageData(img, 0, 0);
  mosaic.base = base;
  drawSelection();
  const cb = $("emb-cb");
  drawColorbar(cb.getContext("2d"), S.cmap, 0, 0, cb.width, cb.height);
  $("emb-cb-min").textContent = fmtValue(min);
  $("emb-cb-max").textContent = fmtValue(max);
}

function selectedTile() {
  const a = S.sim.rowsShown.indexOf(S.row), b = S.sim.colsShown.indexOf(S.col);
  return { a, b };
}

// The visible canvas: each tile of the native mosaic (one pixel per cell) drawn at the display size, with a
// gap that stays a few screen pixels wide at any zoom. Downscaling uses high-quality smoothing (fewer moire
// lines than CSS scaling); upscaling stays crisp. `mosaic.view` keeps the layout for hit-testing.
function viewLayout() {
  const { R, C, TR, TC } = S.sim, dpr = window.devicePixelRatio || 1;
  const avail = Math.max(60, Math.min($("emb-mosaic-box").clientWidth, 620)) * dpr;
  const approxTile = S.zoom === "fit" ? avail / TC : Number(S.zoom) * dpr * C;
  const gap = Math.round(Math.max(1, Math.min(3 * dpr, approxTile * 0.06)));
  const cell = S.zoom === "fit" ? Math.max(0.05, (avail - (TC - 1) * gap) / (TC * C)) : Number(S.zoom) * dpr;
  const tileW = C * cell, tileH = R * cell;
  return { dpr, gap, cell, tileW, tileH, width: Math.round(TC * tileW + (TC - 1) * gap), height: Math.round(TR * tileH + (TR - 1) * gap) };
}

function drawSelection() {
  const { R, C, TR, TC } = S.sim, base = mosaic.base, cv = mosaic.canvas, v = viewLayout();
  mosaic.view = v;
  cv.width = v.width; cv.height = v.height;
  cv.style.width = `${v.width / v.dpr}px`; cv.style.height = `${v.height / v.dpr}px`;
  const ctx = cv.getContext("2d");
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, cv.width, cv.height);
  ctx.imageSmoothingEnabled = v.cell < 1; ctx.imageSmoothingQuality = "high";
  for (let a = 0; a < TR; a++) for (let b = 0; b < TC; b++) {
    const x = Math.round(b * (v.tileW + v.gap)), y = Math.round(a * (v.tileH + v.gap));
    const w = Math.round((b + 1) * (v.tileW + v.gap) - v.gap) - x, h = Math.round((a + 1) * (v.tileH + v.gap) - v.gap) - y;
    ctx.drawImage(base, b * (C + GAP), a * (R + GAP), C, R, x, y, w, h);
  }
  const { a, b } = selectedTile();
  if (a < 0 || b < 0) return;
  const lw = Math.max(2, Math.round(2 * v.dpr));
  ctx.strokeStyle = "#e0245e"; ctx.lineWidth = lw;
  ctx.strokeRect(b * (v.tileW + v.gap) - lw / 2, a * (v.tileH + v.gap) - lw / 2, v.tileW + lw, v.tileH + lw);
}

// pointer -> {a, b, i, j} (tile, and cell inside it), or null over a gap
function hit(ev) {
  const { R, C, TR, TC } = S.sim, v = mosaic.view, cv = mosaic.canvas, box = cv.getBoundingClientRect();
  const x = ((ev.clientX - box.left) / box.width) * cv.width, y = ((ev.clientY - box.top) / box.height) * cv.height;
  const b = Math.floor(x / (v.tileW + v.gap)), a = Math.floor(y / (v.tileH + v.gap));
  const dx = x - b * (v.tileW + v.gap), dy = y - a * (v.tileH + v.gap);
  if (a < 0 || b < 0 || a >= TR || b >= TC || dx >= v.tileW || dy >= v.tileH) return null;
  return { a, b, i: Math.min(R - 1, Math.floor((dy / v.tileH) * R)), j: Math.min(C - 1, Math.floor((dx / v.tileW) * C)) };
}

function describeHit(h) {
  const { R, C, TC, q, rowsShown, colsShown } = S.sim;
  const v = valueOf(q[(h.a * TC + h.b) * R * C + h.i * C + h.j]);
  return `tile (${rowsShown[h.a] + 1}, ${colsShown[h.b] + 1}) · position (${h.i + 1}, ${h.j + 1}): cos ${v.toFixed(3)}`;
}

function select(a, b) {
  S.row = S.sim.rowsShown[a]; S.col = S.sim.colsShown[b];
  drawSelection(); drawTile(); syncURL();
}

// ---- position similarity: the selected tile, large ----------------------------------------------------------
function plotlyScale() {
  return Array.from({ length: 11 }, (_, i) => [i / 10, colorAt(S.cmap, i / 10)]);
}

function tileValues() {
  const { R, C, TC, q } = S.sim, { a, b } = selectedTile(), off = (a * TC + b) * R * C;
  return Array.from({ length: R }, (_, i) => Array.from({ length: C }, (_, j) => valueOf(q[off + i * C + j])));
}

function drawTile() {
  const { R, C, model } = S.sim, z = tileValues(), { min, max } = colourRange();
  const xs = Array.from({ length: C }, (_, j) => j + 1), ys = Array.from({ length: R }, (_, i) => i + 1);
  const traces = [
    { type: "heatmap", z, x: xs, y: ys, zmin: min, zmax: max, colorscale: plotlyScale(),
      colorbar: { thickness: 10, len: 0.9, title: { text: "cos", side: "right" } },
      hovertemplate: "row %{y}, column %{x}<br>cos %{z:.4f}<extra></extra>" },
    { type: "scatter", mode: "markers", x: [S.col + 1], y: [S.row + 1], hoverinfo: "skip", showlegend: false,
      marker: { symbol: "square-open", size: Math.max(8, Math.min(22, 320 / Math.max(R, C))), color: "#e0245e", line: { width: 2 } } },
  ];
  $("emb-tile-title").textContent = `Position (${S.row + 1}, ${S.col + 1}) of ${R}×${C}`;
  Plotly.react($("emb-tile"), traces, layout({
    margin: { l: 44, r: 10, t: 8, b: 40 },
    xaxis: { title: { text: "column" }, constrain: "domain", range: [0.5, C + 0.5], ...(C <= 12 ? { dtick: 1 } : {}) },
    yaxis: { title: { text: "row" }, autorange: "reversed", scaleanchor: "x", constrain: "domain", ...(R <= 12 ? { dtick: 1 } : {}) },
  }), CONFIG);
  $("emb-tile-export").replaceChildren(exportButtons(plotlyExports($("emb-tile"),
    `position-similarity-${model}-r${S.row + 1}-c${S.col + 1}`, () => ({
      header: ["row", "col", "cosine"],
      rows: z.flatMap((r, i) => r.map((v, j) => [i + 1, j + 1, v])),
      meta: { model, query_row: S.row + 1, query_col: S.col + 1, grid: [R, C], counting: COUNTING, note: "quantised to 1/127.5" },
    }))));
}

// ---- exports of the mosaic: the picture as drawn, the exact float numbers fetched on demand -------------------
async function mosaicData() {
  const body = await apiGet(`/api/vit-embeddings/position-similarity?${new URLSearchParams({ model: S.model, stride: S.stride, dtype: "f4" })}`);
  const { data } = decodeTyped(body.tiles), P = body.rows * body.cols;
  const header = ["query_row", "query_col"];
  for (let i = 1; i <= body.rows; i++) for (let j = 1; j <= body.cols; j++) header.push(`r${i}c${j}`);
  const rows = [];
  body.tile_rows.forEach((r, a) => body.tile_cols.forEach((c, b) => {
    const off = (a * body.tile_cols.length + b) * P;
    rows.push([r + 1, c + 1, ...Array.from(data.subarray(off, off + P), (v) => Number(v.toFixed(6)))]);
  }));
  const meta = { model: body.model, grid: [body.rows, body.cols], stride: body.stride, prefix_tokens_left_out: body.prefix_tokens_left_out,
    counting: `${COUNTING}; one row per shown query position, one column per key position (row-major)` };
  return { header, rows, meta };
}

function mountMosaicExports() {
  const name = `position-similarity-${S.model}-stride${S.stride}`;
  const wrap = (fn) => async () => {
    try { busy("Fetching exact values…"); await fn(); } catch (e) { showError($("emb-error"), e); } finally { busy(""); }
  };
  $("emb-mosaic-export").replaceChildren(exportButtons({
    png: () => downloadCanvas(name, mosaic.base, "png"),
    svg: () => downloadCanvas(name, mosaic.base, "svg"),
    csv: wrap(async () => { const d = await mosaicData(); downloadCSV(`${name}.csv`, d.header, d.rows); }),
    json: wrap(async () => { const d = await mosaicData(); downloadJSON(`${name}.json`, d); }),
  }));
}

async function loadSimilarity() {
  busy("Computing position-embedding similarity…");
  try {
    const body = await apiGet(`/api/vit-embeddings/position-similarity?${new URLSearchParams({ model: S.model, stride: S.stride })}`);
    const { data } = decodeTyped(body.tiles);
    S.sim = { ...body, R: body.rows, C: body.cols, TR: body.tile_rows.length, TC: body.tile_cols.length, q: data,
      rowsShown: body.tile_rows, colsShown: body.tile_cols };
    // keep the selection on a shown tile: nearest shown row/column, centre by default
    const near = (list, v) => list.reduce((best, x) => (Math.abs(x - v) < Math.abs(best - v) ? x : best), list[0]);
    S.row = near(S.sim.rowsShown, S.row ?? Math.floor(body.rows / 2));
    S.col = near(S.sim.colsShown, S.col ?? Math.floor(body.cols / 2));
    paintMosaic(); drawTile(); mountMosaicExports();
    $("emb-mosaic-caption").textContent =
      `${body.model}: ${body.rows}×${body.cols} patch positions (embedding width ${body.embed_dim}; ` +
      `${body.prefix_tokens_left_out} prefix token${body.prefix_tokens_left_out === 1 ? "" : "s"} left out). ` +
      `${S.sim.TR}×${S.sim.TC} tiles shown${body.stride > 1 ? ` (every ${ordinal(body.stride)} row and column)` : ""}; ` +
      `tile (r, c) is the cosine similarity between the embedding of position (r, c) and those of all positions. ` +
      `Off-diagonal cosines range from ${body.min_off_diagonal.toFixed(3)} to ${body.max_off_diagonal.toFixed(3)}. ` +
      (MODELS.find((m) => m.id === S.model)?.source === "random"
        ? `This model is randomly initialised, not trained: its position embeddings are random vectors, so any pattern ` +
          `here is chance, not a learned layout. For trained ViTs the paper finds that close patches get similar ` +
          `embeddings and that row–column structure appears (Section 4.5, Figure 7 centre); pick a trained model to compare.`
        : `For trained ViTs the paper finds that close patches get similar embeddings and that patches in the same row ` +
          `or column share structure (Section 4.5, Figure 7 centre). Where the tiles show that, this model's embeddings ` +
          `carry the 2-D layout: learned from data, and also imposed by the 2-D interpolation applied when a model is ` +
          `fine-tuned at another resolution (Section 3.2).`);
    showError($("emb-error"), null);
  } catch (e) {
    S.sim = null; showError($("emb-error"), e);
    mosaic.canvas.width = mosaic.canvas.height = 0;
    Plotly.purge($("emb-tile"));
  } finally { busy(""); }
}

// ---- patch-embedding PCA ---------------------------------------------------------------------------------------
function filterCanvas(rgb, index, p) {
  const c = document.createElement("canvas");
  c.width = p; c.height = p;
  const ctx = c.getContext("2d"), img = ctx.createImageData(p, p), off = index * p * p * 3;
  for (let i = 0; i < p * p; i++) {
    img.data[i * 4] = rgb[off + i * 3]; img.data[i * 4 + 1] = rgb[off + i * 3 + 1]; img.data[i * 4 + 2] = rgb[off + i * 3 + 2];
    img.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  return c;
}

// all tiles on one canvas (for PNG/SVG): 7 per row, each scaled x4, labelled
function filtersSheet() {
  const { rgb, p, k, ratio } = S.pca, cols = Math.min(7, k), rows = Math.ceil(k / cols), s = 4, cell = p * s, pad = 8, lab = 14;
  const out = document.createElement("canvas");
  out.width = cols * (cell + pad) + pad; out.height = rows * (cell + pad + lab) + pad;
  const ctx = out.getContext("2d");
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, out.width, out.height);
  ctx.imageSmoothingEnabled = false; ctx.font = "11px system-ui, sans-serif"; ctx.fillStyle = "#1d2430";
  for (let n = 0; n < k; n++) {
    const x = pad + (n % cols) * (cell + pad), y = pad + Math.floor(n / cols) * (cell + pad + lab);
    ctx.drawImage(filterCanvas(rgb, n, p), x, y, cell, cell);
    ctx.fillText(`PC${n + 1} ${(ratio[n] * 100).toFixed(1)}%`, x, y + cell + 11);
  }
  return out;
}

function drawPCA() {
  const { rgb, p, k, ratio, body } = S.pca;
  const box = $("emb-filters");
  box.replaceChildren(...Array.from({ length: k }, (_, n) => {
    const c = filterCanvas(rgb, n, p);
    c.className = "vf-filter-img";
    return el("figure", { class: "vf-filter", title: `principal component ${n + 1}: ${(ratio[n] * 100).toFixed(2)}% of the variance` },
      c, el("figcaption", { class: "mono" }, `${n + 1} · ${(ratio[n] * 100).toFixed(1)}%`));
  }));
  let cum = 0;
  const cumulative = Array.from(ratio, (r) => (cum += r) * 100);
  const xs = Array.from({ length: k }, (_, i) => i + 1);
  Plotly.react($("emb-var"), [
    { type: "bar", x: xs, y: Array.from(ratio, (r) => r * 100), name: "per component", marker: { color: "#2456c7" },
      hovertemplate: "PC%{x}: %{y:.2f}%<extra></extra>" },
    { type: "scatter", mode: "lines+markers", x: xs, y: cumulative, name: "cumulative", yaxis: "y2",
      line: { color: "#c77700", width: 2 }, marker: { size: 4 }, hovertemplate: "PC1–%{x}: %{y:.1f}%<extra></extra>" },
  ], layout({
    margin: { l: 48, r: 48, t: 8, b: 40 },
    xaxis: { title: { text: "principal component" } },
    yaxis: { title: { text: "% of variance" }, rangemode: "tozero" },
    yaxis2: { title: { text: "cumulative %" }, overlaying: "y", side: "right", range: [0, 100], showgrid: false,
      tickmode: "linear", tick0: 0, dtick: 20 },
    legend: { orientation: "h", x: 0, y: 1.0, yanchor: "bottom", font: { size: 11 } }, bargap: 0.15,
  }), CONFIG);
  $("emb-pca-note").textContent = `${body.model}: ${body.embed_dim} filters of 3×${p}×${p}; the top ${k} components ` +
    `explain ${cumulative[k - 1].toFixed(1)}% of their variance.`;
  const name = `patch-embedding-pca-${body.model}-k${k}`;
  const comps = decodeTyped(body.components).data, F = 3 * p * p;
  const header = ["component", "explained_variance_ratio"];
  for (let ch = 0; ch < 3; ch++) for (let y = 0; y < p; y++) for (let x = 0; x < p; x++) header.push(`${"rgb"[ch]}_y${y}_x${x}`);
  const table = () => ({
    header, rows: xs.map((n) => [n, ratio[n - 1], ...Array.from(comps.subarray((n - 1) * F, n * F))]),
    meta: { model: body.model, patch_size: p, embed_dim: body.embed_dim, note: "components are unit-norm rows of V^T (3*p*p values, channel-major)" },
  });
  $("emb-pca-export").replaceChildren(exportButtons({
    png: () => downloadCanvas(name, filtersSheet(), "png"),
    svg: () => downloadCanvas(name, filtersSheet(), "svg"),
    csv: () => { const t = table(); downloadCSV(`${name}.csv`, t.header, t.rows); },
    json: () => downloadJSON(`${name}.json`, table()),
  }));
  $("emb-var-export").replaceChildren(exportButtons(plotlyExports($("emb-var"), `${name}-variance`, () => ({
    header: ["component", "explained_variance_ratio", "cumulative_percent"],
    rows: xs.map((n) => [n, ratio[n - 1], cumulative[n - 1]]), meta: { model: body.model },
  }))));
}

async function loadPCA() {
  try {
    const body = await apiGet(`/api/vit-embeddings/patch-filters?${new URLSearchParams({ model: S.model, n_components: S.k })}`);
    S.pca = { body, rgb: decodeTyped(body.rgb_tiles).data, p: body.patch_size, k: body.n_components,
      ratio: decodeTyped(body.explained_variance_ratio).data };
    drawPCA();
  } catch (e) {
    showError($("emb-error"), e);
    $("emb-filters").replaceChildren();
  }
}

// ---- wiring ---------------------------------------------------------------------------------------------------
function init() {
  fillSelect($("emb-model"), MODELS.map((m) => [m.id, m.label]), S.model);
  const strides = [1, 2, 3, 4, 6, 8];
  if (!strides.includes(S.stride)) strides.push(S.stride);
  fillSelect($("emb-stride"), strides.map((k) => [k, k === 1 ? "every position" : `every ${ordinal(k)} position`]), S.stride);
  fillSelect($("emb-cmap"), COLORMAPS.map((c) => [c, c]), S.cmap);
  $("emb-range").value = S.range;
  $("emb-zoom").value = S.zoom;
  $("emb-zoom").addEventListener("change", (e) => { S.zoom = e.target.value; syncURL(); if (S.sim) drawSelection(); });
  new ResizeObserver(() => { if (S.sim && S.zoom === "fit") drawSelection(); }).observe($("emb-mosaic-box"));
  $("emb-k").value = S.k;

  $("emb-model").addEventListener("change", (e) => {
    S.model = e.target.value; S.row = S.col = null; syncURL(); loadSimilarity(); loadPCA();
  });
  $("emb-stride").addEventListener("change", (e) => { S.stride = Number(e.target.value); syncURL(); loadSimilarity(); });
  const repaint = () => { syncURL(); if (S.sim) { paintMosaic(); drawTile(); } };
  $("emb-range").addEventListener("change", (e) => { S.range = e.target.value; repaint(); });
  $("emb-cmap").addEventListener("change", (e) => { S.cmap = e.target.value; repaint(); });
  $("emb-k").addEventListener("change", (e) => {
    const k = Math.round(Number(e.target.value));
    if (!(k >= 1 && k <= 64)) { showError($("emb-error"), new Error("Components must be a whole number from 1 to 64.")); return; }
    S.k = k; syncURL(); loadPCA();
  });

  const cv = mosaic.canvas;
  cv.addEventListener("mousemove", (ev) => {
    if (!S.sim) return;
    const h = hit(ev);
    $("emb-hover").textContent = h ? describeHit(h) : "";
  });
  cv.addEventListener("mouseleave", () => { $("emb-hover").textContent = ""; });
  cv.addEventListener("click", (ev) => { if (!S.sim) return; const h = hit(ev); if (h) select(h.a, h.b); });
  cv.addEventListener("keydown", (ev) => {
    if (!S.sim) return;
    const moves = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0] };
    const m = moves[ev.key];
    if (!m) return;
    ev.preventDefault();
    const { a, b } = selectedTile();
    select(Math.max(0, Math.min(S.sim.TR - 1, a + m[0])), Math.max(0, Math.min(S.sim.TC - 1, b + m[1])));
  });
  syncURL();
  loadSimilarity();
  loadPCA();
}

init();
