// Side by side on /text, the third panel: B − A cell by cell on a diverging scale centred at 0, drawn only where
// both panels have exactly the same query and key tokens, with its range stated; and its exports.
import { el } from "../../lib/dom.js";
import { exportButtons, plotlyExports } from "../../lib/export.js";
import { fromApi } from "../../lib/numbering.js";
import { DIVERGING } from "../../lib/plot.js";
import { heatLayout, hoverText, PLOT_CONFIG, positions, table } from "./panel.js";
import { sameTokens, where } from "./state.js";

// The difference panel's elements: {panel, plot, caption, exports, values}.
export function diffPanel() {
  const diff = { plot: el("div", { class: "cmp-plot", id: "cmpt-diff-plot" }), caption: el("p", { class: "small muted", id: "cmpt-diff-caption" }),
    exports: el("span", { id: "cmpt-diff-export" }), values: null };
  diff.panel = el("section", { class: "panel cmp-panel cmp-diffpanel", id: "cmpt-diff", "aria-labelledby": "cmpt-diff-title" },
    el("div", { class: "vz-panelhead" }, el("h2", { id: "cmpt-diff-title" }, "Difference B \u2212 A"), diff.exports),
    diff.caption, diff.plot);
  return diff;
}

const fmtNum = (v) => (Math.abs(v) >= 1e-3 ? String(Number(v.toPrecision(3))) : v.toExponential(2).replace("e-", "e\u2212"));

// B − A of two (nq x nk) maps: {d: Float32Array, m: max |d|, arg: where}.
export function difference(a, b) {
  const d = new Float32Array(a.length);
  let m = 0, arg = 0;
  for (let i = 0; i < d.length; i++) { d[i] = b[i] - a[i]; if (Math.abs(d[i]) > m) { m = Math.abs(d[i]); arg = i; } }
  return { d, m, arg };
}

// Draw B − A of state C into `diff` (or say why there is none). ctx: {C, wireHover(div)}.
export function drawDiff(diff, ctx) {
  const C = ctx.C, a = C.sides.a, b = C.sides.b;
  diff.values = null;
  diff.panel.dataset.state = "none";
  diff.plot.classList.toggle("hidden", !(a.values && b.values && sameTokens(a, b)));
  if (!a.values || !b.values) { diff.caption.textContent = "Waiting for both panels\u2026"; return; }
  if (!sameTokens(a, b)) {
    Plotly.purge(diff.plot); // drops plotly's listeners too: wire the hover again when it is drawn next
    delete diff.plot.dataset.hoverWired;
    diff.plot.replaceChildren();
    diff.exports.replaceChildren();
    const n = (s) => `${s.A.queryAxis(s.kind).labels.length} query \u00d7 ${s.A.keyAxis(s.kind).labels.length} key tokens`;
    diff.caption.textContent = "No difference matrix: a cell-by-cell difference needs the same query and key tokens in both panels "
      + `(A has ${n(a)}, B has ${n(b)}${a.A.resp.model.id !== b.A.resp.model.id ? "; the two models may also split words differently" : ""}). `
      + "Compare the two matrices by eye, or give both panels the same text and a model with the same tokenizer.";
    return;
  }
  const nk = a.A.keyAxis(a.kind).labels.length, nq = a.values.length / nk;
  const { d, m, arg } = difference(a.values, b.values); // (nq, nk): B − A per cell
  diff.values = d;
  const scale = m > 0 ? m : 1, causal = a.A.block(a.kind).causal || b.A.block(b.kind).causal;
  const z = Array.from({ length: nq }, (_, i) => Array.from({ length: nk }, (_, j) =>
    (causal && (a.A.isFuture(a.kind, i, j) || b.A.isFuture(b.kind, i, j)) ? null : d[i * nk + j])));
  const trace = { type: "heatmap", z, x: positions(nk), y: positions(nq),
    colorscale: DIVERGING, zmin: -scale, zmax: scale, zmid: 0, xgap: nk <= 48 ? 1 : 0, ygap: nk <= 48 ? 1 : 0, text: hoverText(a),
    hovertemplate: "%{text}<br>B \u2212 A %{z:.4f}<extra></extra>", colorbar: { title: { text: "B \u2212 A", side: "right" }, thickness: 10 } };
  const width = Math.max(420, Math.min(diff.panel.clientWidth - 28, 900));
  Plotly.react(diff.plot, [trace], heatLayout(a, `B \u2212 A \u00b7 B: ${where(b)} \u2212 A: ${where(a)}`, width), PLOT_CONFIG);
  ctx.wireHover(diff.plot);
  Object.assign(diff.plot.dataset, { state: "ready", absmax: String(m), nq, nk });
  diff.panel.dataset.state = "ready";
  const ql = a.A.queryAxis(a.kind).labels, kl = a.A.keyAxis(a.kind).labels, i0 = Math.floor(arg / nk), j0 = arg % nk;
  diff.caption.textContent = m === 0
    ? "B \u2212 A is exactly 0 in every cell: the two panels show the same weights (white everywhere)."
    : `Colour scale centred at 0 and symmetric, from \u2212${fmtNum(scale)} (blue: A attends more) to +${fmtNum(scale)} `
      + `(red: B attends more). The largest change is ${fmtNum(d[arg])}, query \u201c${ql[i0]}\u201d [${fromApi(i0)}] \u2192 key \u201c${kl[j0]}\u201d [${fromApi(j0)}]. `
      + "Each row of A and of B sums to 1, so each row of B \u2212 A sums to 0: attention one panel gives a key, it takes from others.";
  if (a.weighted || b.weighted) {
    diff.caption.textContent += a.weighted && b.weighted
      ? " Both panels are value-weighted (Kobayashi et al. 2020): this is the difference of the weighted maps, each row renormalised."
      : ` Only panel ${a.weighted ? "A" : "B"} is value-weighted (see the other panel's note), so this compares weighted with raw attention.`;
  }
  diff.exports.replaceChildren(exportButtons(plotlyExports(diff.plot, `compare_diff_${a.kind}`, () => table(C, "B_minus_A", [a, b], d)), "Export the difference"));
}
