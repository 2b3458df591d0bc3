// Notebook output of show_text() (app/notebook/text.py): the text page's head view, model view, matrix view and
// per-head statistics table (text/headview.js, modelview.js, matrix.js, table.js) on data carried inside the
// output, with no server. The data has the server's overview shape (text/data.js reads it); each block's
// maps sit under `nb`: float32 or uint8 (1/255 steps) maps of every layer, or for long inputs each query's
// k strongest keys per head and layer (index + uint8 weight), as the server's head view of a long input.
import { el } from "../lib/dom.js";
import { decodeTyped } from "../lib/typed.js";
import { fromApi } from "../lib/numbering.js";
import { Analysis, kindLabel } from "../text/data.js";
import { renderHeadView } from "../text/headview.js";
import { renderMatrix } from "../text/matrix.js";
import { renderModelView } from "../text/modelview.js";
import { renderTable } from "../text/table.js";

// Analysis whose layers, heads and lines come from the output itself instead of the API.
class NotebookAnalysis extends Analysis {
  constructor(resp) {
    super(resp);
    for (const b of resp.blocks) {
      const nb = b.nb, blk = this.block(b.kind);
      blk.nbTier = nb.tier;
      if (nb.tier === "topk") { blk.nbIndex = decodeTyped(nb.index).data; blk.nbWeight = decodeTyped(nb.weight).data; blk.nbK = nb.k; }
      else blk.nbData = decodeTyped(nb.data).data; // (L, H, Wq, Wk)
    }
  }

  hasLayer(kind) { return this.block(kind).nbTier !== "topk"; }

  async lines(kind, layer) {
    const b = this.block(kind), n = b.heads * b.n_query * b.nbK;
    return { index: b.nbIndex.subarray(layer * n, (layer + 1) * n), weight: b.nbWeight.subarray(layer * n, (layer + 1) * n), k: b.nbK };
  }

  // Every head of one layer: {values, factor}, weight = values[(h * nq + i) * nk + j] * factor.
  async layer(kind, layer) {
    const b = this.block(kind), n = b.heads * b.n_query * b.n_key;
    if (b.nbTier !== "topk") return { values: b.nbData.subarray(layer * n, (layer + 1) * n), factor: b.nbTier === "u1" ? 1 / 255 : 1 };
    const key = `${kind}/${layer}`;
    if (this.layers.has(key)) return this.layers.get(key);
    const { index, weight, k } = await this.lines(kind, layer), out = new Float32Array(n); // the k strongest keys, 0 elsewhere
    for (let r = 0; r < b.heads * b.n_query; r++) for (let t = 0; t < k; t++) out[r * b.n_key + index[r * k + t]] = weight[r * k + t] / 255;
    return this._remember(this.layers, key, { values: out, factor: 1 }, 4);
  }

  async head(kind, layer, head) {
    const b = this.block(kind), n = b.n_query * b.n_key, { values, factor } = await this.layer(kind, layer);
    const out = new Float32Array(n), heads = head === "mean" ? [...Array(b.heads).keys()] : [head];
    for (const h of heads) for (let i = 0; i < n; i++) out[i] += (values[h * n + i] * factor) / heads.length;
    return out;
  }
}

const TIER_NOTES = {
  f4: "",
  u1: "Maps are carried in 1/255 steps (uint8) to keep the output small; the result's .maps holds every weight at full precision.",
  topk: "Long input: the output carries each query's {k} strongest keys per head and layer (1/255 steps); the head view, "
    + "matrix and mean of heads show those, the model view and the statistics table use every weight. The result's .maps holds them all.",
};

