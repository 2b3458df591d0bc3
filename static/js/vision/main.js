// Vision page: one forward pass per (image, model, resolution); everything else is slices of the server's cache.
// State lives in `S` and in the URL (layer/head 1-based there and on screen; 0-based in the API).
import { apiGet, apiPost, pageData, showError } from "../lib/api.js";
import { COLORMAPS, drawColorbar, fmtValue } from "../lib/colormap.js";
import { announce, gridStep, srTable, topK } from "../lib/a11y.js";
import { $, el } from "../lib/dom.js";
import { decodeTyped } from "../lib/typed.js";
import { readState, writeState } from "../lib/urlstate.js";
import { mountCompare, wireCompareLink } from "./compare.js";
import { renderExports } from "./exports.js";
import { renderModelGrid } from "./grid.js";
import { CLIP_QUANTILE, renderOverlay } from "./overlay.js";
import { renderPredictions } from "./predictions.js";
import { renderSamples, renderUpload } from "./upload.js";

const PD = pageData();
const MODELS = PD.models || [];
const HOVER_MS = 70, ROLLOUT_MS = 150, CACHE_MAX = 3000, TOP_K = 5;

const url = readState({ model: PD.default_model, res: 0, layer: 0, head: 1, view: "head", query: -1,
  img: "", sample: "", fusion: "mean", discard: 0, cmap: "viridis", clip: true, fade: true });
const S = {
  model: MODELS.some((m) => m.id === url.model) ? url.model : PD.default_model,
  res: url.res || 0,
  layer: url.layer > 0 ? url.layer - 1 : null, // 0-based; null = last layer once known
  head: Math.max(0, url.head - 1),
  view: ["head", "mean", "rollout"].includes(url.view) ? url.view : "head",
  query: url.query >= 0 ? url.query : null, // pinned query patch (0-based, row-major)
  hover: null,
  cursor: null, // the keyboard's query cursor on the big map (0-based patch index), kept across Esc
  img: url.img, sample: url.img ? "" : url.sample,
  fusion: ["mean", "max", "min"].includes(url.fusion) ? url.fusion : "mean",
  discard: Math.min(0.95, Math.max(0, url.discard || 0)),
  colormap: COLORMAPS.includes(url.cmap) ? url.cmap : "viridis",
  opacity: 0.6, smooth: false, clip: url.clip, gridlines: false, fade: url.fade,
  A: null, // the current analysis
};
const attnCache = new Map(); // `${aid}|${layer}|${head}|${query}` -> Float32Array (rows*cols)
const rolloutCache = new Map(); // `${aid}|${fusion}|${discard}` -> Float32Array (P)
const errBox = $("vz-error");
let shown = null; // what the big view shows now: {values, range, canvas, title, meta}

// ---- URL ------------------------------------------------------------------------------------------------
function syncURL() {
  const A = S.A;
  writeState({
    sample: S.sample, img: S.img, model: S.model, res: S.res || "",
    view: S.view, layer: A ? S.layer + 1 : "", head: A ? S.head + 1 : "",
    query: S.query ?? "",
    fusion: S.view === "rollout" && S.fusion !== "mean" ? S.fusion : "",
    discard: S.view === "rollout" && S.discard ? S.discard : "",
    cmap: S.colormap !== "viridis" ? S.colormap : "",
    clip: S.clip ? "" : false, fade: S.fade ? "" : false, // on by default: only "off" goes in the URL
  });
}

// ---- busy state -----------------------------------------------------------------------------------------
const emptyText = [...$("vz-empty").childNodes];
function setBusy(text) {
  $("vision-app").dataset.busy = text ? "1" : "0";
  const spin = () => [el("span", { class: "spinner", "aria-hidden": "true" }), el("span", {}, text)];
  if (text) {
    $("vz-status").replaceChildren(...spin());
    if (!S.A) $("vz-empty").replaceChildren(el("p", { class: "status" }, ...spin()));
  } else if (!S.A) {
    $("vz-empty").replaceChildren(...emptyText);
  }
}
function setStatus(text) { $("vz-status").replaceChildren(el("span", {}, text)); }

