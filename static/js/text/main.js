// Text attention explorer: controls, URL state (the permalink) and the three views + head table.
import { syncTabs, wireTabs } from "../lib/a11y.js";
import { pageData, showError } from "../lib/api.js";
import { $, el, fillSelect } from "../lib/dom.js";
import { readState, writeState } from "../lib/urlstate.js";
import { fromApi, toApi } from "../lib/numbering.js";
import { analyze, kindLabel, review } from "./data.js";
import { renderHeadView } from "./headview.js";
import { renderMatrix } from "./matrix.js";
import { renderModelView } from "./modelview.js";
import { renderNeuron } from "./neuron.js";
import { renderTable } from "./table.js";
import { mountCompare, wireCompareLink } from "./compare/main.js";
import { outputParts, showStepsNote, warningNode } from "./steps.js";
import { limitWords, markStale, wireBudget } from "./budget.js";
import { setToggle, textCaption, textNorms, valueToggle, WeightedAnalysis } from "../lib/valueweight.js";

const EXAMPLES = {
  encoder: "The animal didn't cross the street because it was too tired.",
  causal: "The animal didn't cross the street because it was too tired.",
  seq2seq: "Friday, March 18th, 2022",
};
const URL_TEXT_MAX = 300; // longer texts are not put in the URL
const pd = pageData();
const models = new Map(pd.models.map((m) => [m.id, m]));
const ui = {
  form: $("tx-form"), text: $("tx-text"), model: $("tx-model"), target: $("tx-target"), targetWrap: $("tx-target-wrap"),
  kind: $("tx-kind"), layer: $("tx-layer"), head: $("tx-head"), hide: $("tx-hide"), merge: $("tx-merge"),
  status: $("tx-status"), error: $("tx-error"), summary: $("tx-summary"), exportSlot: $("tx-export"),
  tableExport: $("tx-table-export"), table: $("tx-table"), limits: $("tx-limits"), steps: $("tx-steps"),
  budget: $("tx-budget"), results: [$("tx-summary"), $("tx-steps"), document.querySelector(".tx-main")],
  panes: { head: $("tx-pane-head"), model: $("tx-pane-model"), matrix: $("tx-pane-matrix"), neuron: $("tx-pane-neuron") },
};

// The URL counts layers and heads from 1 (as the vision page and the controls do); `st` holds API indices
// (0-based) with head = "mean" for the mean of heads. saveURL() converts back.
const url = readState({ text: "", model: pd.default_model, target: "", kind: "", layer: 1, head: "1", view: "head", hide: false, merge: false, q: 1, vw: false });
const st = { ...url, layer: toApi(url.layer), head: toApi(url.head), q: toApi(url.q) };
if (!models.has(st.model)) st.model = pd.default_model;
if (!["head", "model", "matrix", "neuron"].includes(st.view)) st.view = "head";
let A = null; // the current Analysis
let selected = new Set(); // heads shown in the head view
let renderSeq = 0;

function modelKind() { return (models.get(ui.model.value) || {}).kind || "encoder"; }

function setBusy(busy, text = "") {
  ui.status.replaceChildren(...(busy ? [el("span", { class: "spinner" }), text] : [text]));
  ui.form.querySelector("#tx-run").disabled = busy;
}

function saveURL() {
  const text = ui.text.value;
  writeState({
    text: text.length <= URL_TEXT_MAX ? text : "", model: ui.model.value,
    target: modelKind() === "seq2seq" && ui.target.value.length <= URL_TEXT_MAX ? ui.target.value : "",
    kind: st.kind, layer: fromApi(st.layer), head: fromApi(st.head), view: st.view, hide: st.hide, merge: st.merge, q: fromApi(st.q),
    vw: st.vw || "",
  });
}

function syncControls() {
  const b = A.block(st.kind);
  ui.kind.replaceChildren(...A.kinds().map((k) => el("button", {
    type: "button", "aria-pressed": String(k === st.kind), dataset: { kind: k },
    title: kindLabel(k, A.resp.model.kind), onclick: () => { st.kind = k; clampSelection(); syncControls(); render(); },
  }, kindLabel(k, A.resp.model.kind, true))));
  const n = (count) => Array.from({ length: count }, (_, i) => fromApi(i)); // option values are 1-based, as in the URL
  fillSelect(ui.layer, n(b.layers).map((l) => [l, `layer ${l}`]), fromApi(st.layer));
  fillSelect(ui.head, [["mean", "mean of heads"], ...n(b.heads).map((h) => [h, `head ${h}`])], fromApi(st.head));
  ui.hide.checked = st.hide; ui.merge.checked = st.merge;
  setToggle(vwToggle, !st.merge, st.merge ? "Value weighting needs one column per token: turn off “merge word pieces”." : "");
  vwToggle.querySelector("input").checked = st.vw && !st.merge;
}

