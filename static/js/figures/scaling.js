// /scaling: why scaled dot-product attention divides by sqrt(d_k) (paper 1, Section 3.2.1 and footnote 4).
// Every number comes from /api/figures/scaling. The draw* functions are exported for the paper tour.
import { $, el } from "../lib/dom.js";
import { newestLoad } from "../lib/latest.js";
import { exportButtons, plotlyExports } from "../lib/export.js";
import { CONFIG, fmt, layout } from "../lib/plot.js";
import { toArray as arr } from "../lib/typed.js";
import { readState, writeState } from "../lib/urlstate.js";

export const RED = "#b42318", BLUE = "#2456c7", GREY = "#8a94a3";

// log slider: position s in [0, 1000] <-> d_k = round(2^(s / 100)) in [1, 1024]
const toDk = (s) => Math.max(1, Math.min(1024, Math.round(2 ** (Number(s) / 100))));
const toSlider = (dk) => Math.round(100 * Math.log2(dk));

// PNG/SVG of a compact chart are drawn with their legend (the page shows one shared HTML legend instead).
function mount(id, div, name, dataFn, { legend = false } = {}) {
  const box = $(id);
  if (!box) return;
  const handlers = plotlyExports(div, name, dataFn);
  if (legend) {
    const full = () => ({ data: div.data, layout: { ...div.layout, showlegend: true, width: 720, height: 480, margin: { l: 60, r: 16, t: 70, b: 46 } } });
    handlers.png = () => Plotly.downloadImage(full(), { format: "png", filename: name, scale: 2 });
    handlers.svg = () => Plotly.downloadImage(full(), { format: "svg", filename: name });
  }
  box.replaceChildren(exportButtons(handlers));
}

const dkLine = (dk) => ({ type: "line", x0: dk, x1: dk, yref: "paper", y0: 0, y1: 1, line: { color: "#1d2430", dash: "dot", width: 1 } });

// A statistic over d_k: unscaled and scaled, mean (solid) and median (dotted), the uniform row, the slider's point.
export function drawStat(div, body, key, { title, uniform, logY = false, compact = false, medians = true } = {}) {
  const grid = arr(body.grid);
  const u = arr(body.unscaled[key]), s = arr(body.scaled[key]);
  const traces = [
    { type: "scatter", mode: "lines", x: grid, y: u, name: "unscaled, mean", line: { color: RED, width: 2 } },
    { type: "scatter", mode: "lines", x: grid, y: s, name: "scaled by 1/√d_k, mean", line: { color: BLUE, width: 2 } },
  ];
  let um = null, smed = null;
  if (medians) {
    um = arr(body.unscaled[`${key}_median`]); smed = arr(body.scaled[`${key}_median`]);
    traces.push(
      { type: "scatter", mode: "lines", x: grid, y: um, name: "unscaled, median", line: { color: RED, width: 1.5, dash: "dot" } },
      { type: "scatter", mode: "lines", x: grid, y: smed, name: "scaled, median", line: { color: BLUE, width: 1.5, dash: "dot" } });
  }
  if (uniform !== undefined) {
    traces.push({ type: "scatter", mode: "lines", x: [1, 1024], y: [uniform, uniform], name: "uniform row", line: { color: GREY, width: 1.2, dash: "dash" } });
  }
  const at = body.at;
  traces.push({ type: "scatter", mode: "markers", x: [at.d_k, at.d_k], y: [at.unscaled[key], at.scaled[key]], name: `d_k = ${at.d_k}`,
    marker: { size: 9, color: [RED, BLUE], line: { color: "#fff", width: 1.5 } }, showlegend: false,
    hovertemplate: "d_k %{x}<br>%{y:.4g}<extra></extra>" });
  Plotly.react(div, traces, layout({
    xaxis: { type: "log", title: { text: "d_k" }, dtick: Math.log10(2) * 2, tickvals: [1, 4, 16, 64, 256, 1024] },
    yaxis: { type: logY ? "log" : "linear", title: { text: title }, exponentformat: "power", ...(logY ? { dtick: 1 } : {}) },
    shapes: [dkLine(at.d_k)], showlegend: !compact,
    legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom", font: { size: 10.5 } },
    margin: compact ? { l: logY ? 64 : 52, r: 18, t: 8, b: 40 } : { l: 64, r: 10, t: 44, b: 40 },
  }), CONFIG);
  return () => ({
    header: ["d_k", `unscaled_mean_${key}`, `scaled_mean_${key}`, ...(medians ? [`unscaled_median_${key}`, `scaled_median_${key}`] : [])],
    rows: grid.map((d, j) => [d, u[j], s[j], ...(medians ? [um[j], smed[j]] : [])]),
    meta: { n_keys: body.n_keys, n_samples: body.n_samples, seed: body.seed, uniform },
  });
}

