// The /vision tabs (Attention, Features, Norms & sinks) and the Features tab (issue 16): feature PCA as colours
// (DINOv2 Fig. 1) with an adjustable foreground threshold, cosine similarity of a clicked patch beside where it
// attends, and K-means parts. Everything is fetched from /api/vision/analysis/{id}/... when the tab is shown.
// main.js calls mountFeatureTabs() once and tabs.adopt(A) for each analysis; tabs.current() goes in the URL.
import { announce, gridStep, srTable, syncTabs, topK, wireTabs } from "../lib/a11y.js";
import { apiGet, showError } from "../lib/api.js";
import { fmtValue } from "../lib/colormap.js";
import { $, el } from "../lib/dom.js";
import { fromApi, patchWhere } from "../lib/numbering.js";
import { decodeTyped } from "../lib/typed.js";
import { fetchPatchRow, patchLabel } from "./data.js";
import { PART_COLORS, drawHeat, drawParts, drawRGB, outlineMask } from "./feature_draw.js";
import { mountFeatureSet } from "./feature_sets.js";
import { mountNorms } from "./norms.js";
import { renderOverlay } from "./overlay.js";

const TABS = ["attention", "features", "norms"];
const SLIDER_MS = 120;

// Feature PCA (DINOv2 Fig. 1): the colours, the first component with its foreground outlined, the threshold.
function mountPCA(F, errBox) {
  let pcaToken = 0;
  async function loadPCA() {
    const A = F.A, my = ++pcaToken;
    const q = new URLSearchParams({ threshold: F.threshold, foreground_only: F.fgOnly, flip: F.flip });
    try {
      const r = await apiGet(`/api/vision/analysis/${A.id}/features?${q}`);
      if (my !== pcaToken || A !== F.A) return;
      F.pca = {
        first: decodeTyped(r.first).data, rgb: decodeTyped(r.rgb).data, fg: decodeTyped(r.foreground).data,
        range: r.first_range, explained: r.explained, firstExplained: r.first_explained, fgOnly: r.foreground_only,
      };
      drawPCA();
    } catch (e) { showError(errBox, e); }
  }
  function drawPCA() {
    const A = F.A, p = F.pca, nFg = p.fg.reduce((s, v) => s + v, 0);
    drawRGB($("ft-pca"), A, p.rgb, (i) => !p.fgOnly || p.fg[i]);
    const { ctx, size } = drawHeat($("ft-first"), A, p.first, { colormap: "viridis", opacity: 0.75 });
    outlineMask(ctx, size, A, p.fg, "#ffffff");
    const slider = $("ft-threshold"), [lo, hi] = p.range;
    slider.min = String(Math.floor(lo * 100) / 100); slider.max = String(Math.ceil(hi * 100) / 100);
    slider.step = String(Math.max(0.01, Math.round((hi - lo) / 200 * 100) / 100));
    slider.value = String(F.threshold);
    $("ft-threshold-out").textContent = fmtValue(F.threshold);
    const pct = (x) => `${(100 * x).toFixed(1)}%`;
    const text = `${A.model.label}, ${A.grid.resolution} px: ${nFg} of ${A.P} patches score above the threshold `
      + `${fmtValue(F.threshold)} on the first component (which explains ${pct(p.firstExplained)} of the variance of the patch features; `
      + `scores ${fmtValue(lo)} to ${fmtValue(hi)}). The colours are components 1\u20133 of a PCA over `
      + `${p.fgOnly ? "those foreground patches" : "all patches"}, explaining ${p.explained.map(pct).join(", ")} of its variance.`
      + (F.fgOnly && !p.fgOnly ? " Too few foreground patches: the colours use all patches." : "");
    $("ft-pca-caption").textContent = text;
    $("ft-pca").setAttribute("aria-label", `Feature PCA colours over the photo. ${nFg} foreground patches.`);
    $("ft-first").setAttribute("aria-label", `First principal component map, foreground outlined: ${nFg} of ${A.P} patches.`);
    $("vz-features").dataset.foreground = String(nFg);
    $("vz-features").dataset.pca = "ready";
  }
  let thrTimer = 0;
  $("ft-threshold").addEventListener("input", (e) => {
    F.threshold = Number(e.target.value);
    $("ft-threshold-out").textContent = fmtValue(F.threshold);
    clearTimeout(thrTimer); thrTimer = setTimeout(loadPCA, SLIDER_MS);
  });
  $("ft-fgonly").addEventListener("change", (e) => { F.fgOnly = e.target.checked; if (F.A) loadPCA(); });
  $("ft-flip").addEventListener("change", (e) => { F.flip = e.target.checked; F.threshold = -F.threshold; if (F.A) loadPCA(); });

  return loadPCA;
}

