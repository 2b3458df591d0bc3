// Side by side on /vision (issue 8, section 5; LIT's habit): two panels, A and B, each one analysis (image, model,
// input resolution) with its own view (head, mean of heads, rollout), layer and head. "Link" moves layer, head and
// view together; a patch hovered or clicked in any panel is probed in both. Where the two patch grids match, a third
// panel draws the difference B − A on a diverging scale centred at 0, with its range stated.
//
// Everything comes from the existing API (two analyses, /api/vision/analyze and /attention); no new route. State
// lives in the permalink (lib/urlstate.js): compare=1, link, cmap, qrow/qcol (the pinned query in A's grid) and per
// side a.model, a.res, a.sample | a.img, a.view, a.layer, a.head (and b.*). URLs and the screen count from 1, the
// API from 0. The single-view page is untouched when compare is off: main.js only mounts this module on compare=1.
import { announce, gridStep, srTable, topK } from "../lib/a11y.js";
import { apiGet, apiPost, isCancelled, showError } from "../lib/api.js";
import { COLORMAPS, drawColorbar, fmtValue } from "../lib/colormap.js";
import { $, el, fillSelect } from "../lib/dom.js";
import { downloadCanvas, downloadCSV, downloadJSON, exportButtons } from "../lib/export.js";
import { DIVERGING } from "../lib/plot.js";
import { decodeTyped } from "../lib/typed.js";
import { readState, writeState } from "../lib/urlstate.js";
import { checksum, renderOverlay } from "./overlay.js";

const SIDES = ["a", "b"];
const VIEWS = { head: "Head", mean: "Mean of heads", rollout: "Rollout" };
const KEYS = ["model", "res", "sample", "img", "view", "layer", "head"];
const HOVER_MS = 70, TOP_K = 5;
const INDEXING = "layers, heads, patches, rows and columns count from 1, as on screen (the API counts from 0)";

// ---- entering and leaving ----------------------------------------------------------------------------------
// The compare permalink built from the single view's URL: A = what the single view shows, B = the same image
// and selection under the next model in the list (two models is LIT's default comparison).
export function compareHref(search, models) {
  const p = new URLSearchParams(search), q = new URLSearchParams({ compare: "1", link: "1" });
  const ids = models.map((m) => m.id);
  const a = ids.includes(p.get("model")) ? p.get("model") : ids[0];
  const b = ids.length > 1 ? ids[(ids.indexOf(a) + 1) % ids.length] : a;
  for (const [side, model] of [["a", a], ["b", b]]) {
    q.set(`${side}.model`, model);
    for (const k of ["sample", "img", "view", "layer", "head"]) if (p.get(k)) q.set(`${side}.${k}`, p.get(k));
    if (side === "a" && p.get("res")) q.set("a.res", p.get("res"));
  }
  if (p.get("cmap")) q.set("cmap", p.get("cmap"));
  return `/vision?${q}`;
}

// The "Side by side" link of the single view: its href follows the current permalink when it is used.
export function wireCompareLink(link, models) {
  const update = () => { link.href = compareHref(location.search, models); };
  for (const ev of ["mouseenter", "focus", "click"]) link.addEventListener(ev, update);
}

// ---- state ---------------------------------------------------------------------------------------------------
function readCompareState(PD) {
  const defaults = { link: true, cmap: "viridis", qrow: 0, qcol: 0 };
  for (const s of SIDES) Object.assign(defaults, { [`${s}.model`]: PD.default_model, [`${s}.res`]: 0, [`${s}.sample`]: "",
    [`${s}.img`]: "", [`${s}.view`]: "head", [`${s}.layer`]: 0, [`${s}.head`]: 1 });
  const u = readState(defaults);
  const ids = (PD.models || []).map((m) => m.id);
  const sides = {};
  for (const s of SIDES) {
    const img = /^[0-9a-f]{8,64}$/.test(u[`${s}.img`]) ? u[`${s}.img`] : "";
    sides[s] = {
      name: s,
      model: ids.includes(u[`${s}.model`]) ? u[`${s}.model`] : PD.default_model,
      res: u[`${s}.res`] || 0,
      img, sample: img ? "" : u[`${s}.sample`],
      view: VIEWS[u[`${s}.view`]] ? u[`${s}.view`] : "head",
      layer: u[`${s}.layer`] > 0 ? u[`${s}.layer`] - 1 : null, // 0-based; null = last layer once known
      head: Math.max(0, (u[`${s}.head`] || 1) - 1),
      A: null, values: null, token: 0, ctl: null, ui: null,
    };
  }
  if (!sides.a.sample && !sides.a.img && !sides.b.sample && !sides.b.img) sides.a.sample = sides.b.sample = "__first__";
  return {
    link: u.link, cmap: COLORMAPS.includes(u.cmap) ? u.cmap : "viridis", sides,
    pendingQuery: u.qrow > 0 && u.qcol > 0 ? { row: u.qrow - 1, col: u.qcol - 1 } : null,
    query: null, hover: null, // {u, v}: the patch centre as a fraction of the grid, so it maps onto any grid
    cursor: null, kbdSide: null, // the keyboard's query cursor ({u, v}) and the panel whose photo has the focus
  };
}

