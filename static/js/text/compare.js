// Side by side on /text (issue 8, section 5; LIT's habit): two panels, A and B, each one analysis (text, model and,
// for an encoder-decoder, target) with its own attention kind, layer and head, drawn as the matrix view. "Link"
// moves kind, layer and head together; hovering a cell in one matrix shows the same cell in the other when the
// tokens match. Where both panels have exactly the same query and key tokens, a third panel draws B − A on a
// diverging scale centred at 0, with its range stated.
//
// Only the existing API: /api/text/analyze for each panel, then /head (or the inline maps) through data.js. State
// lives in the permalink (lib/urlstate.js): compare=1, link, hide, merge and per side a.text, a.model, a.target,
// a.kind, a.layer, a.head (and b.*); layers and heads count from 1 there and on screen, from 0 in the API. The
// single view is untouched when compare is off: main.js only mounts this module on compare=1.
import { pageData, showError } from "../lib/api.js";
import { $, el, escapeHTML, fillSelect } from "../lib/dom.js";
import { downloadCSV, downloadJSON, exportButtons, plotlyExports } from "../lib/export.js";
import { DIVERGING } from "../lib/plot.js";
import { readState, writeState } from "../lib/urlstate.js";
import { analyze, fromApi, kindLabel, NUMBERING, toApi } from "./data.js";

const SIDES = ["a", "b"];
const URL_TEXT_MAX = 300; // longer texts are not put in the URL (as on the single view)
const EXAMPLE = "The animal didn't cross the street because it was too tired.";
const PLOT_CONFIG = { displaylogo: false, responsive: false, modeBarButtonsToRemove: ["select2d", "lasso2d"] };

// ---- entering and leaving ----------------------------------------------------------------------------------
// The compare permalink from the single view's URL: A = what the single view shows, B = the same text, model,
// kind and layer with the next head (two heads of one layer side by side, unlinked).
export function compareHref(search) {
  const p = new URLSearchParams(search), q = new URLSearchParams({ compare: "1", link: "0" });
  for (const k of ["hide", "merge"]) if (p.get(k)) q.set(k, p.get(k));
  const head = p.get("head") || "1";
  for (const side of SIDES) {
    for (const k of ["text", "model", "target", "kind", "layer"]) if (p.get(k)) q.set(`${side}.${k}`, p.get(k));
    q.set(`${side}.head`, side === "a" ? head : head === "mean" ? "1" : String(Number(head) + 1));
  }
  return `/text?${q}`;
}

// The "Side by side" link of the single view: its href follows the current permalink when it is used.
export function wireCompareLink(link) {
  if (!link) return;
  const update = () => { link.href = compareHref(location.search); };
  for (const ev of ["mouseenter", "focus", "click"]) link.addEventListener(ev, update);
}

