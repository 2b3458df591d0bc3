// /tour: the small live views of questions 2, 4, 6–10, from the same APIs as the pages they summarise
// (/scaling, /text, /vision, /distance, /vit-embeddings). Each draws into its own element and writes one caption
// sentence naming the model and the input; tour.js calls them and reports failures.
import { apiGet, apiPost, pageData } from "../lib/api.js";
import { paintGrid, valueRange } from "../lib/colormap.js";
import { $ } from "../lib/dom.js";
import { CONFIG, fmt, layout } from "../lib/plot.js";
import { decodeTyped } from "../lib/typed.js";
import { analyze } from "../text/data.js";
import { loadImage } from "../vision/data.js";
import { CLIP_QUANTILE } from "../vision/overlay.js";
import { BLUE, RED, drawVariance } from "./scaling.js";

const PD = pageData();
export const DATE_TEXT = "Saturday, 18 March 2023";
export const SAMPLE = "astronaut";
const small = (extra) => layout({ margin: { l: 46, r: 8, t: 8, b: 40 }, ...extra });
const caption = (id, ...parts) => $(id).replaceChildren(...parts);
const done = (id) => { $(id).dataset.live = "ready"; };

// Q2: Var(q·k) against d_k from /api/figures/scaling (the body tour.js already fetched).
export function liveVariance(body) {
  drawVariance($("tour-var"), body);
  caption("tour-var-caption", `Sampled on the server for random q, k with unit-variance components, ${body.var_samples} pairs per d_k: `,
    "Var(q·k) grows as d_k (red), the regime where, the paper reports, unscaled dot products trail additive attention (Section 3.2.1); divided by √d_k it stays at 1 (blue).");
  done("tour-var");
}

// Q4: the three attention kinds of the encoder–decoder model on one input, layer 1, mean of heads.
export async function liveKinds() {
  const A = await analyze({ text: DATE_TEXT, model: PD.seq2seq_model, layer: 0 });
  const kinds = ["encoder_self", "decoder_self", "cross"].filter((k) => A.block(k));
  const titles = { encoder_self: "encoder self", decoder_self: "masked decoder self", cross: "cross (enc–dec)" };
  const gap = 0.06, w = (1 - gap * (kinds.length - 1)) / kinds.length, traces = [], axes = {};
  for (const [n, kind] of kinds.entries()) {
    const b = A.block(kind), v = await A.head(kind, 0, "mean"), s = n ? String(n + 1) : "";
    // masked (future) cells are left empty (null), so the causal mask shows as the blank upper triangle
    const z = Array.from({ length: b.n_query }, (_, i) => Array.from({ length: b.n_key }, (_, j) => (A.isFuture(kind, i, j) ? null : v[i * b.n_key + j])));
    traces.push({ type: "heatmap", z, xaxis: `x${s}`, yaxis: `y${s}`, zmin: 0, colorscale: "Viridis", showscale: false, hoverongaps: false,
      text: z.map((r, i) => r.map((_, j) => `${A.queryAxis(kind).labels[i]} → ${A.keyAxis(kind).labels[j]}`)),
      hovertemplate: `${titles[kind]}<br>%{text}<br>weight %{z:.3f}<extra></extra>` });
    axes[`xaxis${s}`] = { domain: [n * (w + gap), n * (w + gap) + w], showticklabels: false, title: { text: titles[kind], font: { size: 11 } } };
    axes[`yaxis${s}`] = { autorange: "reversed", showticklabels: false, anchor: `x${s}`, title: n ? undefined : { text: "query" } };
  }
  Plotly.react($("tour-kinds"), traces, small({ ...axes, margin: { l: 30, r: 8, t: 8, b: 34 } }), CONFIG);
  caption("tour-kinds-caption", `${A.resp.model.id} on “${DATE_TEXT}”, layer 1, mean of heads (rows: queries, columns: keys): `,
    "the encoder's rows see every source token, the decoder's masked rows see only their own and earlier target positions (the empty upper triangle), and cross rows see the source (Section 3.2.3).");
  done("tour-kinds");
}

// One vision analysis of a sample photo, shared by questions 6, 8 and 10.
let visionRun = null;
export function visionAnalysis() {
  if (!visionRun) {
    const fd = new FormData();
    fd.append("sample", SAMPLE);
    if (PD.vision_model) fd.append("model", PD.vision_model);
    visionRun = apiPost("/api/vision/analyze", fd);
  }
  return visionRun;
}

async function distanceOf() {
  const r = await visionAnalysis();
  const d = await apiGet(`/api/distance/analysis/${encodeURIComponent(r.analysis_id)}?unit=pixels`);
  const mad = decodeTyped(d.mad).data, { num_layers: L, num_heads: H } = d.geometry;
  return { r, d, L, H, at: (l, h) => mad[l * H + h] };
}

