// Side by side on /text (issue 8, section 5; LIT's habit): two panels, A and B, each one analysis (text, model and,
// for an encoder-decoder, target) with its own attention kind, layer and head, drawn as the matrix view. "Link"
// moves kind, layer and head together; hovering a cell in one matrix shows the same cell in the other when the
// tokens match. Where both panels have exactly the same query and key tokens, a third panel draws B − A on a
// diverging scale centred at 0, with its range stated.
//
// Only the existing API: /api/text/analyze for each panel, then /head (or the inline maps) through text/data.js;
// with "value-weighted" on, each panel draws its analysis through lib/valueweight.js (Kobayashi et al. 2020), as
// the single view does, and B − A is the difference of the weighted maps.
// The modules: state.js (the permalink), panel.js (one side's panel and the shared plotly pieces), difference.js
// (B − A), and this one, which wires them. The single view is untouched when compare is off: text/main.js only
// mounts this module on compare=1.
import { pageData, showError } from "../../lib/api.js";
import { $, el } from "../../lib/dom.js";
import { writeState } from "../../lib/urlstate.js";
import { setToggle, textCaption, textNorms, valueToggle, WeightedAnalysis } from "../../lib/valueweight.js";
import { analyze } from "../data.js";
import { diffPanel, drawDiff } from "./difference.js";
import { drawSide, hoverSync, sidePanel } from "./panel.js";
import { clamp, compareHref, otherSide, readCompareState, sidesOf, singleHref, urlFields } from "./state.js";

export { compareHref } from "./state.js";

// The "Side by side" link of the single view: its href follows the current permalink when it is used.
export function wireCompareLink(link) {
  if (!link) return;
  const update = () => { link.href = compareHref(location.search); };
  for (const ev of ["mouseenter", "focus", "click"]) link.addEventListener(ev, update);
}

function select(ctx, s, change) {
  for (const t of ctx.C.link ? sidesOf(ctx.C) : [s]) {
    Object.assign(t, change);
    if (t.A) clamp(t);
  }
  render(ctx);
}

// follow: a run the user started in one panel (its text or model) takes the other panel's kind, layer and head
// when linked; runs of both panels at once (a permalink, an option, a rerun) keep each panel's own, so which
// response arrives first never decides the state.
async function run(ctx, s, follow = true) {
  const C = ctx.C, my = ++s.token, ui = s.ui;
  s.text = ui.text.value; s.model = ui.model.value;
  s.target = (ctx.models.get(s.model) || {}).kind === "seq2seq" ? ui.target.value : "";
  const body = { text: s.text, model: s.model, hide_special: C.hide, merge_words: C.merge };
  if (s.target) body.target = s.target;
  ui.status.replaceChildren(el("span", { class: "spinner", "aria-hidden": "true" }), " analysing\u2026");
  ui.panel.dataset.state = "busy";
  try {
    const A = await analyze(body);
    if (my !== s.token) return;
    s.A = A;
    const other = otherSide(C, s);
    if (follow && C.link && other.A) Object.assign(s, { kind: other.kind, layer: other.layer, head: other.head }); // linked
    clamp(s);
    const r = A.resp, m = r.model;
    ui.status.textContent = `forward ${r.forward_ms.toFixed(1)} ms`;
    ui.summary.textContent = `${m.label} \u00b7 ${m.num_layers} layers \u00d7 ${m.num_heads} heads \u00b7 ${r.source.tokens.length} source tokens`
      + (r.target ? ` \u00b7 ${r.target.tokens.length} decoder tokens` : "")
      + (r.generated_text !== null && r.generated_text !== undefined ? ` \u00b7 greedy output: ${r.generated_text || "(empty)"}` : "");
    showError(ctx.errBox, null);
    await render(ctx);
  } catch (err) {
    if (my !== s.token) return;
    ui.status.textContent = "";
    ui.panel.dataset.state = "error";
    showError(ctx.errBox, err);
  }
}

async function render(ctx) {
  const C = ctx.C, seq = ++ctx.renderSeq;
  syncURL(ctx);
  const ready = sidesOf(C).filter((s) => s.A);
  let maps;
  try {
    maps = await Promise.all(ready.map(async (s) => (await drawnOf(C, s)).head(s.kind, s.layer, s.head)));
  } catch (err) {
    if (seq !== ctx.renderSeq) return;
    if (err.status === 404 && !C.rerun) { C.rerun = true; for (const s of sidesOf(C)) run(ctx, s, false); return; } // evicted: once
    showError(ctx.errBox, err);
    return;
  }
  C.rerun = false;
  if (seq !== ctx.renderSeq) return;
  ready.forEach((s, i) => { s.values = maps[i]; drawSide(s, ctx); });
  drawDiff(ctx.diff, ctx);
}

