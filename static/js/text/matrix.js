// Matrix view: one layer/head (or the head mean) as a plotly heatmap with token labels. Every label and
// hover string is HTML-escaped first: plotly interprets tags such as <b>, <a>, <br> in ticks and hovers.
import { el, escapeHTML } from "../lib/dom.js";
import { exportButtons, plotlyExports } from "../lib/export.js";
import { fromApi, NUMBERING } from "../lib/numbering.js";

const MAX_HOVER_CELLS = 70000, TICK_PX = 13; // at most one tick label per 13 px (readable, never overlapping)

function ticks(labels, pixels) {
  const step = Math.max(1, Math.ceil(labels.length / Math.max(2, Math.floor(pixels / TICK_PX))));
  const vals = [];
  for (let i = 0; i < labels.length; i += step) vals.push(i);
  return { tickvals: vals.map((i) => i + 1), ticktext: vals.map((i) => escapeHTML(labels[i])) }; // axes count from 1
}

export function renderMatrix(pane, { analysis, kind, layer, head, values, exportSlot, title, zLabel = "weight" }) {
  const qAxis = analysis.queryAxis(kind), kAxis = analysis.keyAxis(kind);
  const nq = qAxis.labels.length, nk = kAxis.labels.length, b = analysis.block(kind);
  const z = new Array(nq);
  let zmax = 0;
  for (let i = 0; i < nq; i++) {
    const row = new Array(nk);
    for (let j = 0; j < nk; j++) {
      const v = values[i * nk + j];
      row[j] = b.causal && analysis.isFuture(kind, i, j) ? null : v;
      if (row[j] !== null && v > zmax) zmax = v;
    }
    z[i] = row;
  }
  const trace = {
    type: "heatmap", z, x: kAxis.labels.map((_, j) => j + 1), y: qAxis.labels.map((_, i) => i + 1), colorscale: "Viridis", zmin: 0, zmax: zmax || 1, xgap: nk <= 64 ? 1 : 0, ygap: nq <= 64 ? 1 : 0,
    colorbar: { title: { text: zLabel, side: "right" }, thickness: 12 },
  };
  if (nq * nk <= MAX_HOVER_CELLS) {
    const q = qAxis.labels.map(escapeHTML), k = kAxis.labels.map(escapeHTML);
    trace.text = q.map((ql, i) => k.map((kl, j) => `${ql} [${i + 1}] → ${kl} [${j + 1}]`));
    trace.hovertemplate = `%{text}<br>${zLabel} %{z:.4f}<extra></extra>`;
  } else {
    trace.hovertemplate = `query %{y} → key %{x}<br>${zLabel} %{z:.4f}<extra></extra>`;
  }
  const avail = Math.max(420, (pane.clientWidth || 820) - 10);
  const cellPx = Math.max(2, Math.min(44, Math.floor((avail - 230) / nk), Math.floor(560 / nq)));
  const layout = {
    title: { text: escapeHTML(title), font: { size: 14 }, x: 0, xref: "paper", xanchor: "left", y: 0.995, yref: "container", yanchor: "top" },
    width: Math.min(avail, Math.max(480, 230 + cellPx * nk)), height: 150 + cellPx * nq,
    margin: { l: 120, r: 20, t: b.causal ? 62 : 44, b: 110 },
    xaxis: { ...ticks(kAxis.labels, cellPx * nk), title: { text: `keys (${b.key_side})` }, tickangle: -60, side: "bottom", zeroline: false, showgrid: false },
    yaxis: { ...ticks(qAxis.labels, cellPx * nq), title: { text: analysis.hasSteps(kind) ? "decoder steps (reads → writes)" : `queries (${b.query_side})` }, autorange: "reversed", zeroline: false, showgrid: false },
    plot_bgcolor: "#eceff3", paper_bgcolor: "#fff", font: { size: 11 },
  };
  if (b.causal) {
    layout.annotations = [{ text: "grey: masked future positions (weight exactly 0)", showarrow: false, xref: "paper", yref: "paper", x: 0, y: 1.01, xanchor: "left", yanchor: "bottom", font: { size: 11, color: "#5d6675" } }];
  }
  const div = el("div", { class: "tx-matrix", id: "tx-matrix-plot" });
  const lead = el("p", { class: "small muted tx-mx-lead" }, "Each row is one query's attention over the keys: its weights sum to 1." +
    (b.causal ? " Grey cells are masked future positions (weight exactly 0)." : ""));
  pane.replaceChildren(lead, div);
  Plotly.react(div, [trace], layout, { displaylogo: false, responsive: false, modeBarButtonsToRemove: ["select2d", "lasso2d"] });
  const name = `attention_${kind}_layer${fromApi(layer)}_${head === "mean" ? "mean" : `head${fromApi(head)}`}`;
  const data = () => {
    const rows = [];
    for (let i = 0; i < nq; i++) for (let j = 0; j < nk; j++) rows.push([i + 1, qAxis.labels[i], j + 1, kAxis.labels[j], values[i * nk + j]]);
    return {
      header: ["query_index", "query", "key_index", "key", "weight"], rows,
      meta: { model: analysis.resp.model.id, kind, layer: fromApi(layer), head: fromApi(head), numbering: NUMBERING, options: analysis.options },
    };
  };
  exportSlot.replaceChildren(exportButtons(plotlyExports(div, name, data), "Export matrix view"));
}