// Value-weighted attention (lib/valueweight.js): the analysis the head, model and matrix views draw.
let W = null;
async function drawn(kind, layer, head) {
  const cap = $("tx-vw-caption");
  cap.classList.toggle("hidden", !st.vw || st.merge);
  if (!st.vw || st.merge || st.view === "neuron") return A;
  const vw = await textNorms(A);
  if (!vw.available) { cap.textContent = vw.reason; setToggle(vwToggle, false, vw.reason); return A; }
  if (!W || W.base !== A) W = new WeightedAnalysis(A, vw);
  if (st.view === "model") await W.prepare(kind);
  cap.textContent = textCaption(vw, kind, layer, head, A.block(kind).heads, A.resp.inline)
    + (st.view === "model" ? " Thumbnails: max-pooled weighted maps, each scaled to its own maximum." : "");
  return W;
}
const vwToggle = valueToggle("tx-vw", (on) => { st.vw = on; render(); });
$("tx-vw-slot").replaceChildren(vwToggle);

function clampSelection() {
  if (!A.kinds().includes(st.kind)) st.kind = A.kinds()[0];
  const b = A.block(st.kind);
  st.layer = Math.min(Math.max(0, Number(st.layer) || 0), b.layers - 1);
  if (st.head !== "mean") st.head = Math.min(Math.max(0, Number(st.head) || 0), b.heads - 1);
  selected = new Set([...selected].filter((h) => h < b.heads));
  if (!selected.size) for (let h = 0; h < b.heads; h++) selected.add(h);
}

function summary() {
  const r = A.resp, m = r.model, parts = [
    el("b", {}, m.label), ` · ${m.num_layers} layers × ${m.num_heads} heads · `,
    `${r.source.tokens.length} source tokens`,
  ];
  if (r.target) parts.push(` · ${r.target.tokens.length} decoder tokens`);
  if (r.generated_text !== null && r.generated_text !== undefined) parts.push(...outputParts(r));
  else if (r.target) parts.push(" · decoder fed the given target");
  parts.push(el("span", { class: "muted" }, ` · forward ${r.forward_ms.toFixed(1)} ms` +
    (r.inline ? "" : " · large input: maps are fetched per layer / head")));
  parts.push(" · ", el("a", { href: `/offsets?analysis=${encodeURIComponent(r.analysis_id)}&model=${encodeURIComponent(m.id)}` }, "relative offsets"));
  ui.summary.replaceChildren(...parts, warningNode(r));
}

// Run fn once the browser has painted what is on the page now (idle callback, at most 200 ms later).
function afterPaint(fn) {
  requestAnimationFrame(() => (window.requestIdleCallback ? requestIdleCallback(fn, { timeout: 200 }) : setTimeout(fn, 0)));
}

// Performance marks for bench/text.py: "tx-run" (Enter), "tx-view" (the view is in the DOM), "tx-painted"
// (the frame after it: the browser has laid it out and painted it).
function markDrawn() {
  performance.mark("tx-view");
  requestAnimationFrame(() => setTimeout(() => performance.mark("tx-painted"), 0));
}

function openHead(layer, head) {
  st.layer = layer; st.head = head; st.view = "matrix";
  syncControls(); render();
}

async function render() {
  if (!A) return;
  const seq = ++renderSeq;
  saveURL();
  for (const btn of document.querySelectorAll(".tx-tabs [data-view]")) {
    const on = btn.dataset.view === st.view;
    btn.setAttribute("aria-selected", String(on)); btn.classList.toggle("on", on);
  }
  syncTabs(document.querySelector(".tx-tablist"));
  for (const [name, pane] of Object.entries(ui.panes)) pane.classList.toggle("hidden", name !== st.view);
  const kind = st.kind, layer = st.layer, head = st.head;
  const current = { layer, head };
  showStepsNote(ui.steps, A, kind);
  const table = () => { if (seq === renderSeq) renderTable(ui.table, { analysis: A, kind, current, onOpen: openHead, exportSlot: ui.tableExport }); };
  // A long input draws its view first and the head table on the next idle moment (the same frame otherwise).
  if (A.resp.inline) table(); else afterPaint(table);
  let title = `${kindLabel(kind, A.resp.model.kind)} · layer ${fromApi(layer)}`;
  // The Head select says what is drawn: in the head view the chips decide (all of them: the mean of heads).
  const nh = A.block(kind).heads, chips = st.view === "head" ? selected.size : 0;
  ui.head.value = String(chips === nh ? "mean" : chips === 1 ? fromApi([...selected][0]) : fromApi(st.head));
  try {
    const V = await drawn(kind, layer, head), tag = V === A ? "" : " · value-weighted";
    if (seq !== renderSeq) return;
    title += tag;
    if (st.view === "model") {
      for (const p of [ui.panes.head, ui.panes.matrix]) p.replaceChildren();
      renderModelView(ui.panes.model, { analysis: V, kind, current, onOpen: openHead, exportSlot: ui.exportSlot, title: kindLabel(kind, A.resp.model.kind) + tag });
    } else if (st.view === "head") {
      const full = V.hasLayer(kind, layer); // long inputs draw from top-k lines; the full layer comes on hover
      const [data, lines] = full ? [await V.layer(kind, layer), null] : [null, await A.lines(kind, layer)];
      if (seq !== renderSeq) return;
      for (const p of [ui.panes.model, ui.panes.matrix]) p.replaceChildren();
      renderHeadView(ui.panes.head, {
        analysis: V, kind, layer, data, lines, loadFull: () => V.layer(kind, layer), selected, title, exportSlot: ui.exportSlot,
        onSelect: () => render(),
      });
      markDrawn();
    } else if (st.view === "neuron") { // q and k exist per head: the mean of heads opens head 1
      if (head === "mean") { st.head = 0; syncControls(); saveURL(); }
      await renderNeuron(ui.panes.neuron, {
        analysis: A, kind, layer, head: st.head, query: st.q, exportSlot: ui.exportSlot,
        isCurrent: () => seq === renderSeq, onQuery: (i) => { st.q = i; render(); },
      });
    } else {
      const values = await V.head(kind, layer, head);
      if (seq !== renderSeq) return;
      for (const p of [ui.panes.model, ui.panes.head]) p.replaceChildren();
      renderMatrix(ui.panes.matrix, {
        analysis: V, kind, layer, head, values, exportSlot: ui.exportSlot,
        title: `${title} · ${head === "mean" ? "mean of heads" : `head ${fromApi(head)}`}`,
        zLabel: V === A ? "weight" : "value-weighted share",
      });
    }
  } catch (err) { showError(ui.error, err); }
}

