// /positional: the sinusoidal encoding of paper 1, Section 3.5. Every number comes from /api/figures/positional*.
// drawTable is exported for the paper tour, which embeds a small live table. Positions and dimensions are
// the formula's own values (pos 0 is the first position, dim 2i is sin), on screen and in the exports.
import { apiGet, showError } from "../lib/api.js";
import { $, el } from "../lib/dom.js";
import { newestLoad } from "../lib/latest.js";
import { CONFIG, DIVERGING, fmt, layout, mountExports as mount, ordinal } from "../lib/plot.js";
import { decodeTyped, toArray as arr, toRows } from "../lib/typed.js";
import { readState, writeState } from "../lib/urlstate.js";

const positive = (ys) => ys.map((y) => (y > 0 ? y : null)); // log axes: exact zeros are not drawn

// --- the charts ------------------------------------------------------------------------------------------

export function drawTable(div, body, { compact = false } = {}) {
  const h = body.heatmap;
  const { data, shape: [R, C] } = decodeTyped(h.values);
  const pos = arr(h.positions), dims = arr(h.dims);
  const strided = h.pair_stride > 1;
  const x = strided ? dims.map((_, j) => j) : dims;
  const trace = {
    type: "heatmap", z: toRows(data, R, C), x, y: pos, colorscale: DIVERGING, zmin: -1, zmax: 1,
    colorbar: { thickness: 10, len: 0.9, title: { text: "PE", side: "right" } },
    hovertemplate: strided ? "pos %{y}<br>dim %{customdata}<br>PE %{z:.4f}<extra></extra>"
      : "pos %{y}<br>dim %{x}<br>PE %{z:.4f}<extra></extra>",
  };
  if (strided) trace.customdata = pos.map(() => dims);
  const xaxis = { title: { text: "dimension" }, ticks: "outside", showgrid: false, zeroline: false };
  if (strided) {
    const step = Math.max(1, Math.round(C / 8));
    xaxis.tickvals = x.filter((j) => j % step === 0);
    xaxis.ticktext = xaxis.tickvals.map((j) => String(dims[j]));
  }
  Plotly.react(div, [trace], layout({
    xaxis, yaxis: { title: { text: "position" }, autorange: "reversed", ticks: "outside", showgrid: false, zeroline: false },
    margin: compact ? { l: 46, r: 8, t: 6, b: 38 } : { l: 58, r: 14, t: 10, b: 44 },
  }), CONFIG);
  return () => ({
    header: ["position", ...dims.map((d) => `dim_${d}`)],
    rows: toRows(data, R, C).map((r, i) => [pos[i], ...r]),
    meta: { length: body.length, d_model: body.d_model, position_stride: h.position_stride, pair_stride: h.pair_stride },
  });
}

function drawCurves(div, body) {
  const { data, shape: [D, L] } = decodeTyped(body.curves);
  const x = Array.from({ length: L }, (_, i) => i);
  const rows = toRows(data, D, L);
  const traces = body.dims.map((d, j) => ({
    type: "scatter", mode: "lines", x, y: rows[j], line: { width: 1.6 },
    name: `dim ${d}: ${d % 2 ? "cos" : "sin"}, i = ${d >> 1}, λ ≈ ${fmt(body.wavelengths[j])}`,
  }));
  Plotly.react(div, traces, layout({
    xaxis: { title: { text: "position" } }, yaxis: { title: { text: "PE[pos, dim]" }, range: [-1.08, 1.08] },
    legend: { orientation: "h", y: 1.02, yanchor: "bottom", x: 0, font: { size: 11 } },
    margin: { l: 58, r: 14, t: 40, b: 44 },
  }), CONFIG);
  return () => ({ header: ["position", ...body.dims.map((d) => `dim_${d}`)], rows: x.map((p) => [p, ...rows.map((r) => r[p])]),
    meta: { length: body.length, d_model: body.d_model } });
}