// Q6: layer 1's heads, mean attention distance in pixels on one photo.
export async function liveLocal() {
  const { d, H, at } = await distanceOf();
  const heads = Array.from({ length: H }, (_, h) => h + 1), ys = heads.map((h) => at(0, h - 1));
  Plotly.react($("tour-local"), [{ type: "bar", x: heads, y: ys, marker: { color: BLUE }, hovertemplate: "head %{x}<br>%{y:.1f} px<extra></extra>" }],
    small({ xaxis: { title: { text: "head (layer 1)" }, dtick: 1 }, yaxis: { title: { text: "mean distance (px)" }, rangemode: "tozero" } }), CONFIG);
  const lo = Math.min(...ys), hi = Math.max(...ys);
  caption("tour-local-caption", `${d.label}, layer 1, on the “${SAMPLE}” sample (${d.geometry.resolution} px): `,
    `its heads integrate over ${fmt(lo, 1)}–${fmt(hi, 1)} px on average; a short bar is a head that attends locally, and in a trained ViT that locality is learned, since nothing in the architecture makes attention local (ViT Section 3.1).`);
  done("tour-local");
}

// Q8: every head of every layer (ViT Fig. 7 right, on one photo instead of 128 images).
export async function liveDistance() {
  const { d, L, H, at } = await distanceOf();
  const x = [], y = [], text = [];
  for (let l = 0; l < L; l++) for (let h = 0; h < H; h++) { x.push(l + 1); y.push(at(l, h)); text.push(`layer ${l + 1} · head ${h + 1}`); }
  Plotly.react($("tour-distance"), [{ type: "scatter", mode: "markers", x, y, text, marker: { color: RED, size: 6, opacity: 0.75 },
    hovertemplate: "%{text}<br>%{y:.1f} px<extra></extra>" }],
  small({ xaxis: { title: { text: "layer" }, dtick: 1 }, yaxis: { title: { text: "mean distance (px)" }, rangemode: "tozero" } }), CONFIG);
  caption("tour-distance-caption", `${d.label} on the “${SAMPLE}” sample: one dot per head, Σⱼ A[i, j]·d(i, j) averaged over query patches. `,
    "The paper's Fig. 7 (right) averages 128 images for ViT-L/16; here it is one photo, so read the spread per layer, not the exact values.");
  done("tour-distance");
}

// Q10: rollout of the same analysis over the photo.
export async function liveRollout() {
  const r = await visionAnalysis(), img = await loadImage(r.image_url);
  // colours clipped at the 98th percentile, the /vision default ("Clip top 2%"): a few outlier patches would
  // otherwise take the whole scale
  const roll = decodeTyped(r.rollout).data, { rows, cols } = r.grid, { min, max } = valueRange(roll, { clip: true, quantile: CLIP_QUANTILE });
  const canvas = $("tour-rollout"), size = 260, ctx = canvas.getContext("2d");
  canvas.width = size; canvas.height = size;
  ctx.drawImage(img, 0, 0, size, size);
  ctx.globalAlpha = 0.6; ctx.imageSmoothingEnabled = false;
  ctx.drawImage(paintGrid(roll, rows, cols, { colormap: "viridis", min, max }), 0, 0, size, size);
  ctx.globalAlpha = 1;
  canvas.setAttribute("aria-label", `Attention rollout of ${r.model.id} on the ${SAMPLE} sample, ${rows}×${cols} patches, overlaid on the photo`);
  caption("tour-rollout-caption", `${r.model.id} on the “${SAMPLE}” sample: the [CLS] row of rollout (mean of heads, A + I, all ${r.model.num_layers} layers) `,
    `over its ${rows}×${cols} patches, yellow = most (top 2% clipped, as on /vision).`);
  done("tour-rollout");
}

// Q7: cosine similarity of one learned position embedding (the centre) to every position.
export async function livePositions() {
  // A first, one-tile request gives the grid; then a stride that puts the centre on a shown tile (few tiles).
  const model = PD.vision_model ? { model: PD.vision_model } : {}, url = "/api/vit-embeddings/position-similarity";
  const grid = await apiGet(`${url}?${new URLSearchParams({ stride: 64, ...model })}`);
  const gcd = (x, y) => (y ? gcd(y, x % y) : x), stride = Math.min(64, gcd(Math.floor(grid.rows / 2), Math.floor(grid.cols / 2)) || 1);
  const body = await apiGet(`${url}?${new URLSearchParams({ stride, ...model })}`);
  const tiles = decodeTyped(body.tiles).data, R = body.rows, C = body.cols, TC = body.tile_cols.length;
  const near = (list, v) => list.reduce((best, x, i) => (Math.abs(x - v) < Math.abs(list[best] - v) ? i : best), 0);
  const a = near(body.tile_rows, Math.floor(R / 2)), b = near(body.tile_cols, Math.floor(C / 2)), off = (a * TC + b) * R * C;
  const value = (u) => (u / 255) * (body.scale_max - body.scale_min) + body.scale_min;
  const z = Array.from({ length: R }, (_, i) => Array.from({ length: C }, (_, j) => value(tiles[off + i * C + j])));
  Plotly.react($("tour-positions"), [{ type: "heatmap", z, x: Array.from({ length: C }, (_, j) => j + 1), y: Array.from({ length: R }, (_, i) => i + 1),
    zmin: -1, zmax: 1, colorscale: "RdBu", reversescale: true, colorbar: { thickness: 8, len: 0.9 }, hovertemplate: "row %{y}, column %{x}<br>cos %{z:.3f}<extra></extra>" }],
  small({ xaxis: { title: { text: "column" }, constrain: "domain" }, yaxis: { title: { text: "row" }, autorange: "reversed", scaleanchor: "x", constrain: "domain" } }), CONFIG);
  caption("tour-positions-caption", `${body.model}: cosine similarity between the learned 1D position embedding of patch (${body.tile_rows[a] + 1}, ${body.tile_cols[b] + 1}) `,
    `and those of all ${R}×${C} positions; where rows, columns or a blob around it stand out, the 1D table has learned the 2D layout (ViT Section 4.5, Fig. 7 centre).`);
  done("tour-positions");
}