export async function mount(root, resp) {
  const A = new NotebookAnalysis(resp);
  const st = { kind: A.kinds()[0], layer: resp.selected.layer, head: resp.selected.head, view: resp.selected.view };
  let selected = new Set(st.head === "mean" ? [...Array(A.block(st.kind).heads).keys()] : [st.head]);
  const modelKind = resp.model.kind;

  const kinds = el("div", { class: "nb-seg", role: "group", "aria-label": "Attention block" });
  const layerSel = el("select", { "aria-label": "Layer" }), headSel = el("select", { "aria-label": "Head" });
  const tabs = el("div", { class: "nb-seg", role: "tablist", "aria-label": "View" });
  for (const [v, label] of [["head", "Head view"], ["model", "Model view"], ["matrix", "Matrix"]]) {
    tabs.append(el("button", { type: "button", role: "tab", dataset: { view: v }, onclick: () => { st.view = v; render(); } }, label));
  }
  const exportSlot = el("span", { class: "nb-export" }), tableExport = el("span", { class: "nb-export" });
  const pane = el("div", { class: "nb-pane" }), tableBox = el("div", { class: "tx-table-scroll" });
  const parts = [el("b", {}, resp.model.label), ` \u00b7 ${resp.source.tokens.length} source tokens`];
  if (resp.target) parts.push(` \u00b7 ${resp.target.tokens.length} decoder tokens`);
  if (resp.generated_text !== null && resp.generated_text !== undefined) parts.push(" \u00b7 greedy output: ", el("code", {}, resp.generated_text || "(empty)"));
  const note = TIER_NOTES[resp.tier].replace("{k}", resp.top_k);
  root.append(
    el("p", {}, ...parts),
    ...(note ? [el("p", { class: "nb-note" }, note)] : []),
    el("div", { class: "nb-bar" }, kinds, layerSel, headSel, tabs, exportSlot),
    el("section", { class: "nb-panel" }, pane),
    el("section", { class: "nb-panel", style: "margin-top: 10px" },
      el("div", { class: "nb-bar" }, el("h3", {}, "Per-head statistics"), tableExport),
      el("p", { class: "nb-caption" }, "One row per layer and head (and their mean); click a column to sort, a row to open that head in the matrix. "
        + "Each attention row is a softmax over the keys (\u201cAttention Is All You Need\u201d, Section 3.2.1); hover a column title for its definition."),
      tableBox),
  );

  function syncControls() {
    const b = A.block(st.kind);
    kinds.replaceChildren(...(A.kinds().length > 1 ? A.kinds().map((k) => el("button", {
      type: "button", "aria-pressed": String(k === st.kind), dataset: { kind: k },
      onclick: () => { st.kind = k; clamp(); syncControls(); render(); },
    }, kindLabel(k, modelKind, true))) : []));
    layerSel.replaceChildren(...[...Array(b.layers).keys()].map((l) => el("option", { value: l }, `layer ${fromApi(l)}`)));
    layerSel.value = String(st.layer);
    headSel.replaceChildren(el("option", { value: "mean" }, "mean of heads"), ...[...Array(b.heads).keys()].map((h) => el("option", { value: h }, `head ${fromApi(h)}`)));
    headSel.value = String(st.head);
  }
  function clamp() {
    const b = A.block(st.kind);
    st.layer = Math.min(st.layer, b.layers - 1);
    if (st.head !== "mean") st.head = Math.min(st.head, b.heads - 1);
    selected = new Set([...selected].filter((h) => h < b.heads));
    if (!selected.size) for (let h = 0; h < b.heads; h++) selected.add(h);
  }
  layerSel.addEventListener("change", () => { st.layer = Number(layerSel.value); render(); });
  headSel.addEventListener("change", () => {
    st.head = headSel.value === "mean" ? "mean" : Number(headSel.value);
    selected = new Set(st.head === "mean" ? [...Array(A.block(st.kind).heads).keys()] : [st.head]);
    render();
  });
  const openHead = (layer, head) => { st.layer = layer; st.head = head; st.view = "matrix"; syncControls(); render(); };

  let seq = 0;
  async function render() {
    const my = ++seq, { kind, layer, head } = st;
    for (const t of tabs.children) t.setAttribute("aria-selected", String(t.dataset.view === st.view));
    renderTable(tableBox, { analysis: A, kind, current: { layer, head }, onOpen: openHead, exportSlot: tableExport });
    const title = `${kindLabel(kind, modelKind)} \u00b7 layer ${fromApi(layer)}`;
    Object.assign(root.dataset, { kind, layer, head, view: st.view });
    if (st.view === "model") {
      renderModelView(pane, { analysis: A, kind, current: { layer, head }, onOpen: openHead, exportSlot, title: kindLabel(kind, modelKind) });
    } else if (st.view === "head") {
      const full = A.hasLayer(kind, layer);
      const [data, lines] = full ? [await A.layer(kind, layer), null] : [null, await A.lines(kind, layer)];
      if (my !== seq) return;
      renderHeadView(pane, { analysis: A, kind, layer, data, lines, loadFull: () => A.layer(kind, layer), selected, title, exportSlot, onSelect: () => render() });
    } else if (!window.Plotly) {
      pane.replaceChildren(el("p", { class: "nb-note" }, "The matrix view draws with plotly.js, which this output leaves out (include_plotly=False) and this page does not have."));
    } else {
      const values = await A.head(kind, layer, head);
      if (my !== seq) return;
      renderMatrix(pane, { analysis: A, kind, layer, head, values, exportSlot, title: `${title} \u00b7 ${head === "mean" ? "mean of heads" : `head ${fromApi(head)}`}` });
    }
  }
  clamp(); syncControls();
  await render();
}