function drawSimilarity(div, body) {
  const th = arr(body.similarity.theory), emp = arr(body.similarity.empirical);
  const x = th.map((_, i) => i);
  const traces = [
    { type: "scatter", mode: "lines", x, y: th, name: "Σᵢ cos(k·wᵢ) (closed form)", line: { width: 5, color: "rgba(36,86,199,0.3)" } },
    { type: "scatter", mode: "lines", x, y: emp, name: "PE(0)·PE(k) (computed)", line: { width: 1.3, color: "#1d2430" } },
  ];
  const shapes = body.k >= 0 && body.k < x.length ? [{ type: "line", x0: body.k, x1: body.k, yref: "paper", y0: 0, y1: 1, line: { dash: "dot", color: "#b42318", width: 1 } }] : [];
  Plotly.react(div, traces, layout({
    xaxis: { title: { text: "offset k" } }, yaxis: { title: { text: "dot product" } }, shapes,
    legend: { x: 1, xanchor: "right", y: 1, bgcolor: "rgba(255,255,255,0.8)" },
  }), CONFIG);
  return () => ({ header: ["k", "theory_sum_cos", "empirical_PE0_dot_PEk"], rows: x.map((k) => [k, th[k], emp[k]]),
    meta: { d_model: body.d_model, starts_checked: body.similarity.starts, max_deviation: body.similarity.max_deviation } });
}

function drawMk(div, body) {
  const lin = body.linearity, n = lin.m_k_size;
  const { data } = decodeTyped(lin.m_k);
  const z = toRows(data, n, n), idx = Array.from({ length: n }, (_, i) => i);
  Plotly.react(div, [{
    type: "heatmap", z, x: idx, y: idx, colorscale: DIVERGING, zmin: -1, zmax: 1, xgap: 1, ygap: 1,
    text: z.map((r) => r.map((v) => (v === 0 ? "" : v.toFixed(2)))), texttemplate: "%{text}",
    textfont: { size: n > 8 ? 9 : 12 }, colorbar: { thickness: 10, len: 0.9 },
    hovertemplate: "row %{y}, col %{x}<br>%{z:.6f}<extra></extra>",
  }], layout({
    xaxis: { title: { text: "column (input dim)" }, dtick: 2, constrain: "domain", showgrid: false, zeroline: false },
    yaxis: { title: { text: "row (output dim)" }, autorange: "reversed", dtick: 2, scaleanchor: "x", showgrid: false, zeroline: false },
  }), CONFIG);
  return () => ({ header: ["row", ...idx.map((j) => `col_${j}`)], rows: z.map((r, i) => [i, ...r]),
    meta: { k: body.k, d_model: body.d_model, corner: n, orthogonality_error: lin.orthogonality_error } });
}

function drawFar(div, body) {
  const lin = body.linearity;
  const res = arr(lin.residual), scale = arr(lin.rounding_scale);
  const sx = arr(lin.sweep_positions), sr = arr(lin.sweep_residual), ss = arr(lin.sweep_rounding_scale);
  const inX = res.map((_, p) => p).slice(1);
  const traces = [
    { type: "scatter", mode: "markers", x: inX, y: positive(res.slice(1)), name: `every pos < ${fmt(body.length)}`, marker: { size: 3, color: "#9aa5b4" } },
    { type: "scatter", mode: "lines+markers", x: sx, y: positive(sr), name: "log-spaced pos", line: { color: "#2456c7", width: 1.4 }, marker: { size: 4 } },
    { type: "scatter", mode: "lines", x: sx, y: ss, name: "ε·(pos + k)", line: { color: "#1d2430", dash: "dash", width: 1.2 } },
    { type: "scatter", mode: "markers+text", x: lin.far.map((f) => f.pos), y: lin.far.map((f) => (f.residual > 0 ? f.residual : null)),
      text: lin.far.map((f) => fmt(f.pos)), textposition: "top left", name: "far positions", marker: { symbol: "diamond", size: 9, color: "#b42318" } },
  ];
  Plotly.react(div, traces, layout({
    xaxis: { type: "log", title: { text: "position pos" }, exponentformat: "power" },
    yaxis: { type: "log", title: { text: "max_d |M_k PE(pos) − PE(pos+k)|" }, exponentformat: "power" },
    shapes: [{ type: "line", x0: body.length, x1: body.length, yref: "paper", y0: 0, y1: 1, line: { color: "#2f8f46", width: 1.2 } }],
    annotations: [{ x: Math.log10(body.length), y: 1, yref: "paper", text: "table length", showarrow: false, xanchor: "left", yanchor: "top", font: { size: 11, color: "#2f8f46" } }],
    legend: { x: 0, y: 1, bgcolor: "rgba(255,255,255,0.85)", font: { size: 11 } },
  }), CONFIG);
  return () => ({
    header: ["pos", "residual", "eps_times_pos_plus_k", "kind"],
    rows: [...res.map((r, p) => [p, r, scale[p], "table"]), ...sx.map((p, j) => [p, sr[j], ss[j], "sweep"]),
      ...lin.far.map((f) => [f.pos, f.residual, f.rounding_scale, "far"])],
    meta: { k: body.k, d_model: body.d_model, length: body.length },
  });
}

