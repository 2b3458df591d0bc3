// /influence section "ablation" (contract: docs/influence.md): click heads on a layers × heads grid to cut
// them together (POST /api/influence/ablate), and read how the model's output changes against the intact run.
import { apiPost, isCancelled, showError } from "../lib/api.js";
import { paintGrid } from "../lib/colormap.js";
import { el } from "../lib/dom.js";
import { decodeTyped } from "../lib/typed.js";
import { blockName, fmt, headsOrWhyNot, signed } from "./heads.js";

function gridTable(block, kind, layers, heads, cut, onToggle) {
  const rows = [];
  for (let l = 0; l < layers; l++) {
    const cells = [];
    for (let h = 0; h < heads; h++) {
      const key = `${block}|${l}|${h}`;
      const b = el("button", {
        type: "button", class: "inf-head", "aria-pressed": String(cut.has(key)),
        "aria-label": `${blockName(block, kind)}, layer ${l + 1}, head ${h + 1}`, dataset: { key },
      }, String(h + 1));
      b.addEventListener("click", () => onToggle([key]));
      cells.push(el("td", {}, b));
    }
    const all = el("button", { type: "button", class: "inf-layer", "aria-label": `Cut or restore every head of layer ${l + 1} (${blockName(block, kind)})` }, "all");
    all.addEventListener("click", () => onToggle([...Array(heads).keys()].map((h) => `${block}|${l}|${h}`), true));
    rows.push(el("tr", {}, el("th", { scope: "row" }, `Layer ${l + 1}`), cells, el("td", {}, all)));
  }
  return el("table", { class: "inf-heads" },
    el("caption", {}, blockName(block, kind)),
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Layer"),
      [...Array(heads).keys()].map((h) => el("th", { scope: "col" }, `H${h + 1}`)), el("th", { scope: "col" }, "Row"))),
    el("tbody", {}, rows));
}

function outcome(r, ctx) {
  const rows = [];
  if (r.kind === "dates") {
    const shown = (d) => (d === "" ? "(empty)" : d);
    rows.push(["Decoded date", shown(r.decoded_intact), shown(r.decoded_ablated), r.decoded_intact === r.decoded_ablated ? "same" : "changed"]);
    rows.push([`log p(“${r.answer}” + </s>)`, fmt(r.logp_intact), fmt(r.logp_ablated), signed(r.logp_ablated - r.logp_intact)]);
  } else if (r.kind === "pair") {
    rows.push(["Cosine of the pair's embeddings", fmt(r.cos_intact, 4), fmt(r.cos_ablated, 4), signed(r.cos_ablated - r.cos_intact, 4)]);
  } else {
    rows.push(["[CLS] feature: cosine to the intact run", "1", fmt(r.cls_cos, 4), signed(r.cls_cos - 1, 4)]);
    rows.push(["Patch features: mean cosine to the intact run", "1", fmt(r.patch_cos, 4), signed(r.patch_cos - 1, 4)]);
  }
  const table = el("table", { class: "inf-table inf-outcome", "data-role": "outcome" },
    el("caption", {}, r.heads.length ? `${r.heads.length} head${r.heads.length === 1 ? "" : "s"} ${r.mode}-ablated` : "No head ablated: both columns are the intact model"),
    el("thead", {}, el("tr", {}, ["Output", "Intact", "Ablated", "Change"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows.map(([a, ...rest]) => el("tr", {}, el("th", { scope: "row" }, a), rest.map((c) => el("td", {}, c))))));
  const parts = [table];
  if (r.patch_cos_map) {
    const { data, shape } = decodeTyped(r.patch_cos_map);
    const [rows2, cols] = shape;
    let min = 1;
    for (const v of data) min = Math.min(min, v);
    const small = paintGrid(data, rows2, cols, { colormap: "viridis", min: Math.min(min, 0.999), max: 1 });
    const canvas = el("canvas", { width: 180, height: Math.round(180 * rows2 / cols), role: "img",
      "aria-label": `Each patch feature's cosine to the intact run, ${rows2} × ${cols} patches; lowest ${fmt(min, 4)}` });
    const c2 = canvas.getContext("2d");
    c2.imageSmoothingEnabled = false;
    c2.drawImage(small, 0, 0, canvas.width, canvas.height);
    if (ctx.imageUrl) {
      parts.push(el("figure", { class: "inf-map" }, el("img", { src: ctx.imageUrl, width: 180, height: Math.round(180 * rows2 / cols), alt: "The analysed photo, as the model sees it" }),
        el("figcaption", {}, "The analysed photo (model input).")));
    }
    parts.push(el("figure", { class: "inf-map" }, canvas,
      el("figcaption", {}, `Per patch: cosine of the ablated to the intact feature (viridis, ${fmt(Math.min(min, 0.999), 3)} → 1; yellow = unchanged).`)));
  }
  return el("div", { class: "inf-row" }, parts);
}

export async function mount(root, ctx) {
  const info = await headsOrWhyNot(root, ctx);
  if (!info) return;
  const body = root.querySelector('[data-role="body"]');
  const cut = new Set();
  let ctl = null;
  const mode = el("select", { "aria-label": "Ablation mode" },
    el("option", { value: "zero" }, "zero (the head's output → 0)"),
    el("option", { value: "mean" }, "mean (→ its mean over the evaluation set)"));
  const clear = el("button", { type: "button" }, "Restore all heads");
  const out = el("div", { "aria-live": "polite", "data-role": "ablation-output" });
  const error = el("div", { class: "error", role: "alert" });
  const grids = el("div", { class: "inf-row" });

  async function run() {
    ctl?.abort();
    ctl = new AbortController();
    const mine = ctl;
    showError(error, null);
    const heads = [...cut].map((k) => { const [block, layer, head] = k.split("|"); return { block, layer: +layer, head: +head }; });
    const req = { family: ctx.family, model: ctx.model, heads, mode: mode.value };
    if (ctx.family === "vision") req.analysis_id = ctx.analysisId;
    else { req.text = ctx.text; if (info.kind === "pair") req.pair = ctx.pair; }
    out.dataset.state = "loading";
    try {
      const r = await apiPost("/api/influence/ablate", req, { signal: mine.signal });
      if (mine !== ctl || ctx.signal.aborted) return;
      out.replaceChildren(outcome(r, ctx));
      out.dataset.state = "ready";
      out.dataset.heads = String(heads.length);
    } catch (err) {
      if (!isCancelled(err)) showError(error, err);
    }
  }
  function draw() {
    grids.replaceChildren(...info.blocks.map((b) => gridTable(b.block, info.kind, b.layers, b.heads, cut, toggle)));
  }
  function toggle(keys, row = false) {
    const on = row ? !keys.every((k) => cut.has(k)) : !cut.has(keys[0]);
    for (const k of keys) (on ? cut.add(k) : cut.delete(k));
    const focused = document.activeElement?.dataset?.key;
    draw();
    if (focused) grids.querySelector(`[data-key="${focused}"]`)?.focus();
    run();
  }
  clear.addEventListener("click", () => { cut.clear(); draw(); run(); });
  mode.addEventListener("change", run);
  body.replaceChildren(
    el("div", { class: "inf-controls" }, el("label", {}, "Mode ", mode), clear,
      el("span", { class: "small muted" }, `Mean-ablation averages over ${info.reference}.`)),
    grids, error, out);
  draw();
  await run();
}
