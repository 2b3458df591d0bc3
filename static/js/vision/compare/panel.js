// Side by side on /vision, one panel (A or B): its controls (image, upload, model, input size, view, layer,
// head), the overlay with its colour bar, and the map in words (a hidden top-k table and, for the panel in
// keyboard use, a live line). The panel reads and writes its side `s` of the compare state; what a change does
// is up to the handlers in `ctx` (compare/main.js).
import { announce, srTable, topK } from "../../lib/a11y.js";
import { showError } from "../../lib/api.js";
import { drawColorbar, fmtValue } from "../../lib/colormap.js";
import { el, fillSelect } from "../../lib/dom.js";
import { fromApi, patchWhere, toApi } from "../../lib/numbering.js";
import { renderOverlay } from "../overlay.js";
import { idxOf, VIEWS } from "./state.js";

const TOP_K = 5;

// Build side s's panel; ctx: {models, maxUploadMB, errBox, analyze(s, file?), select(s, change)}.
export function sidePanel(s, ctx) {
  const N = s.name.toUpperCase();
  const ui = {
    source: el("select", { "data-role": "source", "aria-label": `Image of panel ${N}` }),
    file: el("input", { type: "file", accept: "image/*", "data-role": "file", "aria-label": `Upload an image into panel ${N}` }),
    model: el("select", { "data-role": "model" }, ...ctx.models.map((m) => el("option", { value: m.id }, m.label))),
    res: el("select", { "data-role": "res", title: "Input side in pixels" }),
    layer: el("select", { "data-role": "layer" }), head: el("select", { "data-role": "head" }),
    views: Object.entries(VIEWS).map(([v, label]) => el("button", { type: "button", "data-view": v }, label)),
    overlay: el("div", { class: "vz-overlay cmp-overlay" }),
    cbMin: el("span", { class: "mono small" }), cbMax: el("span", { class: "mono small" }),
    cb: el("canvas", { width: 14, height: 256 }),
    title: el("h2", {}, `Panel ${N}`), status: el("span", { class: "status small" }),
    caption: el("p", { class: "vz-caption" }),
    colorbar: el("div", { class: "vz-colorbar cmp-colorbar", role: "img", "aria-label": "Colour scale" }),
    topk: el("div", {}),
  };
  ui.model.value = s.model;
  ui.panel = el("section", { class: "panel cmp-panel", id: `cmp-${s.name}`, "aria-label": `Panel ${N}` },
    el("div", { class: "vz-panelhead" }, ui.title, ui.status),
    el("div", { class: "cmp-controls" },
      el("label", {}, "Image ", ui.source), el("label", { class: "cmp-file" }, "or upload ", ui.file),
      el("label", {}, "Model ", ui.model), el("label", {}, "Input ", ui.res),
      el("div", { class: "seg", role: "group", "aria-label": "View" }, ...ui.views),
      el("label", {}, "Layer ", ui.layer), el("label", {}, "Head ", ui.head)),
    el("div", { class: "cmp-stage" }, ui.overlay, ui.colorbar),
    ui.caption, ui.topk);
  ui.colorbar.append(ui.cbMax, ui.cb, ui.cbMin);
  ui.source.addEventListener("change", () => {
    const [kind, value] = ui.source.value.split(":");
    s.sample = kind === "sample" ? value : ""; s.img = kind === "img" ? value : "";
    ctx.analyze(s);
  });
  ui.file.addEventListener("change", () => {
    const f = ui.file.files[0];
    ui.file.value = "";
    if (!f) return;
    if (f.size > ctx.maxUploadMB * 1048576) { showError(ctx.errBox, new Error(`"${f.name}" is larger than ${ctx.maxUploadMB} MB.`)); return; }
    ctx.analyze(s, f);
  });
  ui.model.addEventListener("change", () => {
    s.model = ui.model.value;
    const m = ctx.models.find((x) => x.id === s.model);
    s.res = m && m.resolutions.includes(s.res) ? s.res : 0;
    ctx.analyze(s);
  });
  ui.res.addEventListener("change", () => { s.res = Number(ui.res.value) || 0; ctx.analyze(s); });
  for (const b of ui.views) b.addEventListener("click", () => ctx.select(s, { view: b.dataset.view }));
  ui.layer.addEventListener("change", () => ctx.select(s, { layer: toApi(ui.layer.value) }));
  ui.head.addEventListener("change", () => ctx.select(s, { head: toApi(ui.head.value) }));
  return ui;
}