// --- the page ----------------------------------------------------------------------------------------------

function evidence(id, ...parts) {
  const node = $(id);
  node.replaceChildren(...parts.map((p) => (Array.isArray(p) ? el("span", { class: "num" }, p[0]) : p)));
}

function renderText(body) {
  const h = body.heatmap, lin = body.linearity, sim = body.similarity;
  $("pe-heat-caption").replaceChildren(
    `Rows: positions 0 … ${fmt(body.length - 1)}; columns: dimensions (sin at even, cos at odd index). `,
    "Left columns oscillate fast (w₀ = 1 rad per position), right ones barely move. ",
    h.position_stride > 1 || h.pair_stride > 1
      ? el("b", {}, `Showing ${[h.position_stride > 1 ? `every ${ordinal(h.position_stride)} position` : "every position",
        h.pair_stride > 1 ? `every ${ordinal(h.pair_stride)} sin–cos pair` : "every dimension"].join(" and ")} `
        + `(${h.values.shape.replace(",", " ×")} cells): fast columns alias when positions are skipped; the curves on the right are complete.`)
      : "Every cell is shown.");
  $("pe-curves-caption").replaceChildren(
    "Dimension 2i is sin(pos·wᵢ) and 2i+1 is cos(pos·wᵢ) with wᵢ = 10000^(−2i/d_model): the wavelength λ = 2π/wᵢ grows ",
    `geometrically from 2π to 2π·10000^(1−2/d_model) = ${fmt(2 * Math.PI * 10000 ** (1 - 2 / body.d_model))} across the dimensions ` +
    "(the paper: “from 2π to 10000 · 2π”). Every position is drawn; drag to zoom, double-click to reset.");
  const k = body.k;
  const th = decodeTyped(sim.theory).data;
  evidence("pe-sim-evidence",
    "Max over starts s ∈ {", sim.starts.join(", "), "} and every p < ", fmt(body.length), " of |PE(s)·PE(p) − Σᵢ cos((p−s)·wᵢ)| = ",
    [fmt(sim.max_deviation)], " (float64 rounding). ",
    ...(k >= 0 && k < th.length ? ["At k = ", String(k), ": Σᵢ cos(k·wᵢ) = ", [fmt(th[k], 4)], " (k = 0 gives d_model/2 = ", [fmt(th[0])], ")."] : []));
  const n = lin.m_k_size, phi = decodeTyped(lin.phi).data;
  $("pe-mk-caption").replaceChildren(
    `Top-left ${n}×${n} corner of the ${body.d_model}×${body.d_model} matrix M`, el("sub", {}, String(k)),
    ". Block i (rows and columns 2i, 2i+1) is [[cos φᵢ, sin φᵢ], [−sin φᵢ, cos φᵢ]] with φᵢ = k·wᵢ ",
    `(here φ₀ = ${fmt(phi[0], 4)} rad, φ₁ = ${fmt(phi[1] ?? 0, 4)} rad, …); everything outside the 2×2 diagonal blocks is exactly 0. `,
    "No entry involves pos: one matrix serves every position. M_k is orthogonal and M_k M_j = M_(k+j).");
  const argScale = Number.EPSILON * (lin.argmax_pos + Math.abs(k));
  evidence("pe-mk-evidence",
    "max over pos = 0 … ", fmt(body.length - 1), " of max_d |M_k PE(pos) − PE(pos+k)| = ", [fmt(lin.max_residual)],
    ` (largest at pos ${fmt(lin.argmax_pos)}, where ε·(pos+k) = `, [fmt(argScale)], "); max |M_kᵀM_k − I| = ",
    [fmt(lin.orthogonality_error)], ". ", lin.max_residual < 1e-9 ? "Rounding level: the identity holds exactly." : "");
  const table = $("pe-far-table");
  table.replaceChildren(
    el("tr", {}, el("th", {}, "pos"), el("th", {}, "residual"), el("th", {}, "ε·(pos+k)"), el("th", {}, "ratio")),
    ...lin.far.map((f) => el("tr", {}, el("td", {}, fmt(f.pos)), el("td", {}, fmt(f.residual)), el("td", {}, fmt(f.rounding_scale)), el("td", {}, fmt(f.ratio, 2)))));
  const big = lin.far.find((f) => f.pos === 1e6) || lin.far[lin.far.length - 1];
  evidence("pe-far-evidence",
    `At pos = ${fmt(big.pos)} (${fmt(Math.round(big.pos / body.length))}× the table length ${fmt(body.length)}): residual `,
    [fmt(big.residual)], " = ", [fmt(big.ratio, 2)], " × ε·(pos+k). The map is still right; only the angle pos·wᵢ carries rounding.");
}