// Q9: the top principal components of the patch-embedding filters, as RGB tiles.
export async function liveFilters() {
  const q = new URLSearchParams({ n_components: 8, ...(PD.vision_model ? { model: PD.vision_model } : {}) });
  const body = await apiGet(`/api/vit-embeddings/patch-filters?${q}`);
  const rgb = decodeTyped(body.rgb_tiles).data, ratio = decodeTyped(body.explained_variance_ratio).data;
  const p = body.patch_size, k = body.n_components, cell = 56, pad = 8, lab = 13; // a cell wide enough for its label
  const canvas = $("tour-filters"), ctx = canvas.getContext("2d"), cols = 4;
  canvas.width = cols * (cell + pad) + pad; canvas.height = Math.ceil(k / cols) * (cell + pad + lab) + pad;
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.imageSmoothingEnabled = false; ctx.font = "10px system-ui, sans-serif"; ctx.fillStyle = "#1d2430";
  for (let n = 0; n < k; n++) {
    const tile = document.createElement("canvas"); tile.width = tile.height = p;
    const t = tile.getContext("2d"), img = t.createImageData(p, p), o = n * p * p * 3;
    for (let i = 0; i < p * p; i++) { img.data.set([rgb[o + i * 3], rgb[o + i * 3 + 1], rgb[o + i * 3 + 2], 255], i * 4); }
    t.putImageData(img, 0, 0);
    const x = pad + (n % cols) * (cell + pad), y = pad + Math.floor(n / cols) * (cell + pad + lab);
    ctx.drawImage(tile, x, y, cell, cell);
    ctx.fillText(`PC${n + 1} ${(ratio[n] * 100).toFixed(1)}%`, x, y + cell + 10);
  }
  canvas.setAttribute("aria-label", `The top ${k} principal components of ${body.model}'s patch-embedding filters, as ${p}×${p} RGB tiles`);
  caption("tour-filters-caption", `${body.model}: the top ${k} principal components of its ${body.embed_dim} patch-embedding filters (3×${p}×${p} each), `,
    "each tile min–max scaled on its own, with its share of the variance; the paper's Fig. 7 (left) shows the same for ViT-L/32.");
  done("tour-filters");
}

// Q11: per layer, the largest patch-token norm over the median (residual stream), on the sample photo: the
// registers paper's high-norm tokens are about ten times the rest in large ViTs (Darcet et al. 2024, Sec. 2).
export async function liveNorms() {
  const r = await visionAnalysis();
  const n = await apiGet(`/api/vision/analysis/${encodeURIComponent(r.analysis_id)}/norms`);
  const x = n.max_ratio.map((_, i) => i + 1), peak = Math.max(...n.max_ratio), at = n.max_ratio.indexOf(peak) + 1;
  const outliers = n.outliers.reduce((s, v) => s + v, 0);
  await Plotly.react($("tour-norms"), [{ type: "bar", x, y: n.max_ratio, marker: { color: BLUE },
    hovertemplate: "layer %{x}: max / median %{y:.2f}<extra></extra>" }],
  small({ xaxis: { title: { text: "layer" }, dtick: 1 }, yaxis: { title: { text: "max / median norm" }, rangemode: "tozero" },
    shapes: [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: 1, y1: 1, line: { color: RED, dash: "dot", width: 1 } }] }), CONFIG);
  caption("tour-norms-caption", `${r.model.id} on the “${SAMPLE}” sample at ${r.grid.resolution} px: each layer's largest patch-token norm `,
    `over the layer's median (dotted: 1). The largest is ${fmt(peak)}× (layer ${at}); ${outliers} patch${outliers === 1 ? "" : "es"} above median + ${n.k}×MAD `,
    "in all layers together. The registers paper reports high-norm tokens about ten times the rest in large ViTs; on this photo this small model shows nothing like them.");
  done("tour-norms");
}