export function drawRow(div, body, { compact = false } = {}) {
  const r = body.row;
  const pu = arr(r.p_unscaled), ps = arr(r.p_scaled), lu = arr(r.logits_unscaled), ls = arr(r.logits_scaled);
  const x = pu.map((_, j) => j + 1);
  Plotly.react(div, [
    { type: "bar", x, y: pu, name: "softmax(q·kⱼ) unscaled", marker: { color: RED }, customdata: lu, hovertemplate: "key %{x}<br>p %{y:.4f}<br>logit %{customdata:.2f}<extra>unscaled</extra>" },
    { type: "bar", x, y: ps, name: "softmax(q·kⱼ / √d_k) scaled", marker: { color: BLUE }, customdata: ls, hovertemplate: "key %{x}<br>p %{y:.4f}<br>logit %{customdata:.2f}<extra>scaled</extra>" },
  ], layout({
    barmode: "group", bargap: 0.25, xaxis: { title: { text: "key j" }, dtick: 1 }, yaxis: { title: { text: "attention weight p" }, range: [0, 1.02] },
    legend: { orientation: "h", x: 0, y: 1.02, yanchor: "bottom" }, showlegend: !compact,
    margin: compact ? { l: 46, r: 8, t: 8, b: 38 } : { l: 56, r: 10, t: 36, b: 40 },
  }), CONFIG);
  return () => ({ header: ["key", "logit_unscaled", "p_unscaled", "logit_scaled", "p_scaled"],
    rows: x.map((j, i) => [j, lu[i], pu[i], ls[i], ps[i]]), meta: { d_k: body.d_k, seed: body.seed, n_keys: r.n_keys } });
}

export function drawVariance(div, body) {
  const grid = arr(body.grid), v = arr(body.variance), th = arr(body.variance_theory), se = arr(body.variance_stderr), sv = arr(body.scaled_variance);
  const at = body.at;
  Plotly.react(div, [
    { type: "scatter", mode: "lines", x: grid, y: th, name: "theory: d_k (footnote 4)", line: { color: GREY, width: 4 } },
    { type: "scatter", mode: "markers", x: grid, y: v, name: "Var(q·k), sampled ± 2 s.e.", marker: { color: RED, size: 6 },
      error_y: { type: "data", array: se.map((e) => 2 * e), color: RED, thickness: 1, width: 3 } },
    { type: "scatter", mode: "lines+markers", x: grid, y: sv, name: "Var(q·k / √d_k)", line: { color: BLUE, width: 1.5 }, marker: { size: 4 } },
    { type: "scatter", mode: "markers", x: [at.d_k, at.d_k], y: [at.variance, at.scaled_variance], showlegend: false,
      marker: { size: 10, color: [RED, BLUE], symbol: "diamond", line: { color: "#fff", width: 1.5 } }, hovertemplate: "d_k %{x}<br>%{y:.4g}<extra></extra>" },
  ], layout({
    xaxis: { type: "log", title: { text: "d_k" }, tickvals: [1, 4, 16, 64, 256, 1024] },
    yaxis: { type: "log", title: { text: "variance" }, tickvals: [0.25, 1, 4, 16, 64, 256, 1024] },
    shapes: [dkLine(at.d_k)], legend: { x: 0, y: 1, bgcolor: "rgba(255,255,255,0.85)" },
  }), CONFIG);
  return () => ({ header: ["d_k", "variance", "variance_stderr", "theory", "scaled_variance"],
    rows: grid.map((d, j) => [d, v[j], se[j], th[j], sv[j]]), meta: { var_samples: body.var_samples, distribution: body.distribution, seed: body.seed } });
}

// --- the page ----------------------------------------------------------------------------------------------