// Click a patch: cosine similarity of its features beside where it attends, same layer.
function mountSimilarity(F, errBox) {
  let simToken = 0;
  async function loadSimilarity() {
    const A = F.A, my = ++simToken, q = F.query, layer = F.layer;
    const params = new URLSearchParams({ patch: q });
    if (layer !== null) params.set("layer", layer);
    const attLayer = layer ?? A.L - 1;
    try {
      const [r, att] = await Promise.all([
        apiGet(`/api/vision/analysis/${A.id}/similarity?${params}`),
        fetchPatchRow(A, attLayer, null, q),
      ]);
      if (my !== simToken || A !== F.A) return;
      drawSimilarity(decodeTyped(r.values).data, att, attLayer);
    } catch (e) { showError(errBox, e); }
  }
  function overlayProps(A, values, meta, interactive) {
    return {
      image: A.image, values, rows: A.grid.rows, cols: A.grid.cols, patchSize: A.grid.patch_size,
      resolution: A.grid.resolution, colormap: "viridis", opacity: 0.65, smooth: false, clip: false, fade: false,
      gridlines: false, query: F.query, hover: null, interactive, meta,
      onHover: () => {}, onClick: pick, onKey: simKey, onFocus: () => {}, onBlur: () => {},
    };
  }
  function drawSimilarity(sim, att, attLayer) {
    const A = F.A, name = patchLabel(A, F.query);
    const layerName = F.layer === null ? `the last layer (after the final norm)` : `layer ${fromApi(F.layer)}`;
    const simLabel = `Cosine similarity to ${name}, ${layerName}`;
    renderOverlay($("ft-sim"), { ...overlayProps(A, sim, { view: "similarity", layer: F.layer ?? "last", head: "mean", label: simLabel }, true), describedBy: "ft-sim-t" });
    renderOverlay($("ft-att"), { ...overlayProps(A, att, { view: "attention", layer: attLayer, head: "mean", label: `Where ${name} attends, layer ${fromApi(attLayer)}` }, false) });
    $("ft-att").querySelector("canvas").tabIndex = -1; // not a control: the similarity map is
    $("ft-sim-caption").textContent = `${simLabel} (${fmtValue(Math.min(...sim))} to 1)`;
    $("ft-att-caption").textContent = `Where ${name} attends in layer ${fromApi(attLayer)}, mean of ${A.H} heads`;
    const best = topK(sim, 6).filter((i) => i !== F.query).slice(0, 5), where = (i) => patchWhere(i, A.grid.cols);
    srTable($("ft-sim-table"), {
      id: "ft-sim-t", caption: `${simLabel}: the most similar patches`, headers: ["Rank", "Patch", "Cosine"],
      rows: best.map((i, r) => [String(r + 1), where(i), fmtValue(sim[i])]),
    });
    announce($("ft-live"), `${simLabel}. Most similar: ${best.slice(0, 3).map((i) => `${where(i)} ${fmtValue(sim[i])}`).join("; ")}.`);
    $("vz-features").dataset.similarity = `${F.query}|${F.layer ?? "last"}`;
  }
  function pick(idx) { F.query = idx; loadSimilarity(); }
  function simKey(e) {
    if (!F.A || e.altKey || e.ctrlKey || e.metaKey) return;
    const next = gridStep(e.key, F.query, F.A.grid.rows, F.A.grid.cols);
    if (next !== null) { e.preventDefault(); pick(next); }
  }
  $("ft-layer").addEventListener("change", (e) => {
    F.layer = e.target.value === "last" ? null : Number(e.target.value);
    if (F.A) loadSimilarity();
  });

  return loadSimilarity;
}

