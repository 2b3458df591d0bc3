// Relative-offset page: for every head, the attention mass at d = key − query (paper 1, Section 3.5's
// hypothesis, tested), averaged over a bundled input set or over one analysis (?analysis=<id>).
// One plotly heatmap (rows: layer · head, columns: offsets) and a table of the most positional heads.
import { apiGet, pageData, showError } from "../lib/api.js";
import { $, el, fillSelect } from "../lib/dom.js";
import { CONFIG, fmt, layout, mountExports } from "../lib/plot.js";
import { decodeTyped } from "../lib/typed.js";
import { readState, writeState } from "../lib/urlstate.js";
import { fromApi, NUMBERING } from "../lib/numbering.js";
import { kindLabel } from "./data.js";

const pd = pageData();
const models = new Map(pd.models.map((m) => [m.id, m]));
const st = readState({ model: pd.default_model, kind: "", window: 8, analysis: "" });
if (!models.has(st.model)) st.model = pd.default_model;
const ui = { model: $("of-model"), kind: $("of-kind"), window: $("of-window"), status: $("of-status"), error: $("of-error") };
let R = null; // the OffsetsResponse shown

function columns(r) { return [`< −${r.window}`, ...r.offsets.map((d) => (d > 0 ? `+${d}` : String(d).replace("-", "−"))), `> +${r.window}`]; }

function render() {
  const b = R.blocks.find((x) => x.kind === st.kind) || R.blocks[0];
  st.kind = b.kind;
  writeState({ model: st.model, kind: st.kind, window: st.window, analysis: st.analysis });
  ui.kind.replaceChildren(...R.blocks.map((x) => el("button", {
    type: "button", "aria-pressed": String(x.kind === b.kind), dataset: { kind: x.kind },
    onclick: () => { st.kind = x.kind; render(); },
  }, kindLabel(x.kind, (models.get(R.model_id) || {}).kind, true))));
  const prof = decodeTyped(b.profile).data, score = decodeTyped(b.score).data, best = decodeTyped(b.best_offset).data;
  const nc = R.offsets.length + 2, cols = columns(R), rows = [], z = [], text = [];
  for (let l = 0; l < b.layers; l++) for (let h = 0; h < b.heads; h++) {
    const i = l * b.heads + h;
    rows.push(`L${fromApi(l)} · H${fromApi(h)}`);
    z.push(Array.from(prof.subarray(i * nc, (i + 1) * nc)));
    text.push(cols.map((c, k) => `layer ${fromApi(l)}, head ${fromApi(h)}<br>offset ${c}: ${fmt(prof[i * nc + k])}<br>positional score ${fmt(score[i])} at d = ${best[i]}`));
  }
  const div = $("of-map");
  div.dataset.rows = String(rows.length);
  const height = Math.max(320, 16 * rows.length + 90);
  div.style.height = `${height}px`; // the panel grows with the rows (the caption stays below the chart)
  Plotly.react(div, [{
    type: "heatmap", z, x: cols, y: rows, text, hoverinfo: "text", colorscale: "Viridis", zmin: 0, zmax: 1,
    colorbar: { title: { text: "mass", side: "right" }, thickness: 12 },
  }], layout({ height, margin: { l: 86, r: 14, t: 10, b: 64 }, yaxis: { autorange: "reversed", tickfont: { size: 10 }, title: { text: "layer · head" } },
    xaxis: { title: { text: "offset d = key position − query position" }, type: "category" } }), CONFIG);
  const what = R.source === "corpus" ? `${R.inputs.length} bundled inputs (listed below)` : "the current analysis";
  const crossNote = b.kind === "cross" ? " For cross-attention the query is a decoder position and the key an encoder position: d compares indices of two different sequences." : "";
  $("of-map-caption").textContent = `${R.model_label}, ${kindLabel(b.kind, (models.get(R.model_id) || {}).kind)}, averaged over ${what}. ` +
    `Each row is one head; each cell the mean over query rows of the weight at key = query + d (keys outside the sequence count 0); ` +
    `the two outer columns hold the mass further away, so each row sums to 1. Special tokens ([CLS], [SEP], <s>, </s>) are kept, so mass to them ` +
    `shows up at whatever offset they sit. Colour scale fixed at 0..1 for every head.${crossNote}`;
  mountExports("of-map-export", div, `offsets_${R.model_id}_${b.kind}`, () => ({
    header: ["layer", "head", ...cols, "positional_score", "best_offset"],
    rows: z.map((r, i) => [Math.floor(i / b.heads) + 1, (i % b.heads) + 1, ...r, score[i], best[i]]),
    meta: { model: R.model_id, kind: b.kind, source: R.source, inputs: R.inputs, window: R.window, numbering: NUMBERING },
  }));

  // the most positional heads
  const order = Array.from(score.keys()).sort((i, j) => score[j] - score[i]).slice(0, 10);
  $("of-top").replaceChildren(el("table", { class: "data" },
    el("thead", {}, el("tr", {}, ["head", "positional score", "at offset d"].map((t) => el("th", { scope: "col" }, t)))),
    el("tbody", {}, order.map((i) => el("tr", {},
      el("td", {}, `L${fromApi(Math.floor(i / b.heads))} · H${fromApi(i % b.heads)}`),
      el("td", {}, fmt(score[i])), el("td", {}, best[i] > 0 ? `+${best[i]}` : String(best[i]).replace("-", "−")))))));
  $("of-top-caption").textContent = `Positional score = the largest mean weight at one fixed offset d, |d| ≤ ${R.window} (the brightest ` +
    `cell of the head's row). 1 = the head always looks at the same relative position; about 1/n when its weight is spread evenly ` +
    `over n tokens. The head table on /text shows the same score (window 8) for the text you analyse.`;
  $("of-inputs").textContent = R.source === "corpus" ? `Inputs: ${R.inputs.map((t) => `“${t}”`).join(" · ")}` : `Input tokens: ${R.inputs[0]}`;
}

async function load() {
  showError(ui.error, null);
  ui.status.textContent = st.analysis ? "Measuring this analysis…" : "Running the bundled inputs…";
  try {
    const url = st.analysis
      ? `/api/text/analysis/${encodeURIComponent(st.analysis)}/offsets?window=${st.window}`
      : `/api/text/offsets?model=${encodeURIComponent(st.model)}&window=${st.window}`;
    R = await apiGet(url);
    ui.status.textContent = "";
    render();
  } catch (err) { ui.status.textContent = ""; showError(ui.error, err); }
}

fillSelect(ui.model, pd.models.map((m) => [m.id, m.label]), st.model);
ui.window.value = st.window;
ui.model.addEventListener("change", () => { st.model = ui.model.value; st.analysis = ""; st.kind = ""; load(); });
ui.window.addEventListener("change", () => { st.window = Math.min(32, Math.max(1, Math.round(Number(ui.window.value)) || 8)); ui.window.value = st.window; load(); });
load();