// ---- analysis -------------------------------------------------------------------------------------------
let analyzeToken = 0, lastStatus = "", analyzing = null;
async function analyze(source, { restore = false } = {}) {
  const my = ++analyzeToken;
  if (analyzing) analyzing.abort(); // a newer choice replaces a request still queued or running
  const ctl = analyzing = new AbortController();
  const fd = new FormData();
  let name;
  if (source.file) { fd.append("image", source.file, source.file.name || "pasted-image.png"); name = source.file.name || "the pasted image"; }
  else if (source.sample) { fd.append("sample", source.sample); name = `the "${source.sample}" photo`; }
  else { fd.append("image_hash", source.hash); name = "your image"; }
  fd.append("model", S.model);
  if (S.res) fd.append("resolution", String(S.res));
  const label = modelLabel(S.model);
  setBusy(`Running ${label} on ${name}${S.res ? ` at ${S.res} px` : ""}\u2026`);
  showError(errBox, null); delete errBox.dataset.from;
  try {
    const r = await apiPost("/api/vision/analyze", fd, { signal: ctl.signal });
    const image = await loadImage(r.image_url);
    if (my !== analyzeToken) return;
    adopt(r, image, source, restore);
    lastStatus = `${r.model.label} \u00b7 ${r.grid.rows}\u00d7${r.grid.cols} patches of ${r.grid.patch_size} px \u00b7 forward pass ${Math.round(r.forward_ms)} ms`;
    setStatus(lastStatus);
  } catch (e) {
    if (my !== analyzeToken) return;
    setStatus(S.A ? lastStatus : "");
    setActiveSample(S.A ? S.sample || null : null);
    showError(errBox, e);
  } finally {
    if (my === analyzeToken) { setBusy(null); analyzing = null; }
  }
}

function loadImage(src) {
  const img = new Image();
  img.src = src;
  return img.decode().then(() => img, () => { throw new Error("The analysed image could not be loaded; analyse it again."); });
}

function adopt(r, image, source, restore) {
  const cls = decodeTyped(r.cls_attention).data; // (L, H, P)
  const { num_layers: L, num_heads: H } = r.model;
  const P = r.grid.rows * r.grid.cols;
  const means = new Float32Array(L * P); // (L, P): mean over heads
  for (let l = 0; l < L; l++) for (let h = 0; h < H; h++) for (let p = 0; p < P; p++) means[l * P + p] += cls[(l * H + h) * P + p] / H;
  const prev = S.A;
  $("vision-app").dataset.analysis = r.analysis_id;
  $("vz-distance-link").href = `/distance?analysis=${encodeURIComponent(r.analysis_id)}`;
  S.A = { id: r.analysis_id, hash: r.image_hash, model: r.model, grid: r.grid, clsQuery: r.cls_query, L, H, P,
    cls, means, predictions: r.predictions, image };
  rolloutCache.set(rolloutKey(r.rollout_options.head_fusion, r.rollout_options.discard_ratio), decodeTyped(r.rollout).data);
  S.sample = source.sample || "";
  S.img = S.sample ? "" : r.image_hash;
  S.res = r.grid.resolution;
  S.layer = S.layer === null || S.layer >= L ? L - 1 : S.layer;
  S.head = Math.min(S.head, H - 1);
  // A pinned query survives a model switch on the same image with the same patch grid, and a permalink.
  const keepQuery = prev ? prev.hash === r.image_hash && prev.grid.rows === r.grid.rows && prev.grid.cols === r.grid.cols : restore;
  if (!keepQuery || (S.query !== null && S.query >= P)) S.query = null;
  S.hover = null;
  fillResolutions(r.model.resolutions, r.grid.resolution);
  setActiveSample(S.sample || null);
  $("vz-empty").classList.add("hidden");
  $("vz-main").classList.remove("hidden");
  $("vz-grid-what").textContent = r.cls_query === "cls" ? "[CLS] attention" : "mean patch-query attention";
  renderPredictions($("vz-preds"), r.predictions, r.model.label);
  $("vz-preds-export").classList.toggle("hidden", !r.predictions);
  renderGrid();
  refreshMap();
}

function currentSource() {
  if (S.sample) return { sample: S.sample };
  if (S.A) return { hash: S.A.hash };
  if (S.img) return { hash: S.img };
  return null;
}