// Side s's controls to its state; `samples` is the server's sample list.
export function syncControls(s, models, samples) {
  const A = s.A, ui = s.ui;
  const opts = samples.map((x) => [`sample:${x.name}`, x.title]);
  if (s.img) opts.push([`img:${s.img}`, `Your upload (${s.img.slice(0, 8)}\u2026)`]);
  fillSelect(ui.source, opts, s.img ? `img:${s.img}` : `sample:${s.sample}`);
  ui.model.value = s.model;
  const m = models.find((x) => x.id === s.model);
  fillSelect(ui.res, (m && m.resolutions.length ? m.resolutions : [A.grid.resolution]).map((r) => [r, `${r} px`]), A.grid.resolution);
  const numbers = (count, word) => Array.from({ length: count }, (_, i) => [fromApi(i), `${word} ${fromApi(i)}`]);
  fillSelect(ui.layer, numbers(A.L, "layer"), fromApi(s.layer));
  fillSelect(ui.head, numbers(A.H, "head"), fromApi(s.head));
  ui.head.disabled = s.view !== "head";
  ui.layer.disabled = s.view === "rollout";
  for (const b of ui.views) b.setAttribute("aria-pressed", String(b.dataset.view === s.view));
}

// Draw map m (vision/data.js mapOf) into side s's panel. ctx: {C, live, onHover, onClick, onKey, onFocus, onBlur}.
export function drawSide(s, m, ctx) {
  const A = s.A, ui = s.ui, C = ctx.C;
  s.values = m;
  const { range } = renderOverlay(ui.overlay, {
    image: A.image, values: m.values, rows: A.grid.rows, cols: A.grid.cols, patchSize: A.grid.patch_size,
    resolution: A.grid.resolution, colormap: C.cmap, opacity: 0.6, smooth: false, clip: true, fade: true, gridlines: false,
    query: m.q, interactive: s.view !== "rollout",
    meta: { view: s.view, layer: s.layer, head: s.view === "mean" ? "mean" : s.head, label: `${m.label} \u00b7 ${m.where}` },
    hover: C.query && C.kbdSide === s && C.cursor ? idxOf(A, C.cursor) : null,
    onHover: (idx) => ctx.onHover(s, idx), onClick: (idx) => ctx.onClick(s, idx),
    onKey: (e) => ctx.onKey(s, e), onFocus: () => ctx.onFocus(s), onBlur: () => ctx.onBlur(s),
    describedBy: `cmp-${s.name}-topk`,
  });
  ui.colorbar.setAttribute("aria-label", `Colour scale (${C.cmap}): ${fmtValue(range.min)} at the bottom to ${
    range.clipped ? "at least " : ""}${fmtValue(range.max)} at the top`);
  // the map in words: its TOP_K brightest patches (hidden table), and a live line for the panel in keyboard use
  const best = topK(m.values, TOP_K), where = (i) => patchWhere(i, A.grid.cols), N = s.name.toUpperCase();
  srTable(ui.topk, {
    id: `cmp-${s.name}-topk`,
    caption: `Panel ${N}, ${m.where}, ${m.what}: the ${best.length} patches with the highest values, of ${A.P}`,
    headers: ["Rank", "Patch", "Value"], rows: best.map((i, r) => [String(r + 1), where(i), fmtValue(m.values[i])]),
  });
  if (C.kbdSide === s) {
    announce(ctx.live, `Panel ${N}, ${m.where}, ${m.what}${C.query ? " (pinned)" : ""}. Highest: ${
      best.slice(0, 3).map((i) => `${where(i)} ${fmtValue(m.values[i])}`).join("; ")}.`);
  }
  ui.cbMin.textContent = fmtValue(range.min);
  ui.cbMax.textContent = `${range.clipped ? "\u2265 " : ""}${fmtValue(range.max)}`;
  drawColorbar(ui.cb.getContext("2d"), C.cmap, 0, 0, ui.cb.width, ui.cb.height, null, { vertical: true });
  ui.title.textContent = `${N} \u00b7 ${m.where}`;
  ui.caption.textContent = `${m.caption} Colours: this panel's own min\u2013max, top 2% saturated.`;
  ui.panel.dataset.state = "ready";
}