// ---- geometry: one query, any grid -----------------------------------------------------------------------------
const rel = (A, idx) => ({ u: ((idx % A.grid.cols) + 0.5) / A.grid.cols, v: (Math.floor(idx / A.grid.cols) + 0.5) / A.grid.rows });
const idxOf = (A, q) => (q ? Math.min(A.grid.rows - 1, Math.floor(q.v * A.grid.rows)) * A.grid.cols
  + Math.min(A.grid.cols - 1, Math.floor(q.u * A.grid.cols)) : null);
const patchName = (A, idx) => `patch row ${Math.floor(idx / A.grid.cols) + 1}, col ${(idx % A.grid.cols) + 1}`;
const cap = (t) => t.charAt(0).toUpperCase() + t.slice(1);
const sameGrid = (x, y) => x && y && x.grid.rows === y.grid.rows && x.grid.cols === y.grid.cols;

// ---- the diverging scale (lib/plot.js DIVERGING, as the text page's plotly difference uses) ----------------
const DIV_LUT = (() => {
  const stops = DIVERGING.map(([t, c]) => [t, [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16))]);
  const lut = new Uint8ClampedArray(256 * 4);
  for (let i = 0; i < 256; i++) {
    const t = i / 255, k = Math.max(0, stops.findIndex(([s], j) => j < stops.length - 1 && t <= stops[j + 1][0]));
    const [t0, c0] = stops[k], [t1, c1] = stops[k + 1], f = (t - t0) / (t1 - t0 || 1);
    for (let c = 0; c < 3; c++) lut[i * 4 + c] = Math.round(c0[c] * (1 - f) + c1[c] * f);
    lut[i * 4 + 3] = 255;
  }
  return lut;
})();

// (rows x cols) canvas of d on [−m, +m], 0 at the centre colour.
function paintDiverging(d, rows, cols, m) {
  const cv = document.createElement("canvas");
  cv.width = cols; cv.height = rows;
  const ctx = cv.getContext("2d"), img = ctx.createImageData(cols, rows);
  for (let i = 0; i < rows * cols; i++) {
    const j = Math.round(Math.max(0, Math.min(1, 0.5 + d[i] / (2 * m))) * 255) * 4;
    img.data.set(DIV_LUT.subarray(j, j + 4), i * 4);
  }
  ctx.putImageData(img, 0, 0);
  return cv;
}

function drawDivergingBar(cv) {
  const ctx = cv.getContext("2d"), g = ctx.createLinearGradient(0, 0, cv.width, 0);
  for (const [t, c] of DIVERGING) g.addColorStop(t, c);
  ctx.fillStyle = g; ctx.fillRect(0, 0, cv.width, cv.height);
}