// ---- model view grid ------------------------------------------------------------------------------------
function renderGrid() {
  const A = S.A;
  renderModelGrid($("vz-grid"), {
    cls: A.cls, means: A.means, L: A.L, H: A.H, rows: A.grid.rows, cols: A.grid.cols,
    colormap: S.colormap, clip: S.clip, active: S.view !== "rollout",
    describedBy: "vz-grid-caption",
    selected: { layer: S.layer, col: S.view === "mean" ? A.H : S.head },
    maxHeight: Math.max(360, window.innerHeight - ($("vz-grid").getBoundingClientRect().top + window.scrollY) - 24),
    onSelect: (layer, col) => {
      S.layer = layer;
      if (col === A.H) S.view = "mean";
      else { S.head = col; S.view = "head"; }
      renderGrid();
      refreshMap();
    },
  });
}

// ---- the big map ----------------------------------------------------------------------------------------
const rolloutKey = (f, d) => `${S.A.id}|${f}|${Number(d).toFixed(2)}`;

async function fetchRollout(signal) {
  const key = rolloutKey(S.fusion, S.discard);
  if (!rolloutCache.has(key)) {
    const r = await apiGet(`/api/vision/analysis/${S.A.id}/rollout?head_fusion=${S.fusion}&discard_ratio=${S.discard}`, { signal });
    rolloutCache.set(key, decodeTyped(r.rollout).data);
  }
  return rolloutCache.get(key);
}

async function fetchAttention(layer, head, query, signal) {
  const key = `${S.A.id}|${layer}|${head ?? "mean"}|${query}`;
  if (attnCache.has(key)) return attnCache.get(key);
  const q = new URLSearchParams({ layer, query });
  if (head !== null) q.set("head", head);
  const r = await apiGet(`/api/vision/analysis/${S.A.id}/attention?${q}`, { signal });
  const values = decodeTyped(r.values).data;
  attnCache.set(key, values);
  if (attnCache.size > CACHE_MAX) attnCache.delete(attnCache.keys().next().value);
  return values;
}

function patchName(idx) {
  const c = S.A.grid.cols;
  return `patch row ${Math.floor(idx / c) + 1}, col ${(idx % c) + 1}`;
}

// What the big view should show for the current state: {values, title, caption, meta}.
async function currentMap(signal) {
  const A = S.A, P = A.P, l = S.layer, head = S.view === "mean" ? null : S.head;
  const q = S.view === "rollout" ? null : (S.query ?? S.hover);
  const where = `Layer ${l + 1} \u00b7 ${head === null ? `mean of ${A.H} heads` : `head ${head + 1}`}`;
  const meta = { view: S.view, layer: l, head: head ?? "mean", query: q };
  if (S.view === "rollout") {
    const values = await fetchRollout(signal);
    return { values, meta, title: `Attention rollout \u00b7 layers 1\u2013${A.L}`,
      caption: `Rollout (Abnar & Zuidema 2020; ViT Fig. 6): heads fused by ${S.fusion}, ${Math.round(S.discard * 100)}% of the `
        + `weakest entries discarded, identity added for the residual connection, rows renormalised, layers multiplied from 1 up to ${A.L}. `
        + (A.clsQuery === "cls" ? "Shows row [CLS] of the product: how much each patch feeds the final [CLS] token."
          : "This model has no [CLS] token: shown is the mean over the patch rows of the product.")
        + " Patch queries are per layer: switch to Head or Mean of heads to probe a patch." };
  }
  if (q !== null) {
    const values = await fetchAttention(l, head, q, signal);
    return { values, meta, heading: where, title: `${where} \u00b7 query ${patchName(q)}`,
      caption: `Where the outlined patch (${patchName(q)}) attends in layer ${l + 1}, ${head === null ? "averaged over heads" : `head ${head + 1}`}: `
        + `its row of the attention matrix, over the image patches${A.grid.num_prefix_tokens ? " (the share it gives the [CLS] and other prefix tokens is not drawn)" : ""}. `
        + (S.query === null ? "Click (or press Enter) to pin this query." : "Esc or the \u201cBack\u201d button returns to the map you started from.") };
  }
  const values = head === null ? A.means.subarray(l * P, (l + 1) * P) : A.cls.subarray((l * A.H + head) * P, (l * A.H + head + 1) * P);
  const what = A.clsQuery === "cls"
    ? "how strongly the [CLS] token attends to each patch (its row of the softmax attention matrix without the prefix tokens, so the patch weights sum to less than 1)"
    : "this model has no [CLS] token, so the map is the attention of the average patch query: each patch's mean weight as a key";
  return { values, meta, title: where, caption: `${where}: ${what}. Hover over the photo, or focus it and use the arrow keys, to see where any single patch looks.` };
}