function initPage(app) {
  const B = JSON.parse($("page-data").textContent).bounds;
  const state = readState({ length: 128, d_model: 128, k: 8, dims: "", far: 1000000 });
  const inputs = { length: $("pe-length"), d_model: $("pe-dmodel"), k: $("pe-k"), dims: $("pe-dims"), far: $("pe-far") };
  const kRange = $("pe-k-range"), status = $("pe-status"), err = $("pe-error");
  const divs = { heat: $("pe-heat"), curves: $("pe-curves"), sim: $("pe-sim"), mk: $("pe-mk"), far: $("pe-farplot") };
  let timer = null, renders = 0;
  const newest = newestLoad(app, status, err);

  function syncInputs() {
    for (const [key, node] of Object.entries(inputs)) node.value = state[key];
    kRange.max = String(Math.max(1, Math.min(state.length - 1, B.k[1])));
    kRange.value = String(Math.max(0, Math.min(state.k, Number(kRange.max))));
  }

  function load() {
    const q = new URLSearchParams({ length: state.length, d_model: state.d_model, k: state.k, far: state.far });
    if (state.dims) q.set("dims", state.dims);
    return newest(`/api/figures/positional?${q}`, (body) => {
      state.dims = body.dims.join(",");
      syncInputs();
      writeState(state);
      const tag = `pe_L${body.length}_d${body.d_model}_k${body.k}`;
      mount("pe-heat-export", divs.heat, `${tag}_table`, drawTable(divs.heat, body));
      mount("pe-curves-export", divs.curves, `${tag}_curves`, drawCurves(divs.curves, body));
      mount("pe-sim-export", divs.sim, `${tag}_dot_by_offset`, drawSimilarity(divs.sim, body));
      mount("pe-mk-export", divs.mk, `${tag}_M_k`, drawMk(divs.mk, body));
      mount("pe-far-export", divs.far, `${tag}_residual_far`, drawFar(divs.far, body));
      renderText(body);
      app.dataset.k = String(body.k);
      app.dataset.maxResidual = String(body.linearity.max_residual);
      app.dataset.renders = String(++renders);
    });
  }

  function schedule(delay = 250) { clearTimeout(timer); timer = setTimeout(load, delay); }

  for (const key of ["length", "d_model", "k", "far"]) {
    inputs[key].addEventListener("change", () => {
      const v = Number(inputs[key].value);
      if (!Number.isFinite(v)) return;
      state[key] = Math.round(v);
      if (key === "d_model") { // keep only dimensions that exist at the new width
        state.dims = state.dims.split(",").filter((s) => s !== "" && Number(s) < state.d_model).join(",");
      }
      schedule(0);
    });
  }
  inputs.dims.addEventListener("change", () => { state.dims = inputs.dims.value.replace(/\s+/g, ""); schedule(0); });
  kRange.addEventListener("input", () => { state.k = Number(kRange.value); inputs.k.value = kRange.value; schedule(); });

  syncInputs();
  load();
  loadLearned();
}

