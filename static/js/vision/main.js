// Vision page: one forward pass per (image, model, resolution); everything else is slices of the server's cache.
// State lives in `S` and in the URL (layer/head 1-based there and on screen; 0-based in the API).
import { apiGet, pageData, showError } from "../lib/api.js";
import { COLORMAPS, drawColorbar, fmtValue } from "../lib/colormap.js";
import { announce, gridStep } from "../lib/a11y.js";
import { $, el } from "../lib/dom.js";
import { fromApi, toApi, toApiOr } from "../lib/numbering.js";
import { readState, writeState } from "../lib/urlstate.js";
import { mountCompare, wireCompareLink } from "./compare/main.js";
import { analyzeImage, fetchPatchRow, mapOf, patchLabel } from "./data.js";
import { visionValueWeight } from "../lib/valueweight.js";
import { entropyMap } from "./entropy.js";
import { applyFirstLook, firstLook } from "./firstlook.js";
import { renderCrop, renderNotes } from "./notes.js";
import { describeMap as describeIn, fillResolutions } from "./describe.js";
import { renderExports } from "./exports.js";
import { mountFeatureTabs } from "./features.js";
import { renderModelGrid } from "./grid.js";
import { outlierNote, renderOverlay } from "./overlay.js";
import { renderPredictions } from "./predictions.js";
import { renderSamples, renderUpload } from "./upload.js";

const PD = pageData();
const MODELS = PD.models || [];
const HOVER_MS = 70, ROLLOUT_MS = 150, TOP_K = 5;

const url = readState({ model: PD.default_model, res: 0, layer: 0, head: 1, view: "head", query: -1,
  img: "", sample: "", fusion: "mean", discard: 0, cmap: "viridis", clip: true, fade: true, vw: false });
const S = {
  model: MODELS.some((m) => m.id === url.model) ? url.model : PD.default_model,
  res: url.res || 0,
  layer: toApiOr(url.layer, null), // 0-based; null = last layer once known
  head: toApi(url.head),
  view: ["head", "mean", "rollout", "entropy"].includes(url.view) ? url.view : "head",
  query: url.query >= 0 ? url.query : null, // pinned query patch (0-based, row-major)
  hover: null,
  cursor: null, // the keyboard's query cursor on the big map (0-based patch index), kept across Esc
  img: url.img, sample: url.img ? "" : url.sample,
  fusion: ["mean", "max", "min"].includes(url.fusion) ? url.fusion : "mean",
  discard: Math.min(0.95, Math.max(0, url.discard || 0)),
  colormap: COLORMAPS.includes(url.cmap) ? url.cmap : "viridis",
  opacity: 0.6, smooth: false, clip: url.clip, gridlines: false, fade: url.fade,
  A: null, // the current analysis (vision/data.js)
};
// No image in the URL: open on the measured first look (firstlook.js), not on an empty page.
const look = url.img || url.sample ? null : firstLook(MODELS, PD.default_model);
if (look) applyFirstLook(S, look);
const errBox = $("vz-error");
let shown = null; // what the big view shows now: {values, range, canvas, title, meta}
let tabs = null; // the Attention / Features / Norms tabs (features.js)