let mapToken = 0, mapping = null;
async function refreshMap() {
  if (!S.A) return;
  const my = ++mapToken;
  if (mapping) mapping.abort(); // hovering on: the map of the patch left behind is no longer wanted
  const ctl = mapping = new AbortController();
  syncURL();
  updateControls();
  let m;
  try {
    m = await currentMap(ctl.signal);
  } catch (e) {
    if (my !== mapToken) return;
    // The server evicted the analysis (TTL or memory): run the model again once, then report.
    if (e.status === 404 && !S.reanalysed) { S.reanalysed = true; analyze(currentSource(), { restore: true }); return; }
    showError(errBox, e);
    errBox.dataset.from = "map";
    return;
  }
  if (my !== mapToken) return;
  S.reanalysed = false;
  if (errBox.dataset.from === "map") { showError(errBox, null); delete errBox.dataset.from; }
  const A = S.A;
  const { canvas, range } = renderOverlay($("vz-overlay"), {
    image: A.image, values: m.values, rows: A.grid.rows, cols: A.grid.cols, patchSize: A.grid.patch_size,
    resolution: A.grid.resolution, colormap: S.colormap, opacity: S.opacity, smooth: S.smooth, clip: S.clip, fade: S.fade,
    gridlines: S.gridlines, query: S.view === "rollout" ? null : S.query ?? S.hover,
    hover: S.view === "rollout" || S.query === null ? null : S.hover,
    interactive: S.view !== "rollout", meta: { ...m.meta, label: m.title },
    onHover: onHover, onClick: onClick, onKey: onMapKey, onFocus: onMapFocus, onBlur: onMapBlur,
    describedBy: "vz-topk-table",
  });
  shown = { ...m, canvas, range };
  $("vz-title").textContent = m.heading || m.title;
  $("vz-caption").textContent = m.caption;
  $("vz-cb-min").textContent = fmtValue(range.min);
  $("vz-cb-max").textContent = `${range.clipped ? "\u2265 " : ""}${fmtValue(range.max)}`;
  paintColorbar();
  $("vz-colorbar").setAttribute("aria-label", `Colour scale (${S.colormap}): ${fmtValue(range.min)} at the bottom to ${
    range.clipped ? "at least " : ""}${fmtValue(range.max)} at the top`);
  describeMap(m, range);
  const out = outliers(m.values);
  $("vz-outlier").classList.toggle("hidden", !out || S.clip);
  if (out) {
    const probe = m.meta.query !== null && m.meta.query !== undefined;
    $("vz-outlier").textContent = `${out === 1 ? "One patch is" : `${out} patches are`} far brighter than the rest and set`
      + " the colour scale; tick \u201cClip top 2%\u201d to see the rest of the map."
      + (probe ? "" : " In trained ViTs such outliers are often low-content background patches that soak up attention"
        + " (Darcet et al. 2023, \u201cVision Transformers Need Registers\u201d).");
  }
}

// How many values stand far above the 98th percentile (0 when none): they would wash out the map.
function outliers(values) {
  if (values.length < 50) return 0;
  const sorted = Float64Array.from(values).sort();
  const min = sorted[0], q = sorted[Math.floor(CLIP_QUANTILE * (sorted.length - 1))], max = sorted[sorted.length - 1];
  if (max - min <= 4 * (q - min)) return 0;
  const cut = min + 4 * (q - min);
  return sorted.filter((v) => v > cut).length;
}

function paintColorbar() {
  const cb = $("vz-cb");
  drawColorbar(cb.getContext("2d"), S.colormap, 0, 0, cb.width, cb.height, null, { vertical: true });
}

let hoverTimer = 0;
function onHover(idx) {
  if (S.query !== null && idx !== null && S.hover === idx) return;
  clearTimeout(hoverTimer);
  hoverTimer = setTimeout(() => { S.hover = idx; refreshMap(); }, HOVER_MS);
}
function onClick(idx) {
  clearTimeout(hoverTimer);
  S.query = S.query === idx ? null : idx;
  S.hover = idx;
  refreshMap();
}
function backToCLS() { S.query = null; S.hover = null; refreshMap(); }

