// Side by side on /text, one panel (A or B): its controls (text, model, target, kind, layer, head), its matrix
// drawn with plotly as the single view's matrix, its exports; and the plotly pieces the difference panel shares
// (layout, hover text, the export table, the synchronised hover).
import { downloadCSV, downloadJSON, exportButtons, plotlyExports } from "../../lib/export.js";
import { el, escapeHTML, fillSelect } from "../../lib/dom.js";
import { fromApi, NUMBERING, toApi } from "../../lib/numbering.js";
import { kindLabel } from "../data.js";
import { sameTokens, sidesOf, where } from "./state.js";

export const PLOT_CONFIG = { displaylogo: false, responsive: false, modeBarButtonsToRemove: ["select2d", "lasso2d"] };

// Build side s's panel; ctx: {models (id -> entry), pd, run(s), select(s, change)}.
export function sidePanel(s, ctx) {
  const N = s.name.toUpperCase(), pd = ctx.pd;
  const ui = {
    text: el("textarea", { rows: 2, spellcheck: "false", "data-role": "text", "aria-label": `Text of panel ${N}`, maxlength: pd.max_text_chars }),
    model: el("select", { "data-role": "model", "aria-label": `Model of panel ${N}` }),
    target: el("input", { type: "text", "data-role": "target", placeholder: "empty: the model's greedy output", "aria-label": `Target of panel ${N}` }),
    run: el("button", { type: "button", class: "primary", "data-role": "run" }, "Analyse"),
    kind: el("select", { "data-role": "kind" }), layer: el("select", { "data-role": "layer" }), head: el("select", { "data-role": "head" }),
    title: el("h2", {}, `Panel ${N}`), status: el("span", { class: "status small" }), summary: el("p", { class: "small muted", "data-role": "summary" }),
    plot: el("div", { class: "cmp-plot", id: `cmpt-${s.name}-plot` }), exports: el("span", {}),
    vwCaption: el("p", { class: "small muted hidden", "data-role": "vw-caption", id: `cmpt-${s.name}-vw` }),
  };
  fillSelect(ui.model, pd.models.map((m) => [m.id, m.label]), s.model);
  ui.text.value = s.text; ui.target.value = s.target;
  ui.targetWrap = el("label", {}, "Target ", ui.target);
  ui.panel = el("section", { class: "panel cmp-panel", id: `cmpt-${s.name}`, "aria-label": `Panel ${N}` },
    el("div", { class: "vz-panelhead" }, ui.title, ui.status),
    ui.text,
    el("div", { class: "cmp-controls" }, el("label", {}, "Model ", ui.model), ui.targetWrap, ui.run),
    el("div", { class: "cmp-controls" }, el("label", {}, "Attention ", ui.kind), el("label", {}, "Layer ", ui.layer), el("label", {}, "Head ", ui.head), ui.exports),
    ui.summary, ui.vwCaption, ui.plot);
  const kindOf = () => (ctx.models.get(ui.model.value) || {}).kind;
  ui.targetWrap.classList.toggle("hidden", kindOf() !== "seq2seq");
  ui.run.addEventListener("click", () => ctx.run(s));
  ui.text.addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); ctx.run(s); } });
  ui.model.addEventListener("change", () => { ui.targetWrap.classList.toggle("hidden", kindOf() !== "seq2seq"); ctx.run(s); });
  ui.kind.addEventListener("change", () => ctx.select(s, { kind: ui.kind.value }));
  ui.layer.addEventListener("change", () => ctx.select(s, { layer: toApi(ui.layer.value) }));
  ui.head.addEventListener("change", () => ctx.select(s, { head: toApi(ui.head.value) }));
  return ui;
}

function syncControls(s) {
  const A = s.A, b = A.block(s.kind), ui = s.ui, n = (count) => Array.from({ length: count }, (_, i) => fromApi(i));
  fillSelect(ui.kind, A.kinds().map((k) => [k, kindLabel(k, A.resp.model.kind, true)]), s.kind);
  fillSelect(ui.layer, n(b.layers).map((l) => [l, `layer ${l}`]), fromApi(s.layer));
  fillSelect(ui.head, [["mean", "mean of heads"], ...n(b.heads).map((h) => [h, `head ${h}`])], fromApi(s.head));
}

// The cells of a view as plotly z rows; masked (future) cells of a causal block are null (drawn grey).
function zRows(s, values, fn = (v) => v) {
  const A = s.A, nq = A.queryAxis(s.kind).labels.length, nk = A.keyAxis(s.kind).labels.length, causal = A.block(s.kind).causal;
  return Array.from({ length: nq }, (_, i) => Array.from({ length: nk }, (_, j) => (causal && A.isFuture(s.kind, i, j) ? null : fn(values[i * nk + j], i, j))));
}

// Screen positions 1..n of n tokens (plotly's axis values and tick positions).
export const positions = (n) => Array.from({ length: n }, (_, i) => fromApi(i));