// The unscaled value turns red once it shows saturation; the scaled one is the reference (green).
function bignum(label, unscaled, scaled, sub, { saturated = false } = {}) {
  return el("div", { class: "p1-bignum" }, el("div", { class: "label" }, label),
    el("div", { class: "vals" },
      el("span", { class: `v${saturated ? " bad" : ""}` }, unscaled, el("small", {}, "unscaled")),
      el("span", { class: "v good" }, scaled, el("small", {}, "scaled"))),
    el("div", { class: "sub" }, sub));
}

function renderNumbers(body) {
  const a = body.at, u = a.unscaled, s = a.scaled, n = body.n_keys;
  const saturated = u.max_prob > 0.5;
  $("sc-bignums").replaceChildren(
    el("div", { class: "p1-bignum" }, el("div", { class: "label" }, `Var(q·k) at d_k = ${a.d_k}, ${fmt(body.var_samples)} pairs`),
      el("div", { class: "vals" }, el("span", { class: "v" }, `${fmt(a.variance, 4)}`, el("small", {}, `± ${fmt(a.variance_stderr, 2)}`)),
        el("span", { class: "v" }, `${fmt(a.variance_theory)}`, el("small", {}, "theory"))),
      el("div", { class: "sub" }, `after dividing by √d_k: ${fmt(a.scaled_variance, 3)} (theory 1)`)),
    bignum("Max softmax probability (mean over rows)", fmt(u.max_prob, 3), fmt(s.max_prob, 3),
      `medians ${fmt(u.max_prob_median, 4)} / ${fmt(s.max_prob_median, 3)}; uniform row 1/${n} = ${fmt(body.uniform_max_prob, 3)}`, { saturated }),
    bignum("Entropy, nats (mean over rows)", fmt(u.entropy, 3), fmt(s.entropy, 3),
      `medians ${fmt(u.entropy_median, 3)} / ${fmt(s.entropy_median, 3)}; uniform row log ${n} = ${fmt(body.uniform_entropy, 3)}`, { saturated }),
    bignum("‖J‖_F median over rows (gradient size)", fmt(u.jacobian_fro_median, 2), fmt(s.jacobian_fro_median, 2),
      `means ${fmt(u.jacobian_fro, 2)} / ${fmt(s.jacobian_fro, 2)}; uniform row ${fmt(body.uniform_jacobian_fro, 2)}`,
      { saturated: u.jacobian_fro_median < 0.5 * s.jacobian_fro_median }),
  );
  const ratio = s.jacobian_fro_median / u.jacobian_fro_median;
  $("sc-evidence").replaceChildren(
    `At d_k = ${a.d_k} (${n} keys, ${fmt(body.n_samples)} random rows): unscaled max-prob `, el("span", { class: "num" }, fmt(u.max_prob, 2)),
    ", scaled ", el("span", { class: "num" }, fmt(s.max_prob, 2)), "; median ‖J‖_F unscaled ", el("span", { class: "num" }, fmt(u.jacobian_fro_median, 2)),
    " vs scaled ", el("span", { class: "num" }, fmt(s.jacobian_fro_median, 2)),
    u.max_prob > 0.9 ? " — the unscaled rows are practically one-hot" : saturated ? " — the unscaled rows are strongly peaked"
      : " — the unscaled rows are not saturated yet",
    ratio > 1.5 ? `, and the typical one passes ${fmt(ratio, 2)}× less gradient.`
      : ratio < 0.67 ? "; mildly peaked rows even have a larger Jacobian than flat ones. Move d_k up."
        : saturated ? "; the median gradient is still comparable, and collapses at larger d_k (try 1024)." : ".");
  const r = body.row;
  $("sc-row-dk").textContent = String(body.d_k);
  $("sc-row-caption").replaceChildren(
    `One query against ${r.n_keys} keys, seed ${body.seed}. The same random components are reused as d_k grows (component c is the same for every d_k > c), `,
    "so the slider adds terms to the same dot products. This row: unscaled max-prob ", el("b", {}, fmt(r.unscaled.max_prob, 3)),
    `, entropy ${fmt(r.unscaled.entropy, 3)}, ‖J‖_F ${fmt(r.unscaled.jacobian_fro, 3)}; scaled max-prob `, el("b", {}, fmt(r.scaled.max_prob, 3)),
    `, entropy ${fmt(r.scaled.entropy, 3)}, ‖J‖_F ${fmt(r.scaled.jacobian_fro, 3)}.`);
  const grid = arr(body.grid), v = arr(body.variance), th = arr(body.variance_theory);
  const lx = grid.map(Math.log), ly = v.map(Math.log), mx = lx.reduce((p, q) => p + q) / lx.length, my = ly.reduce((p, q) => p + q) / ly.length;
  const slope = lx.reduce((acc, x, i) => acc + (x - mx) * (ly[i] - my), 0) / lx.reduce((acc, x) => acc + (x - mx) ** 2, 0);
  const se = arr(body.variance_stderr);
  const worst = Math.max(...v.map((x, i) => Math.abs(x / th[i] - 1))), worstZ = Math.max(...v.map((x, i) => Math.abs(x - th[i]) / se[i]));
  $("sc-var-caption").replaceChildren(
    `${fmt(body.var_samples)} pairs (q, k) per d_k, ${body.distribution} components with variance 1. Log–log slope of the sampled variance: `,
    el("b", {}, slope.toFixed(3)), " (theory 1); largest relative error ", el("b", {}, `${fmt(100 * worst, 2)}%`), "; every point within ", el("b", {}, worstZ.toFixed(1)), " standard errors of d_k",
    `. Scaling by 1/√d_k flattens it to ≈ 1 (blue).`);
}