// ---- keyboard probing and the text alternative of the big map ---------------------------------------------
// Tab focuses the map; the arrow keys move a query cursor over the patch grid (PageUp/PageDown jump, Home/End
// go to the row's ends) and probe that patch as hovering does; Enter or Space pins it (again: unpins); Esc
// unpins, or with nothing pinned returns to the [CLS] map. Each change is read from the #vz-live region.
function onMapFocus() {
  if (!S.A || S.view === "rollout") return;
  S.cursor = S.query ?? S.cursor ?? Math.floor(S.A.grid.rows / 2) * S.A.grid.cols + Math.floor(S.A.grid.cols / 2);
  clearTimeout(hoverTimer);
  if (S.hover !== S.cursor) { S.hover = S.cursor; refreshMap(); }
}
function onMapBlur() {
  clearTimeout(hoverTimer);
  if (S.A && S.query === null && S.hover !== null) { S.hover = null; refreshMap(); }
}
function onMapKey(e) {
  if (!S.A || e.altKey || e.ctrlKey || e.metaKey) return;
  if (S.view === "rollout") {
    if (e.key.startsWith("Arrow")) announce($("vz-live"), "Patch queries are per layer: switch to Head or Mean of heads to probe a patch.");
    return;
  }
  const { rows, cols } = S.A.grid;
  if (S.cursor === null) S.cursor = S.query ?? Math.floor(rows / 2) * cols + Math.floor(cols / 2);
  const next = gridStep(e.key, S.cursor, rows, cols);
  if (next !== null) {
    e.preventDefault();
    S.cursor = next;
    clearTimeout(hoverTimer);
    S.hover = next;
    refreshMap();
  } else if (e.key === "Enter" || e.key === " ") {
    e.preventDefault();
    onClick(S.cursor);
  } else if (e.key === "Escape" && S.query === null && S.hover !== null) {
    e.preventDefault();
    backToCLS(); // a pinned query is unpinned by the page-wide Esc handler
  }
}

// The map in words: a visually hidden table of its TOP_K patches (read by screen readers, described-by of the
// canvas) and a one-line summary in the polite live region.
function describeMap(m, range) {
  const A = S.A, cols = A.grid.cols, best = topK(m.values, TOP_K);
  const where = (i) => `row ${Math.floor(i / cols) + 1}, col ${(i % cols) + 1}`;
  const table = srTable($("vz-topk"), {
    id: "vz-topk-table",
    caption: `${m.title}: the ${best.length} patches with the highest values, of ${A.P} (rows and columns count from 1, top left)`,
    headers: ["Rank", "Patch", "Value"],
    rows: best.map((i, r) => [String(r + 1), where(i), fmtValue(m.values[i])]),
  });
  table.dataset.first = String(best[0]);
  const pinned = S.view !== "rollout" && S.query !== null ? " (pinned)" : "";
  announce($("vz-live"), `${m.title}${pinned}. Highest: ${best.slice(0, 3).map((i) => `${where(i)} ${fmtValue(m.values[i])}`).join("; ")}. `
    + `Scale ${fmtValue(range.min)} to ${fmtValue(range.max)}.`);
}

// ---- controls -------------------------------------------------------------------------------------------
function modelLabel(id) { return (MODELS.find((m) => m.id === id) || {}).label || id; }

function fillModels() {
  const sel = $("vz-model");
  sel.replaceChildren(...MODELS.map((m) => el("option", { value: m.id }, m.label)));
  sel.value = S.model;
  sel.title = modelLabel(S.model);
  const m = MODELS.find((x) => x.id === S.model);
  fillResolutions(m ? m.resolutions : [], S.res);
}

function fillResolutions(list, current) {
  const sel = $("vz-res");
  const opts = list.length ? list : [];
  sel.replaceChildren(
    ...(opts.length ? [] : [el("option", { value: "" }, "model default")]),
    ...opts.map((r) => el("option", { value: r }, `${r} px`)));
  sel.value = opts.includes(Number(current)) ? String(current) : (opts.length ? String(opts[0]) : "");
}