// ---- mounting ------------------------------------------------------------------------------------------------
export function mountCompare(pd = pageData()) {
  const models = new Map(pd.models.map((m) => [m.id, m]));
  const defaults = { link: false, hide: false, merge: false };
  for (const s of SIDES) Object.assign(defaults, { [`${s}.text`]: "", [`${s}.model`]: pd.default_model, [`${s}.target`]: "",
    [`${s}.kind`]: "", [`${s}.layer`]: 1, [`${s}.head`]: "1" });
  const u = readState(defaults);
  const C = { link: u.link, hide: u.hide, merge: u.merge, sides: {} };
  for (const name of SIDES) {
    C.sides[name] = {
      name, text: u[`${name}.text`] || u["a.text"] || EXAMPLE,
      model: models.has(u[`${name}.model`]) ? u[`${name}.model`] : pd.default_model, target: u[`${name}.target`],
      kind: u[`${name}.kind`], layer: toApi(u[`${name}.layer`]), head: toApi(u[`${name}.head`]),
      A: null, values: null, token: 0, ui: null,
    };
  }

  // hide the single view (everything of the page but the heading, the lead and this section)
  const host = $("tx-compare"), errBox = $("tx-error");
  for (const child of host.parentElement.children) {
    if (child === host || child === errBox || child.id === "api-queue" || child.tagName === "H1" || child.classList.contains("tx-lead") || child.tagName === "SCRIPT") continue;
    if (child.contains($("tx-compare-link"))) continue;
    child.classList.add("hidden");
  }
  host.classList.remove("hidden");
  const single = $("tx-compare-link");
  if (single) { single.textContent = "Single view"; single.title = "Back to one panel (panel A)"; }

  const link = el("input", { type: "checkbox", id: "cmpt-link" }), hide = el("input", { type: "checkbox", id: "cmpt-hide" }),
    merge = el("input", { type: "checkbox", id: "cmpt-merge" });
  link.checked = C.link; hide.checked = C.hide; merge.checked = C.merge;
  const toolbar = el("div", { class: "panel cmp-toolbar" },
    el("label", { title: "Attention kind, layer and head move together in both panels (clamped to the smaller model)" }, link, " Link kind, layer and head"),
    el("label", { title: "Drop [CLS], [SEP], <s>, </s>, padding from both axes and renormalise every row (both panels)" }, hide, " hide special tokens"),
    el("label", { title: "Word pieces become words: attention summed over key pieces, averaged over query pieces (both panels)" }, merge, " merge word pieces"));
  const note = el("p", { class: "small muted cmp-note" },
    "Each panel is one analysis drawn as the matrix view: row i is query token i, column j key token j, and each row is a "
    + "softmax distribution (Attention Is All You Need, Section 3.2.1). Each matrix is coloured from 0 to its own largest weight. "
    + "Type two sentences to compare inputs, pick two models, or two layers or heads of one model.");
  const diff = { plot: el("div", { class: "cmp-plot", id: "cmpt-diff-plot" }), caption: el("p", { class: "small muted", id: "cmpt-diff-caption" }),
    exports: el("span", { id: "cmpt-diff-export" }), values: null };
  const diffPanel = el("section", { class: "panel cmp-panel cmp-diffpanel", id: "cmpt-diff", "aria-labelledby": "cmpt-diff-title" },
    el("div", { class: "vz-panelhead" }, el("h2", { id: "cmpt-diff-title" }, "Difference B \u2212 A"), diff.exports),
    diff.caption, diff.plot);
  for (const s of Object.values(C.sides)) s.ui = sidePanel(s);
  host.replaceChildren(toolbar, note, el("div", { class: "cmp-text-panels" }, C.sides.a.ui.panel, C.sides.b.ui.panel, diffPanel));

  function sidePanel(s) {
    const N = s.name.toUpperCase();
    const ui = {
      text: el("textarea", { rows: 2, spellcheck: "false", "data-role": "text", "aria-label": `Text of panel ${N}`, maxlength: pd.max_text_chars }),
      model: el("select", { "data-role": "model", "aria-label": `Model of panel ${N}` }),
      target: el("input", { type: "text", "data-role": "target", placeholder: "empty: the model's greedy output", "aria-label": `Target of panel ${N}` }),
      run: el("button", { type: "button", class: "primary", "data-role": "run" }, "Analyse"),
      kind: el("select", { "data-role": "kind" }), layer: el("select", { "data-role": "layer" }), head: el("select", { "data-role": "head" }),
      title: el("h2", {}, `Panel ${N}`), status: el("span", { class: "status small" }), summary: el("p", { class: "small muted", "data-role": "summary" }),
      plot: el("div", { class: "cmp-plot", id: `cmpt-${s.name}-plot` }), exports: el("span", {}),
    };
    fillSelect(ui.model, pd.models.map((m) => [m.id, m.label]), s.model);
    ui.text.value = s.text; ui.target.value = s.target;
    ui.targetWrap = el("label", {}, "Target ", ui.target);
    ui.panel = el("section", { class: "panel cmp-panel", id: `cmpt-${s.name}`, "aria-label": `Panel ${N}` },
      el("div", { class: "vz-panelhead" }, ui.title, ui.status),
      ui.text,
      el("div", { class: "cmp-controls" }, el("label", {}, "Model ", ui.model), ui.targetWrap, ui.run),
      el("div", { class: "cmp-controls" }, el("label", {}, "Attention ", ui.kind), el("label", {}, "Layer ", ui.layer), el("label", {}, "Head ", ui.head), ui.exports),
      ui.summary, ui.plot);
    const kindOf = () => (models.get(ui.model.value) || {}).kind;
    ui.targetWrap.classList.toggle("hidden", kindOf() !== "seq2seq");
    ui.run.addEventListener("click", () => run(s));
    ui.text.addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); run(s); } });
    ui.model.addEventListener("change", () => { ui.targetWrap.classList.toggle("hidden", kindOf() !== "seq2seq"); run(s); });
    ui.kind.addEventListener("change", () => select(s, { kind: ui.kind.value }));
    ui.layer.addEventListener("change", () => select(s, { layer: toApi(ui.layer.value) }));
    ui.head.addEventListener("change", () => select(s, { head: toApi(ui.head.value) }));
    return ui;
  }

  // Keep a side's kind / layer / head inside its analysis.
  function clamp(s) {
    const kinds = s.A.kinds();
    if (!kinds.includes(s.kind)) s.kind = kinds[0];
    const b = s.A.block(s.kind);
    s.layer = Math.min(Math.max(0, Number(s.layer) || 0), b.layers - 1);
    if (s.head !== "mean") s.head = Math.min(Math.max(0, Number(s.head) || 0), b.heads - 1);
  }

  function select(s, change) {
    for (const t of C.link ? SIDES.map((n) => C.sides[n]) : [s]) {
      Object.assign(t, change);
      if (t.A) clamp(t);
    }
    render();
  }

  async function run(s) {
    const my = ++s.token, ui = s.ui;
    s.text = ui.text.value; s.model = ui.model.value;
    s.target = (models.get(s.model) || {}).kind === "seq2seq" ? ui.target.value : "";
    const body = { text: s.text, model: s.model, hide_special: C.hide, merge_words: C.merge };
    if (s.target) body.target = s.target;
    ui.status.replaceChildren(el("span", { class: "spinner", "aria-hidden": "true" }), " analysing\u2026");
    ui.panel.dataset.state = "busy";
    try {
      const A = await analyze(body);
      if (my !== s.token) return;
      s.A = A;
      const other = C.sides[s.name === "a" ? "b" : "a"];
      if (C.link && other.A) Object.assign(s, { kind: other.kind, layer: other.layer, head: other.head }); // linked: follow
      clamp(s);
      const r = A.resp, m = r.model;
      ui.status.textContent = `forward ${r.forward_ms.toFixed(1)} ms`;
      ui.summary.textContent = `${m.label} \u00b7 ${m.num_layers} layers \u00d7 ${m.num_heads} heads \u00b7 ${r.source.tokens.length} source tokens`
        + (r.target ? ` \u00b7 ${r.target.tokens.length} decoder tokens` : "")
        + (r.generated_text !== null && r.generated_text !== undefined ? ` \u00b7 greedy output: ${r.generated_text || "(empty)"}` : "");
      showError(errBox, null);
      await render();
    } catch (err) {
      if (my !== s.token) return;
      ui.status.textContent = "";
      ui.panel.dataset.state = "error";
      showError(errBox, err);
    }
  }

  // ---- drawing -------------------------------------------------------------------------------------------------
  let renderSeq = 0;
  async function render() {
    const seq = ++renderSeq;
    syncURL();
    const ready = SIDES.map((n) => C.sides[n]).filter((s) => s.A);
    let maps;
    try {
      maps = await Promise.all(ready.map((s) => s.A.head(s.kind, s.layer, s.head)));
    } catch (err) {
      if (seq !== renderSeq) return;
      if (err.status === 404 && !C.rerun) { C.rerun = true; for (const n of SIDES) run(C.sides[n]); return; } // evicted: once
      showError(errBox, err);
      return;
    }
    C.rerun = false;
    if (seq !== renderSeq) return;
    ready.forEach((s, i) => { s.values = maps[i]; drawSide(s); });
    drawDiff();
  }

  const where = (s) => `${kindLabel(s.kind, s.A.resp.model.kind)} \u00b7 layer ${fromApi(s.layer)} \u00b7 ${s.head === "mean" ? "mean of heads" : `head ${fromApi(s.head)}`}`;

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

  function heatLayout(s, title, width) {
    const q = s.A.queryAxis(s.kind).labels, k = s.A.keyAxis(s.kind).labels, b = s.A.block(s.kind);
    const cell = Math.max(3, Math.min(30, Math.floor((width - 150) / k.length), Math.floor(460 / q.length)));
    const ticks = (labels) => ({ tickvals: labels.map((_, i) => i + 1), ticktext: labels.map(escapeHTML) });
    const every = (labels) => (cell >= 11 ? ticks(labels) : {}); // a label per cell when it fits, else plotly's numbers
    return {
      title: { text: escapeHTML(title), font: { size: 13 }, x: 0, xanchor: "left" },
      width, height: 160 + cell * q.length, margin: { l: 110, r: 16, t: 40, b: 100 }, font: { size: 11 },
      xaxis: { ...every(k), title: { text: `keys (${b.key_side})` }, tickangle: -60, showgrid: false, zeroline: false },
      yaxis: { ...every(q), title: { text: `queries (${b.query_side})` }, autorange: "reversed", showgrid: false, zeroline: false },
      plot_bgcolor: "#eceff3", paper_bgcolor: "#fff",
    };
  }

  function hoverText(s) {
    const q = s.A.queryAxis(s.kind).labels.map(escapeHTML), k = s.A.keyAxis(s.kind).labels.map(escapeHTML);
    return q.map((ql, i) => k.map((kl, j) => `${ql} [${i + 1}] \u2192 ${kl} [${j + 1}]`));
  }

  function drawSide(s) {
    syncControls(s);
    const ui = s.ui, A = s.A, nk = A.keyAxis(s.kind).labels.length;
    let zmax = 0;
    const z = zRows(s, s.values, (v) => { if (v > zmax) zmax = v; return v; });
    const trace = { type: "heatmap", z, x: A.keyAxis(s.kind).labels.map((_, j) => j + 1), y: A.queryAxis(s.kind).labels.map((_, i) => i + 1),
      colorscale: "Viridis", zmin: 0, zmax: zmax || 1, xgap: nk <= 48 ? 1 : 0, ygap: nk <= 48 ? 1 : 0, text: hoverText(s),
      hovertemplate: "%{text}<br>weight %{z:.4f}<extra></extra>", colorbar: { title: { text: "weight", side: "right" }, thickness: 10 } };
    const width = Math.max(360, ui.panel.clientWidth - 28);
    ui.title.textContent = `${s.name.toUpperCase()} \u00b7 ${where(s)}`;
    Plotly.react(ui.plot, [trace], heatLayout(s, `${A.resp.model.label} \u00b7 ${where(s)}`, width), PLOT_CONFIG);
    wireHover(ui.plot);
    ui.plot.dataset.state = "ready";
    ui.panel.dataset.state = "ready";
    const name = `compare_${s.name}_${s.kind}_layer${fromApi(s.layer)}_${s.head === "mean" ? "mean" : `head${fromApi(s.head)}`}`;
    ui.exports.replaceChildren(exportButtons(plotlyExports(ui.plot, name, () => table(s.name.toUpperCase(), [s], s.values)), `Export panel ${s.name.toUpperCase()}`));
  }

  const sameTokens = (a, b) => {
    const eq = (x, y) => x.length === y.length && x.every((t, i) => t === y[i]);
    return eq(a.A.queryAxis(a.kind).labels, b.A.queryAxis(b.kind).labels) && eq(a.A.keyAxis(a.kind).labels, b.A.keyAxis(b.kind).labels);
  };

  function drawDiff() {
    const a = C.sides.a, b = C.sides.b;
    diff.values = null;
    diffPanel.dataset.state = "none";
    diff.plot.classList.toggle("hidden", !(a.values && b.values && sameTokens(a, b)));
    if (!a.values || !b.values) { diff.caption.textContent = "Waiting for both panels\u2026"; return; }
    if (!sameTokens(a, b)) {
      Plotly.purge(diff.plot); // drops plotly's listeners too: wire the hover again when it is drawn next
      delete diff.plot.dataset.hoverWired;
      diff.plot.replaceChildren();
      diff.exports.replaceChildren();
      const n = (s) => `${s.A.queryAxis(s.kind).labels.length} query \u00d7 ${s.A.keyAxis(s.kind).labels.length} key tokens`;
      diff.caption.textContent = `No difference matrix: a cell-by-cell difference needs the same query and key tokens in both panels `
        + `(A has ${n(a)}, B has ${n(b)}${a.A.resp.model.id !== b.A.resp.model.id ? "; the two models may also split words differently" : ""}). `
        + "Compare the two matrices by eye, or give both panels the same text and a model with the same tokenizer.";
      return;
    }
    const nq = a.values.length / a.A.keyAxis(a.kind).labels.length, nk = a.A.keyAxis(a.kind).labels.length;
    const d = new Float32Array(nq * nk); // (nq, nk): B − A per cell
    let m = 0, arg = 0;
    for (let i = 0; i < d.length; i++) { d[i] = b.values[i] - a.values[i]; if (Math.abs(d[i]) > m) { m = Math.abs(d[i]); arg = i; } }
    diff.values = d;
    const scale = m > 0 ? m : 1, causal = a.A.block(a.kind).causal || b.A.block(b.kind).causal;
    const z = Array.from({ length: nq }, (_, i) => Array.from({ length: nk }, (_, j) =>
      (causal && (a.A.isFuture(a.kind, i, j) || b.A.isFuture(b.kind, i, j)) ? null : d[i * nk + j])));
    const trace = { type: "heatmap", z, x: Array.from({ length: nk }, (_, j) => j + 1), y: Array.from({ length: nq }, (_, i) => i + 1),
      colorscale: DIVERGING, zmin: -scale, zmax: scale, zmid: 0, xgap: nk <= 48 ? 1 : 0, ygap: nk <= 48 ? 1 : 0, text: hoverText(a),
      hovertemplate: "%{text}<br>B \u2212 A %{z:.4f}<extra></extra>", colorbar: { title: { text: "B \u2212 A", side: "right" }, thickness: 10 } };
    const width = Math.max(420, Math.min(diffPanel.clientWidth - 28, 900));
    Plotly.react(diff.plot, [trace], heatLayout(a, `B \u2212 A \u00b7 B: ${where(b)} \u2212 A: ${where(a)}`, width), PLOT_CONFIG);
    wireHover(diff.plot);
    Object.assign(diff.plot.dataset, { state: "ready", absmax: String(m), nq, nk });
    diffPanel.dataset.state = "ready";
    const ql = a.A.queryAxis(a.kind).labels, kl = a.A.keyAxis(a.kind).labels, i0 = Math.floor(arg / nk), j0 = arg % nk;
    diff.caption.textContent = m === 0
      ? "B \u2212 A is exactly 0 in every cell: the two panels show the same weights (white everywhere)."
      : `Colour scale centred at 0 and symmetric, from \u2212${fmtNum(scale)} (blue: A attends more) to +${fmtNum(scale)} `
        + `(red: B attends more). The largest change is ${fmtNum(d[arg])}, query \u201c${ql[i0]}\u201d [${i0 + 1}] \u2192 key \u201c${kl[j0]}\u201d [${j0 + 1}]. `
        + "Each row of A and of B sums to 1, so each row of B \u2212 A sums to 0: attention one panel gives a key, it takes from others.";
    diff.exports.replaceChildren(exportButtons(plotlyExports(diff.plot, `compare_diff_${a.kind}`, () => table("B_minus_A", [a, b], d)), "Export the difference"));
  }

  const fmtNum = (v) => (Math.abs(v) >= 1e-3 ? String(Number(v.toPrecision(3))) : v.toExponential(2).replace("e-", "e\u2212"));

  function table(column, sides, values) {
    const s = sides[0], q = s.A.queryAxis(s.kind).labels, k = s.A.keyAxis(s.kind).labels, rows = [];
    for (let i = 0; i < q.length; i++) for (let j = 0; j < k.length; j++) rows.push([i + 1, q[i], j + 1, k[j], values[i * k.length + j]]);
    const meta = { numbering: NUMBERING, options: { hide_special: C.hide, merge_words: C.merge } };
    for (const t of SIDES.map((n) => C.sides[n]).filter((x) => sides.includes(x))) {
      meta[t.name.toUpperCase()] = { model: t.A.resp.model.id, text: t.text, target: t.target || null, kind: t.kind, layer: fromApi(t.layer), head: fromApi(t.head) };
    }
    return { header: ["query_index", "query", "key_index", "key", column], rows, meta };
  }

  // Synchronised hover: the cell under the pointer in one matrix is shown in the others with the same tokens.
  let echoing = false;
  function wireHover(div) {
    if (div.dataset.hoverWired) return;
    div.dataset.hoverWired = "1";
    div.on("plotly_hover", (ev) => {
      if (echoing || !ev.points || !ev.points.length) return;
      const p = ev.points[0], a = C.sides.a, b = C.sides.b;
      if (!a.values || !b.values || !sameTokens(a, b)) return;
      echoing = true;
      try {
        for (const other of [a.ui.plot, b.ui.plot, diff.plot]) if (other !== div && other.data) Plotly.Fx.hover(other, { xval: p.x, yval: p.y });
      } finally { echoing = false; }
    });
    div.on("plotly_unhover", () => {
      if (echoing) return;
      for (const other of [C.sides.a.ui.plot, C.sides.b.ui.plot, diff.plot]) if (other !== div && other.data) Plotly.Fx.unhover(other);
    });
  }

  // ---- URL -------------------------------------------------------------------------------------------------------
  function syncURL() {
    const out = { compare: 1, link: C.link, hide: C.hide, merge: C.merge };
    for (const s of SIDES.map((n) => C.sides[n])) {
      Object.assign(out, { [`${s.name}.text`]: s.text.length <= URL_TEXT_MAX ? s.text : "", [`${s.name}.model`]: s.model,
        [`${s.name}.target`]: s.target && s.target.length <= URL_TEXT_MAX ? s.target : "", [`${s.name}.kind`]: s.kind,
        [`${s.name}.layer`]: fromApi(s.layer), [`${s.name}.head`]: fromApi(s.head) });
    }
    writeState(out);
    if (single) {
      const a = C.sides.a, p = new URLSearchParams();
      for (const [k, v] of Object.entries({ text: out["a.text"], model: a.model, target: out["a.target"], kind: a.kind, layer: fromApi(a.layer),
        head: fromApi(a.head), view: "matrix", hide: C.hide ? "1" : "", merge: C.merge ? "1" : "" })) if (v !== "" && v !== undefined) p.set(k, v);
      single.href = `/text?${p}`;
    }
  }

  link.addEventListener("change", () => { C.link = link.checked; if (C.link) select(C.sides.a, { kind: C.sides.a.kind, layer: C.sides.a.layer, head: C.sides.a.head }); else render(); });
  for (const [box, key] of [[hide, "hide"], [merge, "merge"]]) {
    box.addEventListener("change", () => { C[key] = box.checked; for (const n of SIDES) run(C.sides[n]); });
  }
  let resizeTimer = 0;
  window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(render, 200); });

  for (const n of SIDES) run(C.sides[n]);
}