// K-means parts of this image, and the set-level panel (feature_sets.js).
function mountParts(F, errBox) {
  async function loadParts() {
    const A = F.A;
    F.k = Math.max(2, Math.min(16, Number($("ft-k").value) || 4));
    F.seed = Math.max(0, Number($("ft-seed").value) || 0);
    try {
      const r = await apiGet(`/api/vision/analysis/${A.id}/parts?k=${F.k}&seed=${F.seed}`);
      if (A !== F.A) return;
      const labels = decodeTyped(r.labels).data, counts = new Array(r.k).fill(0);
      for (const v of labels) counts[v]++;
      drawParts($("ft-parts"), A, labels);
      $("ft-parts").setAttribute("aria-label", `K-means parts, k = ${r.k}, seed ${r.seed}: `
        + counts.map((c, j) => `part ${j + 1}: ${c} patches`).join(", "));
      $("ft-parts-legend").replaceChildren(...counts.map((c, j) => el("span", { class: "ft-swatch" },
        el("span", { class: "ft-dot", style: `background:${PART_COLORS[j]}` }), `part ${j + 1} (${c})`)),
        el("span", { class: "muted" }, ` \u00b7 ${r.iterations} iterations, ${r.converged ? "converged" : "stopped at the bound"}`));
      $("vz-features").dataset.parts = String(r.k);
    } catch (e) { showError(errBox, e); }
  }
  $("ft-parts-run").addEventListener("click", () => { if (F.A) loadParts(); });
  mountFeatureSet({ current: () => ({
    model: F.A ? F.A.model.id : "", res: F.A ? F.A.grid.resolution : 0,
    k: Math.max(2, Math.min(16, Number($("ft-k").value) || 4)), seed: Math.max(0, Number($("ft-seed").value) || 0),
  }) });

  return loadParts;
}

export function mountFeatureTabs({ onTab } = {}) {
  const start = new URLSearchParams(location.search).get("tab");
  const F = {
    A: null, tab: TABS.includes(start) ? start : "attention",
    threshold: 0, fgOnly: true, flip: false, pca: null, layer: null, query: null, k: 4, seed: 0,
    loaded: new Set(), // what of the current analysis is drawn: "pca", "sim", "parts"
  };
  const errBox = $("vz-error"), tablist = $("vz-tablist");
  const norms = mountNorms();

  // ---- tabs -------------------------------------------------------------------------------------------
  function showTab(tab) {
    F.tab = tab;
    for (const b of tablist.querySelectorAll("[role=tab]")) b.setAttribute("aria-selected", String(b.dataset.tab === tab));
    syncTabs(tablist);
    $("vz-main").classList.toggle("hidden", !F.A || tab !== "attention");
    $("vz-features").classList.toggle("hidden", !F.A || tab !== "features");
    $("vz-norms").classList.toggle("hidden", !F.A || tab !== "norms");
    if (F.A && tab === "features") loadFeatures();
    if (F.A && tab === "norms") norms.show(F.A);
    onTab?.(tab);
  }
  for (const b of tablist.querySelectorAll("[role=tab]")) b.addEventListener("click", () => showTab(b.dataset.tab));
  wireTabs(tablist);

  const loadPCA = mountPCA(F, errBox), loadSimilarity = mountSimilarity(F, errBox), loadParts = mountParts(F, errBox);
  function loadFeatures() {
    if (!F.loaded.has("pca")) { F.loaded.add("pca"); loadPCA(); }
    if (!F.loaded.has("sim")) { F.loaded.add("sim"); loadSimilarity(); }
    if (!F.loaded.has("parts")) { F.loaded.add("parts"); loadParts(); }
  }


  return {
    adopt(A) {
      const sameGrid = F.A && F.A.P === A.P;
      F.A = A; F.loaded.clear(); F.pca = null;
      if (!sameGrid) { F.threshold = 0; F.query = Math.floor(A.grid.rows / 2) * A.grid.cols + Math.floor(A.grid.cols / 2); }
      if (F.layer !== null && F.layer >= A.L) F.layer = null;
      $("ft-layer").replaceChildren(el("option", { value: "last" }, "last, after the final norm"),
        ...Array.from({ length: A.L }, (_, l) => el("option", { value: String(l) }, `layer ${l + 1}`)));
      $("ft-layer").value = F.layer === null ? "last" : String(F.layer);
      for (const k of ["pca", "similarity", "parts"]) delete $("vz-features").dataset[k];
      $("vz-tabs").classList.remove("hidden");
      norms.adopt(A);
      showTab(F.tab);
    },
    current: () => F.tab,
  };
}
