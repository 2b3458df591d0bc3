// The Norms & sinks tab of /vision (issue 16): per-layer token norms of the residual stream with median + k*MAD
// outliers, each head's sink mass ([CLS], registers, outlier keys), and rollout / mean attention distance with and
// without the sink keys. Fetched from /api/vision/analysis/{id}/norms and /sinks when the tab is shown.
import { srTable } from "../lib/a11y.js";
import { apiGet, showError } from "../lib/api.js";
import { fmtValue, valueRange } from "../lib/colormap.js";
import { $, el } from "../lib/dom.js";
import { decodeTyped } from "../lib/typed.js";
import { drawHeat, drawLayerHeads, outlineMask } from "./feature_draw.js";

const SINKS = ["[CLS]", "registers", "outlier patches"];
const K_MS = 250;

export function mountNorms() {
  const N = { A: null, k: 10, layer: null, sink: 0, norms: null, sinks: null, loadedFor: null };
  const errBox = $("vz-error");

  async function load() {
    const A = N.A, key = `${A.id}|${N.k}`;
    if (N.loadedFor === key) { draw(); return; }
    try {
      const [n, s] = await Promise.all([
        apiGet(`/api/vision/analysis/${A.id}/norms?k=${N.k}`),
        apiGet(`/api/vision/analysis/${A.id}/sinks?k=${N.k}`),
      ]);
      if (A !== N.A) return;
      N.loadedFor = key;
      N.norms = { ...n, values: decodeTyped(n.norms).data, mask: decodeTyped(n.outlier_mask).data };
      N.sinks = {
        ...s, mass: decodeTyped(s.mass).data, roll: decodeTyped(s.rollout).data, without: decodeTyped(s.rollout_without).data,
        dist: decodeTyped(s.distance).data, distWithout: decodeTyped(s.distance_without).data,
      };
      draw();
    } catch (e) { showError(errBox, e); }
  }

  function draw() { drawNorms(); drawSinks(); $("vz-norms").dataset.state = "ready"; }

  function drawNorms() {
    const A = N.A, n = N.norms, P = A.P, l = N.layer ?? A.L - 1;
    const values = n.values.subarray(l * P, (l + 1) * P), mask = n.mask.subarray(l * P, (l + 1) * P);
    const { ctx, size } = drawHeat($("nm-map-c"), A, values, { colormap: "viridis", opacity: 0.8 });
    outlineMask(ctx, size, A, mask, "#ff3b30");
    const count = n.outliers[l];
    const layerText = `Layer ${l + 1}: patch norms ${fmtValue(Math.min(...values))} to ${fmtValue(Math.max(...values))}, median ${fmtValue(n.median[l])}, `
      + `max/median ${n.max_ratio[l].toFixed(2)}; ${count ? `${count} outlier${count > 1 ? "s" : ""} (outlined in red) above ${fmtValue(n.threshold[l])}` : `no outliers above ${fmtValue(n.threshold[l])}`}.`;
    $("nm-map-c").setAttribute("aria-label", `Token norm map, ${A.model.label}. ${layerText}`);
    $("nm-caption").textContent = `${A.model.label}, ${A.grid.resolution} px. ${layerText}`;
    $("nm-summary").textContent = `This photo: ${n.summary}`;
    const head = el("tr", {}, ["Layer", "Median", "MAD", "Threshold", "Outliers", "Max / median", "[CLS] / median"].map((h) => el("th", { scope: "col" }, h)));
    const p0 = A.grid.num_prefix_tokens, prefix = decodeTyped(n.prefix_norms).data;
    const rows = n.median.map((m, i) => el("tr", i === l ? { class: "ft-current" } : {},
      el("th", { scope: "row" }, String(i + 1)), el("td", {}, fmtValue(m)), el("td", {}, fmtValue(n.mad[i])),
      el("td", {}, fmtValue(n.threshold[i])), el("td", {}, n.outliers[i] ? String(n.outliers[i]) : "none"),
      el("td", {}, n.max_ratio[i].toFixed(2)), el("td", {}, p0 && N.sinks?.has_cls ? (prefix[i * p0] / m).toFixed(2) : "\u2013")));
    $("nm-table").replaceChildren(el("caption", { class: "sr-only" }, `Patch-token norms per layer, outliers: norm > median + ${n.k} x MAD`),
      el("thead", {}, head), el("tbody", {}, rows));
    $("vz-norms").dataset.outliers = String(n.outliers.reduce((a, b) => a + b, 0));
  }

  function drawSinks() {
    const A = N.A, s = N.sinks, L = A.L, H = A.H;
    const one = new Float32Array(L * H);
    for (let i = 0; i < L * H; i++) one[i] = s.mass[i * 3 + N.sink];
    const hi = drawLayerHeads($("sk-mass"), one, L, H);
    for (const b of document.querySelectorAll("#vz-norms [data-sink]")) b.setAttribute("aria-pressed", String(Number(b.dataset.sink) === N.sink));
    const none = (N.sink === 0 && !s.has_cls) || (N.sink === 1 && s.num_registers === 0);
    const what = SINKS[N.sink];
    $("sk-mass-caption").textContent = none
      ? `This model has no ${what === "[CLS]" ? "[CLS] token" : "register tokens"}: nothing to show.`
      : `Share of the patch queries' attention on ${what}, per layer (rows) and head (columns), colour from 0 to ${fmtValue(hi)}.`;
    $("sk-mass").setAttribute("aria-label", `Sink mass on ${what} per layer and head; the table below lists the values.`);
    srTable($("sk-mass-table"), {
      id: "sk-mass-t", caption: `Attention mass of the patch queries on ${what}, per layer and head`,
      headers: ["Layer", ...Array.from({ length: H }, (_, h) => `head ${h + 1}`)],
      rows: Array.from({ length: L }, (_, l) => [`layer ${l + 1}`, ...Array.from({ length: H }, (_, h) => fmtValue(one[l * H + h]))]),
    });
    // each map scaled to its own min and 98th percentile (the captions say so): one bright patch does not hide the rest
    drawHeat($("sk-roll"), A, s.roll, { range: valueRange(s.roll, { clip: true, quantile: 0.98 }) });
    drawHeat($("sk-roll-without"), A, s.without, { range: valueRange(s.without, { clip: true, quantile: 0.98 }) });
    $("sk-summary").textContent = s.summary;
    const mean = (arr, l) => { let t = 0; for (let h = 0; h < H; h++) t += arr[l * H + h]; return t / H; };
    const head = el("tr", {}, ["Layer", "Distance, all keys (px)", "Without outlier keys (px)", "Change"].map((h) => el("th", { scope: "col" }, h)));
    const rows = Array.from({ length: L }, (_, l) => {
      const a = mean(s.dist, l), b = mean(s.distWithout, l);
      return el("tr", {}, el("th", { scope: "row" }, String(l + 1)), el("td", {}, a.toFixed(1)), el("td", {}, b.toFixed(1)), el("td", {}, Math.abs(b - a) < 0.05 ? "0.0" : (b - a).toFixed(1)));
    });
    $("sk-dist").replaceChildren(el("caption", { class: "sr-only" }, "Mean attention distance per layer (mean of heads), with and without the outlier keys"),
      el("thead", {}, head), el("tbody", {}, rows));
  }

  $("nm-layer").addEventListener("change", (e) => { N.layer = Number(e.target.value); if (N.norms) drawNorms(); });
  let kTimer = 0;
  $("nm-k").addEventListener("input", (e) => {
    const k = Number(e.target.value);
    if (!(k > 0 && k <= 100)) return;
    N.k = k; clearTimeout(kTimer); kTimer = setTimeout(() => { if (N.A && !$("vz-norms").classList.contains("hidden")) load(); }, K_MS);
  });
  for (const b of document.querySelectorAll("#vz-norms [data-sink]")) {
    b.addEventListener("click", () => { N.sink = Number(b.dataset.sink); if (N.sinks) drawSinks(); });
  }
  const canvas = el("canvas", { id: "nm-map-c", class: "ft-canvas", width: 360, height: 360, role: "img" });
  $("nm-map").replaceChildren(canvas);

  return {
    adopt(A) {
      N.A = A; N.loadedFor = null;
      if (N.layer !== null && N.layer >= A.L) N.layer = null;
      $("nm-layer").replaceChildren(...Array.from({ length: A.L }, (_, l) => el("option", { value: String(l) }, `layer ${l + 1}`)));
      $("nm-layer").value = String(N.layer ?? A.L - 1);
      delete $("vz-norms").dataset.state;
    },
    show(A) { if (A === N.A) load(); },
  };
}