function initPage(app) {
  const B = JSON.parse($("page-data").textContent).bounds;
  const state = readState({ d_k: 64, n_keys: 64, n_samples: 512, seed: 0, dist: "normal" });
  const range = $("sc-dk-range"), inputs = { d_k: $("sc-dk"), n_keys: $("sc-nkeys"), n_samples: $("sc-nsamples"), seed: $("sc-seed"), dist: $("sc-dist") };
  const status = $("sc-status"), err = $("sc-error");
  const divs = { row: $("sc-row"), var: $("sc-var"), mp: $("sc-mp"), ent: $("sc-ent"), jac: $("sc-jac") };
  let timer = null, renders = 0;
  const newest = newestLoad(app, status, err);

  function syncInputs() {
    for (const [key, node] of Object.entries(inputs)) node.value = state[key];
    range.value = String(toSlider(state.d_k));
  }

  function load() {
    const q = new URLSearchParams({ d_k: state.d_k, n_keys: state.n_keys, n_samples: state.n_samples, seed: state.seed, distribution: state.dist });
    return newest(`/api/figures/scaling?${q}`, (body) => {
      writeState(state);
      const tag = `dk${body.d_k}_keys${body.n_keys}_seed${body.seed}`;
      mount("sc-row-export", divs.row, `attention_row_${tag}`, drawRow(divs.row, body));
      mount("sc-var-export", divs.var, `dot_product_variance_${body.distribution}_seed${body.seed}`, drawVariance(divs.var, body));
      mount("sc-mp-export", divs.mp, `softmax_max_prob_${tag}`, drawStat(divs.mp, body, "max_prob", { title: "max_j p_j", uniform: body.uniform_max_prob, compact: true }), { legend: true });
      mount("sc-ent-export", divs.ent, `softmax_entropy_${tag}`, drawStat(divs.ent, body, "entropy", { title: "entropy (nats)", uniform: body.uniform_entropy, compact: true }), { legend: true });
      mount("sc-jac-export", divs.jac, `softmax_jacobian_${tag}`, drawStat(divs.jac, body, "jacobian_fro", { title: "‖diag(p) − ppᵀ‖_F", uniform: body.uniform_jacobian_fro, logY: true, compact: true }), { legend: true });
      renderNumbers(body);
      app.dataset.dk = String(body.d_k);
      app.dataset.renders = String(++renders);
    });
  }
  const schedule = (delay = 150) => { clearTimeout(timer); timer = setTimeout(load, delay); };

  range.addEventListener("input", () => { state.d_k = toDk(range.value); inputs.d_k.value = state.d_k; schedule(); });
  for (const key of ["d_k", "n_keys", "n_samples", "seed"]) {
    inputs[key].addEventListener("change", () => {
      const v = Math.round(Number(inputs[key].value));
      if (!Number.isFinite(v)) return;
      state[key] = v;
      if (key === "d_k") range.value = String(toSlider(Math.max(1, Math.min(B.d_k[1], v))));
      schedule(0);
    });
  }
  inputs.dist.addEventListener("change", () => { state.dist = inputs.dist.value; schedule(0); });
  syncInputs();
  load();
}

const app = $("sc-app");
if (app) initPage(app);