export function heatLayout(s, title, width) {
  const q = s.A.queryAxis(s.kind).labels, k = s.A.keyAxis(s.kind).labels, b = s.A.block(s.kind);
  const cell = Math.max(3, Math.min(30, Math.floor((width - 150) / k.length), Math.floor(460 / q.length)));
  const ticks = (labels) => ({ tickvals: positions(labels.length), ticktext: labels.map(escapeHTML) });
  const every = (labels) => (cell >= 11 ? ticks(labels) : {}); // a label per cell when it fits, else plotly's numbers
  return {
    title: { text: escapeHTML(title), font: { size: 13 }, x: 0, xanchor: "left" },
    width, height: 160 + cell * q.length, margin: { l: 110, r: 16, t: 40, b: 100 }, font: { size: 11 },
    xaxis: { ...every(k), title: { text: `keys (${b.key_side})` }, tickangle: -60, showgrid: false, zeroline: false },
    yaxis: { ...every(q), title: { text: s.A.hasSteps(s.kind) ? "decoder steps (reads → writes)" : `queries (${b.query_side})` }, autorange: "reversed", showgrid: false, zeroline: false },
    plot_bgcolor: "#eceff3", paper_bgcolor: "#fff",
  };
}

export function hoverText(s) {
  const q = s.A.queryAxis(s.kind).labels.map(escapeHTML), k = s.A.keyAxis(s.kind).labels.map(escapeHTML);
  return q.map((ql, i) => k.map((kl, j) => `${ql} [${fromApi(i)}] \u2192 ${kl} [${fromApi(j)}]`));
}

// The numbers behind a panel (or the difference) as an export table: one row per (query, key) cell.
export function table(C, column, sides, values) {
  const s = sides[0], q = s.A.queryAxis(s.kind).labels, k = s.A.keyAxis(s.kind).labels, rows = [];
  for (let i = 0; i < q.length; i++) for (let j = 0; j < k.length; j++) rows.push([fromApi(i), q[i], fromApi(j), k[j], values[i * k.length + j]]);
  const meta = { numbering: NUMBERING, options: { hide_special: C.hide, merge_words: C.merge } };
  for (const t of sidesOf(C).filter((x) => sides.includes(x))) {
    meta[t.name.toUpperCase()] = { model: t.A.resp.model.id, text: t.text, target: t.target || null, kind: t.kind, layer: fromApi(t.layer), head: fromApi(t.head) };
  }
  return { header: ["query_index", "query", "key_index", "key", column], rows, meta };
}

// Draw side s's matrix (s.values). ctx: {C, wireHover(div)}.
export function drawSide(s, ctx) {
  syncControls(s);
  const ui = s.ui, A = s.A, nk = A.keyAxis(s.kind).labels.length;
  let zmax = 0;
  const z = zRows(s, s.values, (v) => { if (v > zmax) zmax = v; return v; });
  const trace = { type: "heatmap", z, x: positions(nk), y: positions(A.queryAxis(s.kind).labels.length),
    colorscale: "Viridis", zmin: 0, zmax: zmax || 1, xgap: nk <= 48 ? 1 : 0, ygap: nk <= 48 ? 1 : 0, text: hoverText(s),
    hovertemplate: `%{text}<br>${s.weighted ? "value-weighted " : ""}weight %{z:.4f}<extra></extra>`,
    colorbar: { title: { text: s.weighted ? "value-weighted" : "weight", side: "right" }, thickness: 10 } };
  const width = Math.max(360, ui.panel.clientWidth - 28), vw = s.weighted ? " \u00b7 value-weighted" : "";
  ui.title.textContent = `${s.name.toUpperCase()} \u00b7 ${where(s)}${vw}`;
  ui.vwCaption.textContent = s.vwNote;
  ui.vwCaption.classList.toggle("hidden", !s.vwNote);
  Plotly.react(ui.plot, [trace], heatLayout(s, `${A.resp.model.label} \u00b7 ${where(s)}${vw}`, width), PLOT_CONFIG);
  ctx.wireHover(ui.plot);
  ui.plot.dataset.state = "ready";
  ui.panel.dataset.state = "ready";
  const name = `compare_${s.name}_${s.kind}_layer${fromApi(s.layer)}_${s.head === "mean" ? "mean" : `head${fromApi(s.head)}`}${s.weighted ? "_value_weighted" : ""}`;
  ui.exports.replaceChildren(exportButtons(plotlyExports(ui.plot, name, () => table(ctx.C, s.name.toUpperCase(), [s], s.values)), `Export panel ${s.name.toUpperCase()}`));
}

// Synchronised hover: the cell under the pointer in one matrix is shown in the others with the same tokens.
export function hoverSync(C, plots) {
  let echoing = false;
  return function wireHover(div) {
    if (div.dataset.hoverWired) return;
    div.dataset.hoverWired = "1";
    div.on("plotly_hover", (ev) => {
      if (echoing || !ev.points || !ev.points.length) return;
      const p = ev.points[0], a = C.sides.a, b = C.sides.b;
      if (!a.values || !b.values || !sameTokens(a, b)) return;
      echoing = true;
      try {
        for (const other of plots()) if (other !== div && other.data) Plotly.Fx.hover(other, { xval: p.x, yval: p.y });
      } finally { echoing = false; }
    });
    div.on("plotly_unhover", () => {
      if (echoing) return;
      for (const other of plots()) if (other !== div && other.data) Plotly.Fx.unhover(other);
    });
  };
}