// ---- URL ------------------------------------------------------------------------------------------------
function syncURL() {
  const A = S.A;
  writeState({
    sample: S.sample, img: S.img, model: S.model, res: S.res || "",
    view: S.view, layer: A ? fromApi(S.layer) : "", head: A ? fromApi(S.head) : "",
    query: S.query ?? "",
    fusion: S.view === "rollout" && S.fusion !== "mean" ? S.fusion : "",
    discard: S.view === "rollout" && S.discard ? S.discard : "",
    cmap: S.colormap !== "viridis" ? S.colormap : "",
    clip: S.clip ? "" : false, fade: S.fade ? "" : false, // on by default: only "off" goes in the URL
    tab: tabs && tabs.current() !== "attention" ? tabs.current() : "",
    vw: VW.on() || "",
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
  const name = source.file ? source.file.name || "the pasted image" : source.sample ? `the "${source.sample}" photo` : "your image";
  setBusy(`Running ${modelLabel(S.model)} on ${name}${S.res ? ` at ${S.res} px` : ""}\u2026`);
  showError(errBox, null); delete errBox.dataset.from;
  try {
    const A = await analyzeImage(source, { model: S.model, res: S.res, signal: ctl.signal });
    if (my !== analyzeToken) return;
    adopt(A, source, restore);
    lastStatus = `${A.model.label} \u00b7 ${A.grid.rows}\u00d7${A.grid.cols} patches of ${A.grid.patch_size} px \u00b7 forward pass ${Math.round(A.forwardMs)} ms`;
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

// Make the analysis A (vision/data.js) the page's: keep what of the selection still fits it, then draw.
function adopt(A, source, restore) {
  const prev = S.A;
  $("vision-app").dataset.analysis = A.id;
  $("vz-distance-link").href = `/distance?analysis=${encodeURIComponent(A.id)}`;
  S.A = A;
  S.sample = source.sample || "";
  S.img = S.sample ? "" : A.hash;
  S.res = A.grid.resolution;
  S.layer = S.layer === null || S.layer >= A.L ? A.L - 1 : S.layer;
  S.head = Math.min(S.head, A.H - 1);
  // A pinned query survives a model switch on the same image with the same patch grid, and a permalink.
  const keepQuery = prev ? prev.hash === A.hash && prev.grid.rows === A.grid.rows && prev.grid.cols === A.grid.cols : restore;
  if (!keepQuery || (S.query !== null && S.query >= A.P)) S.query = null;
  S.hover = null;
  fillResolutions(A.model.resolutions, A.grid.resolution);
  setActiveSample(S.sample || null);
  $("vz-empty").classList.add("hidden");
  $("vz-main").classList.remove("hidden");
  tabs?.adopt(A); // hides #vz-main again when another tab is chosen
  $("vz-grid-what").textContent = A.clsQuery === "cls" ? "[CLS] attention" : "mean patch-query attention";
  renderPredictions($("vz-preds"), A.predictions, A.model.label);
  $("vz-preds-export").classList.toggle("hidden", !A.predictions);
  $("vz-preds-card").classList.toggle("hidden", !A.predictions); // no classifier head: no empty card
  renderCrop($("vz-crop"), A);
  renderGrid();
  refreshMap();
  VW.adopt(A);
}

// Value-weighted attention (Kobayashi et al. 2020): the toggle, its norms and the weighted maps (lib/valueweight.js).
const VW = visionValueWeight({
  slot: $("vz-vw-slot"), checked: url.vw, onError: (e) => showError(errBox, e),
  onChange: () => { if (S.A) { renderGrid(); refreshMap(); } else syncURL(); },
});

function currentSource() {
  if (S.sample) return { sample: S.sample };
  if (S.A) return { hash: S.A.hash };
  if (S.img) return { hash: S.img };
  return null;
}

// ---- model view grid ------------------------------------------------------------------------------------
function renderGrid() {
  const A = S.A, G = VW.grid(A);
  $("vz-grid-what").textContent = `${G === A ? "" : "value-weighted "}${A.clsQuery === "cls" ? "[CLS] attention" : "mean patch-query attention"}`;
  renderModelGrid($("vz-grid"), {
    cls: G.cls, means: G.means, L: A.L, H: A.H, rows: A.grid.rows, cols: A.grid.cols,
    colormap: S.colormap, clip: S.clip, active: S.view !== "rollout",
    describedBy: "vz-grid-caption",
    selected: { layer: S.layer, col: S.view === "mean" ? A.H : S.head },
    maxHeight: Math.max(360, window.innerHeight - ($("vz-grid").getBoundingClientRect().top + window.scrollY) - 24),
    onSelect: (layer, col) => {
      S.layer = layer;
      if (col === A.H) S.view = "mean";
      else { S.head = col; S.view = S.view === "entropy" ? "entropy" : "head"; }
      renderGrid();
      refreshMap();
    },
  });
}

// ---- the big map ----------------------------------------------------------------------------------------
// What the big view should show for the current state (vision/data.js mapOf), with this page's hints added.
async function currentMap(signal) {
  const q = S.view === "rollout" ? null : (S.query ?? S.hover);
  if (S.view === "entropy") return entropyMap(S.A, S.layer, S.head, signal); // entropy.js
  const pinned = q !== null && q === S.query;
  let m = await mapOf(S.A, { view: S.view, layer: S.layer, head: S.head, query: q, fusion: S.fusion, discard: S.discard, pinned }, signal);
  m = await VW.map(S.A, m, (l, h, p) => fetchPatchRow(S.A, l, h, p, signal));
  const hint = S.view === "rollout" ? "Patch queries are per layer: switch to Head or Mean of heads to probe a patch."
    : q === null ? "Hover over the photo, or focus it and use the arrow keys, to see where any single patch looks."
      : S.query === null ? "Click (or press Enter) to pin this query." : "Esc or the \u201cBack\u201d button returns to the map you started from.";
  return { ...m, caption: `${m.caption} ${hint}` };
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
  renderNotes(S, look);
  $("vz-cb-min").textContent = fmtValue(range.min);
  $("vz-cb-max").textContent = `${range.clipped ? "\u2265 " : ""}${fmtValue(range.max)}`;
  paintColorbar();
  $("vz-colorbar").setAttribute("aria-label", `Colour scale (${S.colormap}): ${fmtValue(range.min)} at the bottom to ${
    range.clipped ? "at least " : ""}${fmtValue(range.max)} at the top`);
  describeIn(S, TOP_K, m, range);
  const note = outlierNote(m.values, S.clip);
  $("vz-outlier").classList.toggle("hidden", !note);
  $("vz-outlier").textContent = note;
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

function updateControls() {
  for (const b of document.querySelectorAll(".vz-viewbar [data-view]")) b.setAttribute("aria-pressed", String(b.dataset.view === S.view));
  const q = S.view === "rollout" ? null : S.query ?? S.hover;
  $("vz-query-text").textContent = S.view === "entropy" ? "Query: every patch, one entropy each" : S.view === "rollout" ? `Query: ${S.A.clsQuery === "cls" ? "[CLS]" : "mean of patches"} (rollout)`
    : q === null ? `Query: ${S.A.clsQuery === "cls" ? "[CLS] token" : "mean of patch queries"} \u00b7 hover a patch to probe it`
      : `Query: ${patchLabel(S.A, q)}${S.query !== null ? " (pinned)" : ""}`;
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
  if (url.compare) { mountCompare(PD); return; } // side by side (compare/); the single view below is untouched
  wireCompareLink($("vz-compare-link"), MODELS, () => S.A);
  wireControls();
  tabs = mountFeatureTabs({ onTab: (tab) => { syncURL(); if (tab === "attention" && S.A) { renderGrid(); refreshMap(); } } });
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