async function loadLearned() {
  const err = $("pe-learned-error");
  try {
    const body = await apiGet("/api/figures/positional/learned");
    const n = body.n, idx = Array.from({ length: n }, (_, i) => i);
    const heat = (div, spec, name, colorbar) => {
      const { data } = decodeTyped(spec);
      const z = toRows(data, n, n);
      Plotly.react(div, [{ type: "heatmap", z, x: idx, y: idx, colorscale: DIVERGING, zmin: -1, zmax: 1,
        showscale: colorbar, colorbar: { thickness: 10, len: 0.9 }, hovertemplate: "pos %{y} vs %{x}<br>cos %{z:.3f}<extra></extra>" }],
      layout({ xaxis: { title: { text: "position" }, constrain: "domain", showgrid: false, zeroline: false }, yaxis: { title: { text: "position" }, autorange: "reversed", scaleanchor: "x", showgrid: false, zeroline: false }, margin: { l: 50, r: 8, t: 8, b: 42 } }), CONFIG);
      mount(`${div.id}-export`, div, name, () => ({ header: ["position", ...idx.map((j) => `pos_${j}`)], rows: z.map((r, i) => [i, ...r]), meta: { source: body.source, n } }));
    };
    heat($("pe-learned"), body.learned, "minilm_learned_position_cosine", true);
    heat($("pe-sinus"), body.sinusoidal, `sinusoidal_d${body.hidden}_position_cosine`, true);
    const ol = arr(body.offset_learned), os = arr(body.offset_sinusoidal);
    const div = $("pe-offset");
    Plotly.react(div, [
      { type: "scatter", mode: "lines", x: idx, y: ol, name: "learned (MiniLM)", line: { color: "#b42318", width: 1.5 } },
      { type: "scatter", mode: "lines", x: idx, y: os, name: `sinusoidal (d = ${body.hidden})`, line: { color: "#2456c7", width: 1.5 } },
    ], layout({ xaxis: { title: { text: "offset k = |i − j|" } }, yaxis: { title: { text: "mean cosine similarity" } }, legend: { x: 1, xanchor: "right", y: 1 } }), CONFIG);
    mount("pe-offset-export", div, "position_similarity_by_offset", () => ({ header: ["k", "learned", "sinusoidal"], rows: idx.map((k) => [k, ol[k], os[k]]), meta: { source: body.source } }));
    const norms = arr(body.norms), sorted = [...norms].sort((a, b) => a - b), med = sorted[sorted.length >> 1];
    const at = (k) => Math.min(k, n - 1);
    evidence("pe-learned-evidence",
      "Mean cosine similarity at offset 1: learned ", [fmt(ol[at(1)], 2)], ", sinusoidal ", [fmt(os[at(1)], 2)],
      "; at offset 100: ", [fmt(ol[at(100)], 2)], " vs ", [fmt(os[at(100)], 2)], "; at 400: ", [fmt(ol[at(400)], 2)], " vs ", [fmt(os[at(400)], 2)],
      ". Both are most similar to their neighbours, but the learned table decorrelates faster and is noisier. Position 0 (always [CLS] in BERT) is an outlier: ‖p₀‖ = ",
      [fmt(norms[0], 3)], " against a median ", [fmt(med, 3)], `. Positions ≥ ${body.max_positions} have no learned vector at all.`);
    $("pe-app").dataset.learned = String(n);
  } catch (e) {
    showError(err, e);
  }
}

const app = $("pe-app");
if (app) initPage(app);