// What side s draws: its analysis, or the value-weighted one (lib/valueweight.js) when the toggle is on and
// the analysis has norms; s.weighted and s.vwNote (the caption, or why it is not weighted) say which.
async function drawnOf(C, s) {
  s.weighted = false;
  s.vwNote = "";
  if (!C.vw || C.merge) return s.A;
  const vw = await textNorms(s.A);
  if (!vw.available) { s.vwNote = `Not value-weighted: ${vw.reason}`; return s.A; }
  if (!s.W || s.W.base !== s.A) s.W = new WeightedAnalysis(s.A, vw);
  s.weighted = true;
  s.vwNote = textCaption(vw, s.kind, s.layer, s.head, s.A.block(s.kind).heads, s.A.resp.inline);
  return s.W;
}

function syncURL(ctx) {
  const fields = urlFields(ctx.C);
  writeState(fields);
  const single = $("tx-compare-link");
  if (single) single.href = singleHref(ctx.C, fields);
}

function toolbar(ctx) {
  const C = ctx.C, link = el("input", { type: "checkbox", id: "cmpt-link" }), hide = el("input", { type: "checkbox", id: "cmpt-hide" }),
    merge = el("input", { type: "checkbox", id: "cmpt-merge" });
  link.checked = C.link; hide.checked = C.hide; merge.checked = C.merge;
  const note = el("span", { class: "small cmp-linknote", id: "cmpt-linknote", role: "status" });
  const sayLinked = () => {
    note.textContent = C.link ? "(linked: A and B move together)" : "(not linked: A and B keep their own)";
  };
  sayLinked();
  link.addEventListener("change", () => {
    C.link = link.checked;
    sayLinked();
    if (C.link) select(ctx, C.sides.a, { kind: C.sides.a.kind, layer: C.sides.a.layer, head: C.sides.a.head }); else render(ctx);
  });
  const vw = valueToggle("cmpt-vw", (on) => { C.vw = on; render(ctx); }, C.vw);
  const syncVw = () => { // the choice is kept while merging disables it, and comes back with one column per token
    setToggle(vw, !C.merge, C.merge ? "Value weighting needs one column per token: turn off “merge word pieces”." : "");
    vw.querySelector("input").checked = C.vw && !C.merge;
  };
  syncVw();
  for (const [box, key] of [[hide, "hide"], [merge, "merge"]]) {
    box.addEventListener("change", () => { C[key] = box.checked; syncVw(); for (const s of sidesOf(C)) run(ctx, s, false); });
  }
  return el("div", { class: "panel cmp-toolbar" },
    el("label", { title: "Attention kind, layer and head move together in both panels (clamped to the smaller model)" }, link, " Link kind, layer and head"),
    note,
    el("label", { title: "Drop [CLS], [SEP], <s>, </s>, padding from both axes and renormalise every row (both panels)" }, hide, " hide special tokens"),
    el("label", { title: "Word pieces become words: attention summed over key pieces, averaged over query pieces (both panels)" }, merge, " merge word pieces"),
    vw);
}

export function mountCompare(pd = pageData()) {
  const models = new Map(pd.models.map((m) => [m.id, m]));
  const ctx = { C: readCompareState(pd, models), models, pd, errBox: $("tx-error"), renderSeq: 0, diff: diffPanel() };
  const C = ctx.C;
  Object.assign(ctx, { run: (s) => run(ctx, s), select: (s, change) => select(ctx, s, change),
    wireHover: hoverSync(C, () => [C.sides.a.ui.plot, C.sides.b.ui.plot, ctx.diff.plot]) });

  // hide the single view (everything of the page but the heading, the lead and this section)
  const host = $("tx-compare");
  for (const child of host.parentElement.children) {
    if (child === host || child === ctx.errBox || child.id === "api-queue" || child.tagName === "H1" || child.classList.contains("tx-lead") || child.tagName === "SCRIPT") continue;
    if (child.contains($("tx-compare-link"))) continue;
    child.classList.add("hidden");
  }
  host.classList.remove("hidden");
  const single = $("tx-compare-link");
  if (single) { single.textContent = "Single view"; single.title = "Back to one panel (panel A)"; }

  const note = el("p", { class: "small muted cmp-note" },
    "Each panel is one analysis drawn as the matrix view: row i is query token i, column j key token j, and each row is a "
    + "softmax distribution (Attention Is All You Need, Section 3.2.1). Each matrix is coloured from 0 to its own largest weight. "
    + "Type two sentences to compare inputs, pick two models, or two layers or heads of one model.");
  for (const s of sidesOf(C)) s.ui = sidePanel(s, ctx);
  host.replaceChildren(toolbar(ctx), note, el("div", { class: "cmp-text-panels" }, C.sides.a.ui.panel, C.sides.b.ui.panel, ctx.diff.panel));
  let resizeTimer = 0;
  window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(() => render(ctx), 200); });
  for (const s of sidesOf(C)) run(ctx, s, false);
}