let runSeq = 0; // only the latest analysis request may draw: an older response arriving late is dropped

async function run() {
  const mine = ++runSeq;
  performance.mark("tx-run");
  showError(ui.error, null);
  const kind = modelKind(), body = {
    text: ui.text.value, model: ui.model.value, hide_special: st.hide, merge_words: st.merge, layer: Number(st.layer) || 0,
  };
  if (kind === "seq2seq" && ui.target.value) body.target = ui.target.value;
  if (st.kind) body.kind = st.kind;
  setBusy(true, "Analysing…");
  try {
    let next;
    try { next = await analyze(body); } catch (err) {
      if (err.status !== 400 || (!body.kind && body.layer === 0)) throw err;
      delete body.kind; body.layer = 0; next = await analyze(body); // the URL's kind/layer does not fit this model
    }
    if (mine !== runSeq) return; // the user asked for another text meanwhile
    const heads = A ? A.block(st.kind)?.heads : null;
    A = next;
    if (heads !== A.block(A.kinds()[0]).heads) selected = new Set();
    clampSelection(); syncControls(); summary(); setBusy(false); markStale(ui.results, false);
    await render();
  } catch (err) {
    if (mine === runSeq) { setBusy(false); showError(ui.error, err); if (A) markStale(ui.results, true); }
  }
}

async function reoption() {
  st.hide = ui.hide.checked; st.merge = ui.merge.checked;
  if (!A) return;
  setBusy(true, "Updating…");
  try {
    A = await review(A.id, { hide_special: st.hide, merge_words: st.merge }, st.kind, st.layer);
    clampSelection(); syncControls(); setBusy(false); await render();
  } catch (err) {
    setBusy(false);
    if (err.status === 404) run(); else showError(ui.error, err);
  }
}

// --- wiring -------------------------------------------------------------------------------------
fillSelect(ui.model, pd.models.map((m) => [m.id, m.label]), st.model);
ui.text.maxLength = pd.max_text_chars;
ui.text.value = st.text || EXAMPLES[modelKind()];
ui.target.value = st.target;
ui.targetWrap.classList.toggle("hidden", modelKind() !== "seq2seq");
const showLimits = () => { ui.limits.textContent = limitWords(models.get(ui.model.value), pd.max_text_chars); };
showLimits();
wireBudget({ text: ui.text, model: ui.model, slot: ui.budget, models });

ui.form.addEventListener("submit", (e) => { e.preventDefault(); run(); });
ui.text.addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); run(); } });
ui.model.addEventListener("change", () => {
  const kind = modelKind();
  showLimits();
  ui.targetWrap.classList.toggle("hidden", kind !== "seq2seq");
  if (!ui.text.value.trim() || Object.values(EXAMPLES).includes(ui.text.value)) ui.text.value = EXAMPLES[kind];
  st.kind = ""; st.layer = 0;
  run();
});
ui.layer.addEventListener("change", () => { st.layer = toApi(ui.layer.value); render(); });
ui.head.addEventListener("change", () => {
  st.head = toApi(ui.head.value);
  if (st.head !== "mean") selected = new Set([st.head]);
  else selected = new Set(Array.from({ length: A.block(st.kind).heads }, (_, h) => h));
  render();
});
ui.hide.addEventListener("change", reoption);
ui.merge.addEventListener("change", reoption);
for (const btn of document.querySelectorAll(".tx-tabs [data-view]")) {
  btn.addEventListener("click", () => { st.view = btn.dataset.view; render(); });
}
wireTabs(document.querySelector(".tx-tablist")); // Left/Right between the tabs (ARIA tabs pattern)
let resizeTimer = null;
window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(() => { if (st.view === "model") render(); }, 200); });

st.kind = st.kind || "";
if (url.compare) mountCompare(pd); // side by side (compare/); the single view stays as it is
else { wireCompareLink($("tx-compare-link")); run(); }