// ---- mounting ------------------------------------------------------------------------------------------------
export function mountCompare(PD) {
  const MODELS = PD.models || [];
  const C = readCompareState(PD);
  const app = $("vision-app"), host = $("vz-compare"), errBox = $("vz-error");
  const keep = new Set(["vz-compare", "vz-error"]);
  for (const child of app.children) if (!keep.has(child.id) && !child.classList.contains("vz-intro") && !child.classList.contains("vz-help")) child.classList.add("hidden");
  host.classList.remove("hidden");
  const single = $("vz-compare-link");
  if (single) { single.textContent = "Single view"; single.title = "Back to one panel (panel A)"; }
  let samples = [];
  const modelLabel = (id) => (MODELS.find((m) => m.id === id) || {}).label || id;

  // toolbar
  const link = el("input", { type: "checkbox", id: "cmp-link" });
  link.checked = C.link;
  const cmap = el("select", { id: "cmp-cmap" }, ...COLORMAPS.map((c) => el("option", { value: c }, c)));
  cmap.value = C.cmap;
  const distance = el("a", { id: "cmp-distance", href: "/distance" }, "Mean attention distance of A and B on /distance");
  const clear = el("button", { type: "button", id: "cmp-clear", class: "hidden" }, "Unpin query");
  const toolbar = el("div", { class: "panel cmp-toolbar" },
    el("label", { title: "Layer, head and view move together in both panels (clamped to the smaller model)" }, link, " Link layer, head and view"),
    el("label", {}, "Colormap ", cmap), clear,
    el("span", { class: "cmp-spacer" }), distance);
  const diff = { canvas: el("canvas", { class: "cmp-diff-canvas", id: "cmp-diff-canvas", role: "img", "aria-label": "difference map B minus A",
    "aria-describedby": "cmp-diff-caption" }),
    bar: el("canvas", { class: "cmp-divbar", width: 240, height: 12 }),
    min: el("span", { class: "mono small", id: "cmp-diff-min" }), max: el("span", { class: "mono small", id: "cmp-diff-max" }),
    caption: el("p", { class: "vz-caption", id: "cmp-diff-caption" }), exports: el("span", { id: "cmp-diff-export" }), values: null };
  const diffPanel = el("section", { class: "panel cmp-panel cmp-diffpanel", id: "cmp-diff", "aria-labelledby": "cmp-diff-title" },
    el("div", { class: "vz-panelhead" }, el("h2", { id: "cmp-diff-title" }, "Difference B \u2212 A"), diff.exports),
    el("p", { class: "vz-caption cmp-what" }, "The value in panel B minus the value in panel A, patch by patch."),
    el("div", { class: "cmp-stage cmp-diffonly" }, diff.canvas),
    el("div", { class: "cmp-divscale cmp-diffonly" }, diff.min, diff.bar, diff.max), diff.caption);
  drawDivergingBar(diff.bar);
  const note = el("p", { class: "vz-caption cmp-note" },
    "Each panel is one analysis, drawn as on the single view and scaled to its own min\u2013max (see its colour bar): "
    + "compare shapes between panels, and values with the difference map. Hover over a photo to probe a patch in both panels "
    + "(at the same relative position when the patch grids differ); click to pin it. From the keyboard: Tab to a photo, "
    + "move the query patch with the arrow keys, pin it with Enter, return with Esc.");
  const live = el("p", { class: "sr-only", id: "cmp-live", "aria-live": "polite" });
  for (const s of Object.values(C.sides)) s.ui = sidePanel(s);
  host.replaceChildren(toolbar, note, el("div", { class: "cmp-panels" }, C.sides.a.ui.panel, C.sides.b.ui.panel, diffPanel), live);

  function sidePanel(s) {
    const ui = {
      source: el("select", { "data-role": "source", "aria-label": `Image of panel ${s.name.toUpperCase()}` }),
      file: el("input", { type: "file", accept: "image/*", "data-role": "file", "aria-label": `Upload an image into panel ${s.name.toUpperCase()}` }),
      model: el("select", { "data-role": "model" }, ...MODELS.map((m) => el("option", { value: m.id }, m.label))),
      res: el("select", { "data-role": "res", title: "Input side in pixels" }),
      layer: el("select", { "data-role": "layer" }), head: el("select", { "data-role": "head" }),
      views: Object.entries(VIEWS).map(([v, label]) => el("button", { type: "button", "data-view": v }, label)),
      overlay: el("div", { class: "vz-overlay cmp-overlay" }),
      cbMin: el("span", { class: "mono small" }), cbMax: el("span", { class: "mono small" }),
      cb: el("canvas", { width: 14, height: 256 }),
      title: el("h2", {}, `Panel ${s.name.toUpperCase()}`), status: el("span", { class: "status small" }),
      caption: el("p", { class: "vz-caption" }),
      colorbar: el("div", { class: "vz-colorbar cmp-colorbar", role: "img", "aria-label": "Colour scale" }),
      topk: el("div", {}),
    };
    ui.model.value = s.model;
    ui.panel = el("section", { class: "panel cmp-panel", id: `cmp-${s.name}`, "aria-label": `Panel ${s.name.toUpperCase()}` },
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
      analyze(s);
    });
    ui.file.addEventListener("change", () => {
      const f = ui.file.files[0];
      ui.file.value = "";
      if (!f) return;
      if (f.size > PD.max_upload_mb * 1048576) { showError(errBox, new Error(`"${f.name}" is larger than ${PD.max_upload_mb} MB.`)); return; }
      analyze(s, f);
    });
    ui.model.addEventListener("change", () => {
      s.model = ui.model.value;
      const m = MODELS.find((x) => x.id === s.model);
      s.res = m && m.resolutions.includes(s.res) ? s.res : 0;
      analyze(s);
    });
    ui.res.addEventListener("change", () => { s.res = Number(ui.res.value) || 0; analyze(s); });
    for (const b of ui.views) b.addEventListener("click", () => select(s, { view: b.dataset.view }));
    ui.layer.addEventListener("change", () => select(s, { layer: Number(ui.layer.value) - 1 }));
    ui.head.addEventListener("change", () => select(s, { head: Number(ui.head.value) - 1 }));
    return ui;
  }

  // A change of layer / head / view in one panel; with Link on, the other panel follows (clamped).
  function select(s, change) {
    for (const t of C.link ? SIDES.map((n) => C.sides[n]) : [s]) {
      if (change.view) t.view = change.view;
      if (change.layer !== undefined) t.layer = t.A ? Math.min(change.layer, t.A.L - 1) : change.layer;
      if (change.head !== undefined) t.head = t.A ? Math.min(change.head, t.A.H - 1) : change.head;
    }
    refresh();
  }

  // ---- analyses --------------------------------------------------------------------------------------------
  async function analyze(s, file = null) {
    const my = ++s.token;
    if (s.ctl) s.ctl.abort();
    const ctl = s.ctl = new AbortController();
    const fd = new FormData();
    if (file) fd.append("image", file, file.name || "image.png");
    else if (s.img) fd.append("image_hash", s.img);
    else fd.append("sample", s.sample);
    fd.append("model", s.model);
    if (s.res) fd.append("resolution", String(s.res));
    s.ui.status.replaceChildren(el("span", { class: "spinner", "aria-hidden": "true" }), ` running ${modelLabel(s.model)}\u2026`);
    s.ui.panel.dataset.state = "busy";
    try {
      const r = await apiPost("/api/vision/analyze", fd, { signal: ctl.signal });
      const image = new Image();
      image.src = r.image_url;
      await image.decode();
      if (my !== s.token) return;
      const cls = decodeTyped(r.cls_attention).data; // (L, H, P)
      const { num_layers: L, num_heads: H } = r.model, P = r.grid.rows * r.grid.cols;
      const means = new Float32Array(L * P); // (L, P): mean over heads
      for (let l = 0; l < L; l++) for (let h = 0; h < H; h++) for (let p = 0; p < P; p++) means[l * P + p] += cls[(l * H + h) * P + p] / H;
      s.A = { id: r.analysis_id, hash: r.image_hash, model: r.model, grid: r.grid, clsQuery: r.cls_query, L, H, P, cls, means,
        rollout: decodeTyped(r.rollout).data, image, cache: new Map() };
      if (file) { s.img = r.image_hash; s.sample = ""; }
      s.res = r.grid.resolution;
      const other = C.sides[s.name === "a" ? "b" : "a"];
      if (C.link && other.A) Object.assign(s, { view: other.view, layer: other.layer, head: other.head }); // linked: follow
      s.layer = s.layer === null || s.layer >= L ? L - 1 : s.layer;
      s.head = Math.min(s.head, H - 1);
      if (s.name === "a" && C.pendingQuery) {
        const { row, col } = C.pendingQuery;
        if (row < r.grid.rows && col < r.grid.cols) C.query = rel(s.A, row * r.grid.cols + col);
        C.pendingQuery = null;
      }
      s.ui.status.textContent = `${r.grid.rows}\u00d7${r.grid.cols} patches of ${r.grid.patch_size} px \u00b7 forward ${Math.round(r.forward_ms)} ms`;
      showError(errBox, null);
      refresh();
    } catch (e) {
      if (my !== s.token) return;
      s.ui.status.textContent = "";
      s.ui.panel.dataset.state = "error";
      showError(errBox, e);
    }
  }

  async function mapOf(s, signal) {
    const A = s.A, l = s.layer, head = s.view === "mean" ? null : s.head, P = A.P;
    const q = s.view === "rollout" ? null : idxOf(A, C.query ?? C.hover);
    const label = modelLabel(A.model.id);
    if (s.view === "rollout") {
      return { values: A.rollout, q, what: A.clsQuery === "cls" ? "rollout from [CLS]" : "rollout, mean of patch rows",
        title: `rollout, layers 1\u2013${A.L}`, label,
        caption: "Attention rollout (Abnar & Zuidema 2020; ViT Fig. 6): heads fused by their mean, nothing discarded, identity added "
          + `for the residual connection, rows renormalised, layers 1 to ${A.L} multiplied. `
          + (A.clsQuery === "cls" ? "Row [CLS] of the product." : "This model has no [CLS] token: the mean over the patch rows of the product.") };
    }
    const where = `layer ${l + 1} \u00b7 ${head === null ? `mean of ${A.H} heads` : `head ${head + 1}`}`;
    if (q !== null) {
      const key = `${l}|${head}|${q}`;
      if (!A.cache.has(key)) {
        const p = new URLSearchParams({ layer: l, query: q });
        if (head !== null) p.set("head", head);
        const r = await apiGet(`/api/vision/analysis/${A.id}/attention?${p}`, { signal });
        A.cache.set(key, decodeTyped(r.values).data);
        if (A.cache.size > 400) A.cache.delete(A.cache.keys().next().value);
      }
      return { values: A.cache.get(key), q, what: `query ${patchName(A, q)}`, title: where, label,
        caption: `Where ${patchName(A, q)} attends in ${where}: its row of the attention matrix over the image patches`
          + `${A.grid.num_prefix_tokens ? " (its share to the [CLS] and other prefix tokens is not drawn)" : ""}.` };
    }
    const values = head === null ? A.means.subarray(l * P, (l + 1) * P) : A.cls.subarray((l * A.H + head) * P, (l * A.H + head + 1) * P);
    return { values, q, what: A.clsQuery === "cls" ? "[CLS] attention" : "mean patch-query attention", title: where, label,
      caption: A.clsQuery === "cls"
        ? `${cap(where)}: how strongly the [CLS] token attends to each patch (its softmax row without the prefix tokens, ViT paper Sec. 3.1).`
        : `${cap(where)}: this model has no [CLS] token; each patch's mean weight as a key over all patch queries.` };
  }

  // ---- drawing -------------------------------------------------------------------------------------------------
  let refreshToken = 0, refreshCtl = null;
  async function refresh() {
    const my = ++refreshToken;
    if (refreshCtl) refreshCtl.abort();
    const ctl = refreshCtl = new AbortController();
    syncURL();
    const ready = SIDES.map((n) => C.sides[n]).filter((s) => s.A);
    for (const s of ready) syncControls(s);
    let maps;
    try {
      maps = await Promise.all(ready.map((s) => mapOf(s, ctl.signal)));
    } catch (e) {
      if (my !== refreshToken || isCancelled(e)) return;
      // the server evicted an analysis (TTL or memory): run both again once, then report
      if (e.status === 404 && !C.rerun) { C.rerun = true; for (const s of ready) analyze(s); return; }
      showError(errBox, e);
      return;
    }
    C.rerun = false;
    if (my !== refreshToken) return;
    ready.forEach((s, i) => drawSide(s, maps[i]));
    drawDiff();
    clear.classList.toggle("hidden", !C.query);
  }

  function syncControls(s) {
    const A = s.A, ui = s.ui;
    const opts = [...samples.map((x) => [`sample:${x.name}`, x.title])];
    if (s.img) opts.push([`img:${s.img}`, `Your upload (${s.img.slice(0, 8)}\u2026)`]);
    fillSelect(ui.source, opts, s.img ? `img:${s.img}` : `sample:${s.sample}`);
    ui.model.value = s.model;
    const m = MODELS.find((x) => x.id === s.model);
    fillSelect(ui.res, (m && m.resolutions.length ? m.resolutions : [A.grid.resolution]).map((r) => [r, `${r} px`]), A.grid.resolution);
    fillSelect(ui.layer, Array.from({ length: A.L }, (_, i) => [i + 1, `layer ${i + 1}`]), s.layer + 1);
    fillSelect(ui.head, Array.from({ length: A.H }, (_, i) => [i + 1, `head ${i + 1}`]), s.head + 1);
    ui.head.disabled = s.view !== "head";
    ui.layer.disabled = s.view === "rollout";
    for (const b of ui.views) b.setAttribute("aria-pressed", String(b.dataset.view === s.view));
  }

  function drawSide(s, m) {
    const A = s.A, ui = s.ui;
    s.values = m;
    const { range } = renderOverlay(s.ui.overlay, {
      image: A.image, values: m.values, rows: A.grid.rows, cols: A.grid.cols, patchSize: A.grid.patch_size,
      resolution: A.grid.resolution, colormap: C.cmap, opacity: 0.6, smooth: false, clip: true, fade: true, gridlines: false,
      query: m.q, interactive: s.view !== "rollout",
      meta: { view: s.view, layer: s.layer, head: s.view === "mean" ? "mean" : s.head, label: `${m.label} \u00b7 ${m.title}` },
      hover: C.query && C.kbdSide === s && C.cursor ? idxOf(A, C.cursor) : null,
      onHover: (idx) => onHover(s, idx), onClick: (idx) => onClick(s, idx),
      onKey: (e) => onKey(s, e), onFocus: () => onFocus(s), onBlur: () => onBlur(s),
      describedBy: `cmp-${s.name}-topk`,
    });
    ui.colorbar.setAttribute("aria-label", `Colour scale (${C.cmap}): ${fmtValue(range.min)} at the bottom to ${
      range.clipped ? "at least " : ""}${fmtValue(range.max)} at the top`);
    // the map in words: its TOP_K brightest patches (hidden table), and a live line for the panel in keyboard use
    const best = topK(m.values, TOP_K), where = (i) => `row ${Math.floor(i / A.grid.cols) + 1}, col ${(i % A.grid.cols) + 1}`;
    srTable(ui.topk, {
      id: `cmp-${s.name}-topk`,
      caption: `Panel ${s.name.toUpperCase()}, ${m.title}, ${m.what}: the ${best.length} patches with the highest values, of ${A.P}`,
      headers: ["Rank", "Patch", "Value"], rows: best.map((i, r) => [String(r + 1), where(i), fmtValue(m.values[i])]),
    });
    if (C.kbdSide === s) {
      announce(live, `Panel ${s.name.toUpperCase()}, ${m.title}, ${m.what}${C.query ? " (pinned)" : ""}. Highest: ${
        best.slice(0, 3).map((i) => `${where(i)} ${fmtValue(m.values[i])}`).join("; ")}.`);
    }
    s.ui.cbMin.textContent = fmtValue(range.min);
    s.ui.cbMax.textContent = `${range.clipped ? "\u2265 " : ""}${fmtValue(range.max)}`;
    drawColorbar(s.ui.cb.getContext("2d"), C.cmap, 0, 0, s.ui.cb.width, s.ui.cb.height, null, { vertical: true });
    s.ui.title.textContent = `${s.name.toUpperCase()} \u00b7 ${m.title}`;
    s.ui.caption.textContent = `${m.caption} Colours: this panel's own min\u2013max, top 2% saturated.`;
    s.ui.panel.dataset.state = "ready";
  }

  function drawDiff() {
    const a = C.sides.a, b = C.sides.b, cv = diff.canvas;
    diffPanel.dataset.state = "none";
    diff.values = null;
    diffPanel.classList.toggle("cmp-nodiff", !sameGrid(a.A, b.A));
    if (!a.A || !b.A || !a.values || !b.values) { diff.caption.textContent = "Waiting for both panels\u2026"; return; }
    if (!sameGrid(a.A, b.A)) {
      cv.getContext("2d").clearRect(0, 0, cv.width, cv.height);
      diff.min.textContent = diff.max.textContent = "";
      diff.caption.textContent = `No difference map: A has ${a.A.grid.rows}\u00d7${a.A.grid.cols} patches, B has `
        + `${b.A.grid.rows}\u00d7${b.A.grid.cols}. A patch-by-patch difference needs the same patch grid (same patch size and input resolution).`;
      diff.exports.replaceChildren();
      return;
    }
    const { rows, cols, patch_size: ps, resolution } = a.A.grid, P = rows * cols;
    const d = new Float32Array(P); // (P,): B − A per patch
    let m = 0, arg = 0, l1 = 0;
    for (let i = 0; i < P; i++) {
      d[i] = b.values.values[i] - a.values.values[i];
      l1 += Math.abs(d[i]);
      if (Math.abs(d[i]) > m) { m = Math.abs(d[i]); arg = i; }
    }
    diff.values = d;
    const scale = m > 0 ? m : 1;
    const css = cv.clientWidth || 360, size = Math.round(css * (window.devicePixelRatio || 1));
    if (cv.width !== size) { cv.width = size; cv.height = size; }
    const ctx = cv.getContext("2d");
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, size, size);
    const samePhoto = a.A.hash === b.A.hash && a.A.grid.resolution === b.A.grid.resolution;
    if (samePhoto) { ctx.globalAlpha = 0.35; ctx.drawImage(a.A.image, 0, 0, size, size); }
    const fx = (cols * ps) / resolution, fy = (rows * ps) / resolution;
    ctx.globalAlpha = samePhoto ? 0.8 : 1;
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(paintDiverging(d, rows, cols, scale), 0, 0, size * fx, size * fy);
    ctx.globalAlpha = 1;
    const q = C.query ? idxOf(a.A, C.query) : null;
    if (q !== null) {
      const w = (size * fx) / cols, h = (size * fy) / rows;
      ctx.lineWidth = 2; ctx.strokeStyle = "#1d2430";
      ctx.strokeRect((q % cols) * w + 1, Math.floor(q / cols) * h + 1, w - 2, h - 2);
    }
    Object.assign(cv.dataset, { checksum: checksum(d), rows, cols, absmax: String(m), state: "ready" });
    diffPanel.dataset.state = "ready";
    diff.min.textContent = `\u2212${fmtValue(scale)}`;
    diff.max.textContent = `+${fmtValue(scale)}`;
    const same = a.values.what === b.values.what;
    diff.caption.textContent = `B \u2212 A over the ${rows}\u00d7${cols} patches: A is ${a.values.title}, ${a.values.what}; B is ${b.values.title}, ${b.values.what}. `
      + (m === 0 ? "B \u2212 A is exactly 0 at every patch: the two panels show the same values (white everywhere)." : `Colour scale centred at 0 and symmetric, from \u2212${fmtValue(scale)} (blue: A larger) to +${fmtValue(scale)} (red: B larger); `
      + `the largest |B \u2212 A| is ${fmtValue(m)} at ${patchName(a.A, arg)}, and \u03a3 |B \u2212 A| = ${fmtValue(l1)}.`)
      + (same ? "" : " The two panels show different quantities, so read the difference with care.")
      + (samePhoto ? " The photo (faint) is the one both panels analysed." : " The panels analysed different images, so no photo is drawn.");
    diff.exports.replaceChildren(exportButtons({
      png: () => downloadCanvas(diffName(), cv, "png"), svg: () => downloadCanvas(diffName(), cv, "svg"),
      csv: () => { const t = diffTable(); downloadCSV(`${diffName()}.csv`, t.header, t.rows); },
      json: () => { const t = diffTable(); downloadJSON(`${diffName()}.json`, { meta: t.meta, header: t.header, rows: t.rows }); },
    }, "Export the difference map"));
  }

  const sideName = (s) => `${s.sample || s.A.hash.slice(0, 8)}-${s.model}-${s.view === "rollout" ? "rollout" : `L${s.layer + 1}${s.view === "mean" ? "mean" : `H${s.head + 1}`}`}`;
  const diffName = () => `diff-${sideName(C.sides.b)}-minus-${sideName(C.sides.a)}`;
  function diffTable() {
    const a = C.sides.a, b = C.sides.b, cols = a.A.grid.cols, rows = [];
    for (let p = 0; p < a.A.P; p++) rows.push([p + 1, Math.floor(p / cols) + 1, (p % cols) + 1, a.values.values[p], b.values.values[p], diff.values[p]]);
    const meta = { indexing: INDEXING, difference: "B - A" };
    for (const s of [a, b]) {
      meta[s.name.toUpperCase()] = { model: s.A.model.id, image: s.sample ? { sample: s.sample } : { image_hash: s.A.hash },
        resolution: s.A.grid.resolution, view: s.view, layer: s.view === "rollout" ? null : s.layer + 1,
        head: s.view === "head" ? s.head + 1 : s.view === "mean" ? "mean" : null, shows: s.values.what };
    }
    return { header: ["patch", "row", "col", "A", "B", "B_minus_A"], rows, meta };
  }

  // ---- probing patches: one query for both panels ---------------------------------------------------------
  let hoverTimer = 0;
  function onHover(s, idx) {
    clearTimeout(hoverTimer);
    if (C.query !== null) return; // a pinned query stays until it is clicked again, unpinned or Esc
    hoverTimer = setTimeout(() => { C.hover = idx === null ? null : rel(s.A, idx); refresh(); }, HOVER_MS);
  }
  function onClick(s, idx) {
    clearTimeout(hoverTimer);
    const q = rel(s.A, idx), cur = C.query ? idxOf(s.A, C.query) : null;
    C.query = cur === idx ? null : q;
    C.hover = null;
    C.cursor = q;
    refresh();
  }
  clear.addEventListener("click", () => { C.query = null; C.hover = null; refresh(); });

  // Keyboard probing, as on the single view: Tab to a photo puts the query cursor on its centre patch (or the pinned
  // one); the arrow keys move it (both panels probe the same relative position), Enter or Space pins it, Esc
  // unpins (the page-wide handler) or, with nothing pinned, returns to the [CLS] maps.
  const centre = (A) => rel(A, Math.floor(A.grid.rows / 2) * A.grid.cols + Math.floor(A.grid.cols / 2));
  function onFocus(s) {
    if (!s.A || s.view === "rollout") return;
    C.kbdSide = s;
    C.cursor = C.query ?? C.cursor ?? centre(s.A);
    clearTimeout(hoverTimer);
    if (!C.query) C.hover = C.cursor;
    refresh();
  }
  function onBlur(s) {
    if (C.kbdSide === s) C.kbdSide = null;
    clearTimeout(hoverTimer);
    if (!C.query && C.hover) { C.hover = null; refresh(); }
  }
  function onKey(s, e) {
    if (!s.A || s.view === "rollout" || e.altKey || e.ctrlKey || e.metaKey) return;
    const A = s.A, cur = idxOf(A, C.cursor ?? C.query ?? centre(A));
    const next = gridStep(e.key, cur, A.grid.rows, A.grid.cols);
    if (next !== null) {
      e.preventDefault();
      C.kbdSide = s;
      C.cursor = rel(A, next);
      clearTimeout(hoverTimer);
      if (!C.query) C.hover = C.cursor;
      refresh();
    } else if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      onClick(s, cur);
    } else if (e.key === "Escape" && !C.query && C.hover) {
      e.preventDefault();
      C.hover = null;
      refresh();
    }
  }
  diff.canvas.addEventListener("click", (e) => {
    const a = C.sides.a;
    if (!a.A || !diff.values) return;
    const r = diff.canvas.getBoundingClientRect(), g = a.A.grid;
    const u = (e.clientX - r.left) / r.width / ((g.cols * g.patch_size) / g.resolution);
    const v = (e.clientY - r.top) / r.height / ((g.rows * g.patch_size) / g.resolution);
    if (u >= 0 && v >= 0 && u < 1 && v < 1) onClick(a, idxOf(a.A, { u, v }));
  });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && C.query) { C.query = null; refresh(); } });

  // ---- URL -------------------------------------------------------------------------------------------------------
  function syncURL() {
    const out = { compare: 1, link: C.link ? 1 : 0, cmap: C.cmap !== "viridis" ? C.cmap : "" };
    for (const s of SIDES.map((n) => C.sides[n])) {
      Object.assign(out, { [`${s.name}.model`]: s.model, [`${s.name}.res`]: s.res || "", [`${s.name}.sample`]: s.img ? "" : s.sample,
        [`${s.name}.img`]: s.img, [`${s.name}.view`]: s.view, [`${s.name}.layer`]: s.layer === null ? "" : s.layer + 1,
        [`${s.name}.head`]: s.head + 1 });
    }
    const a = C.sides.a;
    if (C.query && a.A) {
      const q = idxOf(a.A, C.query);
      out.qrow = Math.floor(q / a.A.grid.cols) + 1; out.qcol = (q % a.A.grid.cols) + 1;
    }
    writeState(out);
    const single = $("vz-compare-link");
    if (single) {
      const p = new URLSearchParams();
      for (const k of KEYS) { const v = out[`a.${k}`]; if (v !== "" && v !== undefined) p.set(k, v); }
      single.href = `/vision?${p}`;
    }
    // /distance overlays several runs: A's own image (its cached maps), then each model on the sample photos.
    if (a.A) {
      const runs = ["~analysis~0", ...new Set(SIDES.map((n) => `${C.sides[n].model}~samples~0`))].slice(0, 3);
      distance.href = `/distance?analysis=${encodeURIComponent(a.A.id)}&runs=${encodeURIComponent(runs.join(","))}`;
      distance.textContent = C.sides.a.model === C.sides.b.model
        ? `Mean attention distance of ${modelLabel(a.model)} on A's image and the sample photos (/distance)`
        : `Mean attention distance of both models on the sample photos, overlaid (/distance)`;
    }
  }

  link.addEventListener("change", () => { C.link = link.checked; if (C.link) select(C.sides.a, { view: C.sides.a.view, layer: C.sides.a.layer, head: C.sides.a.head }); else refresh(); });
  cmap.addEventListener("change", () => { C.cmap = cmap.value; refresh(); });
  let resizeTimer = 0;
  window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(drawDiff, 150); });

  // ---- start: the sample list, then both analyses (the first sample when the URL names no image) -----------------
  (async () => {
    try {
      samples = (await apiGet("/api/vision/samples")).samples;
    } catch (e) { showError(errBox, e); }
    for (const s of SIDES.map((n) => C.sides[n])) {
      if (s.sample === "__first__") s.sample = samples.length ? samples[0].name : "";
      if (!s.sample && !s.img) s.sample = (C.sides.a.sample || C.sides.b.sample || (samples[0] || {}).name || "");
    }
    await Promise.all(SIDES.map((n) => analyze(C.sides[n])));
  })();
}