function updateControls() {
  for (const b of document.querySelectorAll(".vz-viewbar [data-view]")) b.setAttribute("aria-pressed", String(b.dataset.view === S.view));
  const q = S.view === "rollout" ? null : S.query ?? S.hover;
  $("vz-query-text").textContent = S.view === "rollout" ? `Query: ${S.A.clsQuery === "cls" ? "[CLS]" : "mean of patches"} (rollout)`
    : q === null ? `Query: ${S.A.clsQuery === "cls" ? "[CLS] token" : "mean of patch queries"} \u00b7 hover a patch to probe it`
      : `Query: ${patchName(q)}${S.query !== null ? " (pinned)" : ""}`;
  $("vz-back").classList.toggle("hidden", S.query === null || S.view === "rollout");
  $("vz-back").textContent = S.A.clsQuery === "cls" ? "\u2190 Back to CLS" : "\u2190 Back to mean map";
  $("vz-rollout-opts").classList.toggle("dim", S.view !== "rollout");
}

function wireControls() {
  fillModels();
  $("vz-model").addEventListener("change", (e) => {
    S.model = e.target.value;
    e.target.title = modelLabel(S.model);
    const m = MODELS.find((x) => x.id === S.model);
    S.res = m && m.resolutions.includes(S.res) ? S.res : 0;
    fillResolutions(m ? m.resolutions : [], S.res);
    const src = currentSource();
    if (src) analyze(src); else syncURL();
  });
  $("vz-res").addEventListener("change", (e) => {
    S.res = Number(e.target.value) || 0;
    const src = currentSource();
    if (src) analyze(src); else syncURL();
  });
  for (const b of document.querySelectorAll(".vz-viewbar [data-view]")) {
    b.addEventListener("click", () => {
      S.view = b.dataset.view; S.hover = null;
      if (S.A) { renderGrid(); refreshMap(); }
    });
  }
  $("vz-back").addEventListener("click", backToCLS);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && S.query !== null) backToCLS(); });

  const opacity = $("vz-opacity");
  opacity.value = S.opacity;
  opacity.addEventListener("input", () => { S.opacity = Number(opacity.value); $("vz-opacity-out").textContent = S.opacity.toFixed(2); redraw(); });
  const cmap = $("vz-cmap");
  cmap.replaceChildren(...COLORMAPS.map((c) => el("option", { value: c }, c)));
  cmap.value = S.colormap;
  cmap.addEventListener("change", () => { S.colormap = cmap.value; if (S.A) { renderGrid(); refreshMap(); } });
  for (const [id, key] of [["vz-smooth", "smooth"], ["vz-gridlines", "gridlines"], ["vz-clip", "clip"], ["vz-fade", "fade"]]) {
    $(id).checked = S[key];
    $(id).addEventListener("change", (e) => { S[key] = e.target.checked; if (key === "clip" && S.A) renderGrid(); redraw(); });
  }
  const fusion = $("vz-fusion"), discard = $("vz-discard");
  fusion.value = S.fusion; discard.value = S.discard;
  $("vz-discard-out").textContent = `${Math.round(S.discard * 100)}%`;
  let t = 0;
  const rolloutChanged = () => {
    S.fusion = fusion.value; S.discard = Number(discard.value);
    $("vz-discard-out").textContent = `${Math.round(S.discard * 100)}%`;
    if (!S.A) return;
    if (S.view !== "rollout") { S.view = "rollout"; renderGrid(); }
    clearTimeout(t); t = setTimeout(refreshMap, ROLLOUT_MS);
  };
  fusion.addEventListener("change", rolloutChanged);
  discard.addEventListener("input", rolloutChanged);
}

function redraw() { if (S.A) refreshMap(); }

// ---- start ----------------------------------------------------------------------------------------------
let setActiveSample = () => {};
async function main() {
  if (url.compare) { mountCompare(PD); return; } // side by side (compare.js); the single view below is untouched
  wireCompareLink($("vz-compare-link"), MODELS);
  wireControls();
  renderExports(() => S, () => shown);
  renderUpload({
    drop: $("vz-drop"), input: $("vz-file"), hint: $("vz-drop-hint"), maxUploadMB: PD.max_upload_mb,
    onFile: (file) => analyze({ file }),
    onReject: (msg) => showError(errBox, new Error(msg)),
  });
  window.addEventListener("resize", () => { if (S.A) renderGrid(); });
  const src = S.img ? { hash: S.img } : S.sample ? { sample: S.sample } : null;
  if (src) analyze(src, { restore: true });
  try {
    const { samples } = await apiGet("/api/vision/samples");
    setActiveSample = renderSamples($("vz-samples"), samples, (name) => {
      setActiveSample(name);
      analyze({ sample: name });
    });
    setActiveSample(S.sample || null);
  } catch (e) { showError(errBox, e); }
}

main();
