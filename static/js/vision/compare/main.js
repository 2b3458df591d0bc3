// Side by side on /vision (issue 8, section 5; LIT's habit): two panels, A and B, each one analysis (image, model,
// input resolution) with its own view (head, mean of heads, rollout), layer and head. "Link" moves layer, head and
// view together; a patch hovered or clicked in any panel is probed in both. Where the two patch grids match, a third
// panel draws the difference B − A on a diverging scale centred at 0, with its range stated.
//
// Everything comes from the existing API through vision/data.js (two analyses, /api/vision/analyze and /attention);
// no new route. The modules: state.js (the permalink and the query geometry), panel.js (one side's panel),
// difference.js (B − A), and this one, which wires them: analyses, probing, drawing, the URL. The single-view page
// is untouched when compare is off: vision/main.js only mounts this module on compare=1.
import { gridStep } from "../../lib/a11y.js";
import { apiGet, isCancelled, showError } from "../../lib/api.js";
import { COLORMAPS } from "../../lib/colormap.js";
import { $, el } from "../../lib/dom.js";
import { writeState } from "../../lib/urlstate.js";
import { analyzeImage, mapOf } from "../data.js";
import { diffPanel, drawDiff } from "./difference.js";
import { drawSide, sidePanel, syncControls } from "./panel.js";
import { centre, compareHref, idxOf, otherSide, readCompareState, rel, sidesOf, singleHref, urlFields } from "./state.js";

export { compareHref } from "./state.js";

const HOVER_MS = 70;

// The "Side by side" link of the single view: its href follows the current permalink when it is used.
export function wireCompareLink(link, models, analysis = () => null) {
  const update = () => { link.href = compareHref(location.search, models, analysis()); };
  for (const ev of ["mouseenter", "focus", "click"]) link.addEventListener(ev, update);
}

// ---- analyses --------------------------------------------------------------------------------------------------
async function analyze(ctx, s, file = null) {
  const C = ctx.C, my = ++s.token;
  if (s.ctl) s.ctl.abort();
  const ctl = s.ctl = new AbortController();
  const source = file ? { file } : s.img ? { hash: s.img } : { sample: s.sample };
  s.ui.status.replaceChildren(el("span", { class: "spinner", "aria-hidden": "true" }), ` running ${ctx.modelLabel(s.model)}\u2026`);
  s.ui.panel.dataset.state = "busy";
  try {
    const A = await analyzeImage(source, { model: s.model, res: s.res, signal: ctl.signal });
    if (my !== s.token) return;
    s.A = A;
    if (file) { s.img = A.hash; s.sample = ""; }
    s.res = A.grid.resolution;
    const other = otherSide(C, s);
    if (C.link && other.A) Object.assign(s, { view: other.view, layer: other.layer, head: other.head }); // linked: follow
    s.layer = s.layer === null || s.layer >= A.L ? A.L - 1 : s.layer;
    s.head = Math.min(s.head, A.H - 1);
    if (s.name === "a" && C.pendingQuery) {
      const { row, col } = C.pendingQuery;
      if (row < A.grid.rows && col < A.grid.cols) C.query = rel(A, row * A.grid.cols + col);
      C.pendingQuery = null;
    }
    s.ui.status.textContent = `${A.grid.rows}\u00d7${A.grid.cols} patches of ${A.grid.patch_size} px \u00b7 forward ${Math.round(A.forwardMs)} ms`;
    showError(ctx.errBox, null);
    refresh(ctx);
  } catch (e) {
    if (my !== s.token) return;
    s.ui.status.textContent = "";
    s.ui.panel.dataset.state = "error";
    showError(ctx.errBox, e);
  }
}

// A change of layer / head / view in one panel; with Link on, the other panel follows (clamped).
function select(ctx, s, change) {
  for (const t of ctx.C.link ? sidesOf(ctx.C) : [s]) {
    if (change.view) t.view = change.view;
    if (change.layer !== undefined) t.layer = t.A ? Math.min(change.layer, t.A.L - 1) : change.layer;
    if (change.head !== undefined) t.head = t.A ? Math.min(change.head, t.A.H - 1) : change.head;
  }
  refresh(ctx);
}

// ---- drawing: both panels' maps (the shared query in each grid), then the difference ----------------------------
async function refresh(ctx) {
  const C = ctx.C, my = ++ctx.refreshToken;
  if (ctx.refreshCtl) ctx.refreshCtl.abort();
  const ctl = ctx.refreshCtl = new AbortController();
  syncURL(ctx);
  const ready = sidesOf(C).filter((s) => s.A);
  for (const s of ready) syncControls(s, ctx.models, ctx.samples);
  let maps;
  try {
    maps = await Promise.all(ready.map(async (s) => ({
      ...(await mapOf(s.A, { view: s.view, layer: s.layer, head: s.head, query: idxOf(s.A, C.query ?? C.hover) }, ctl.signal)),
      label: ctx.modelLabel(s.A.model.id),
    })));
  } catch (e) {
    if (my !== ctx.refreshToken || isCancelled(e)) return;
    // the server evicted an analysis (TTL or memory): run both again once, then report
    if (e.status === 404 && !C.rerun) { C.rerun = true; for (const s of ready) analyze(ctx, s); return; }
    showError(ctx.errBox, e);
    return;
  }
  C.rerun = false;
  if (my !== ctx.refreshToken) return;
  ready.forEach((s, i) => drawSide(s, maps[i], ctx));
  drawDiff(C, ctx.diff);
  ctx.clear.classList.toggle("hidden", !C.query);
}

// ---- probing patches: one query for both panels -------------------------------------------------------------------
// Keyboard probing, as on the single view: Tab to a photo puts the query cursor on its centre patch (or the pinned
// one); the arrow keys move it (both panels probe the same relative position), Enter or Space pins it, Esc
// unpins (the page-wide handler) or, with nothing pinned, returns to the [CLS] maps.
function probing(ctx) {
  const C = ctx.C, redo = () => refresh(ctx);
  let hoverTimer = 0;
  const onHover = (s, idx) => {
    clearTimeout(hoverTimer);
    if (C.query !== null) return; // a pinned query stays until it is clicked again, unpinned or Esc
    hoverTimer = setTimeout(() => { C.hover = idx === null ? null : rel(s.A, idx); redo(); }, HOVER_MS);
  };
  const onClick = (s, idx) => {
    clearTimeout(hoverTimer);
    const q = rel(s.A, idx), cur = C.query ? idxOf(s.A, C.query) : null;
    C.query = cur === idx ? null : q;
    C.hover = null;
    C.cursor = q;
    redo();
  };
  const onFocus = (s) => {
    if (!s.A || s.view === "rollout") return;
    C.kbdSide = s;
    C.cursor = C.query ?? C.cursor ?? centre(s.A);
    clearTimeout(hoverTimer);
    if (!C.query) C.hover = C.cursor;
    redo();
  };
  const onBlur = (s) => {
    if (C.kbdSide === s) C.kbdSide = null;
    clearTimeout(hoverTimer);
    if (!C.query && C.hover) { C.hover = null; redo(); }
  };
  const onKey = (s, e) => {
    if (!s.A || s.view === "rollout" || e.altKey || e.ctrlKey || e.metaKey) return;
    const A = s.A, cur = idxOf(A, C.cursor ?? C.query ?? centre(A));
    const next = gridStep(e.key, cur, A.grid.rows, A.grid.cols);
    if (next !== null) {
      e.preventDefault();
      C.kbdSide = s;
      C.cursor = rel(A, next);
      clearTimeout(hoverTimer);
      if (!C.query) C.hover = C.cursor;
      redo();
    } else if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      onClick(s, cur);
    } else if (e.key === "Escape" && !C.query && C.hover) {
      e.preventDefault();
      C.hover = null;
      redo();
    }
  };
  return { onHover, onClick, onFocus, onBlur, onKey };
}

// ---- URL ----------------------------------------------------------------------------------------------------------
function syncURL(ctx) {
  const C = ctx.C, out = urlFields(C);
  writeState(out);
  const single = $("vz-compare-link");
  if (single) single.href = singleHref(out);
  // /distance overlays several runs: A's own image (its cached maps), then each model on the sample photos.
  const a = C.sides.a;
  if (a.A) {
    const runs = ["~analysis~0", ...new Set(sidesOf(C).map((s) => `${s.model}~samples~0`))].slice(0, 3);
    ctx.distance.href = `/distance?analysis=${encodeURIComponent(a.A.id)}&runs=${encodeURIComponent(runs.join(","))}`;
    ctx.distance.textContent = C.sides.a.model === C.sides.b.model
      ? `Mean attention distance of ${ctx.modelLabel(a.model)} on A's image and the sample photos (/distance)`
      : "Mean attention distance of both models on the sample photos, overlaid (/distance)";
  }
}

// ---- mounting -------------------------------------------------------------------------------------------------------
function toolbar(ctx) {
  const C = ctx.C, link = el("input", { type: "checkbox", id: "cmp-link" });
  link.checked = C.link;
  const cmap = el("select", { id: "cmp-cmap" }, ...COLORMAPS.map((c) => el("option", { value: c }, c)));
  cmap.value = C.cmap;
  ctx.distance = el("a", { id: "cmp-distance", href: "/distance" }, "Mean attention distance of A and B on /distance");
  ctx.clear = el("button", { type: "button", id: "cmp-clear", class: "hidden" }, "Unpin query");
  ctx.clear.addEventListener("click", () => { C.query = null; C.hover = null; refresh(ctx); });
  ctx.linkNote = el("span", { class: "small cmp-linknote", id: "cmp-linknote", role: "status" });
  const sayLinked = () => {
    ctx.linkNote.textContent = C.link
      ? "Linked: layer, head and view move together in A and B. Always shared: the query patch and the colormap."
      : "Not linked: A and B keep their own layer, head and view. Always shared: the query patch and the colormap.";
  };
  sayLinked();
  link.addEventListener("change", () => {
    C.link = link.checked;
    sayLinked();
    if (C.link) select(ctx, C.sides.a, { view: C.sides.a.view, layer: C.sides.a.layer, head: C.sides.a.head }); else refresh(ctx);
  });
  cmap.addEventListener("change", () => { C.cmap = cmap.value; refresh(ctx); });
  return el("div", { class: "panel cmp-toolbar" },
    el("label", { title: "Layer, head and view move together in both panels (clamped to the smaller model)" }, link, " Link layer, head and view"),
    ctx.linkNote, el("label", {}, "Colormap ", cmap), ctx.clear,
    el("span", { class: "cmp-spacer" }), ctx.distance);
}

export function mountCompare(PD) {
  const models = PD.models || [];
  const ctx = { C: readCompareState(PD), models, samples: [], maxUploadMB: PD.max_upload_mb, errBox: $("vz-error"),
    modelLabel: (id) => (models.find((m) => m.id === id) || {}).label || id, refreshToken: 0, refreshCtl: null,
    live: el("p", { class: "sr-only", id: "cmp-live", "aria-live": "polite" }), diff: diffPanel() };
  Object.assign(ctx, probing(ctx), { analyze: (s, file) => analyze(ctx, s, file), select: (s, change) => select(ctx, s, change) });
  const C = ctx.C, app = $("vision-app"), host = $("vz-compare");
  const keep = new Set(["vz-compare", "vz-error"]);
  for (const child of app.children) if (!keep.has(child.id) && !child.classList.contains("vz-intro") && !child.classList.contains("vz-help")) child.classList.add("hidden");
  host.classList.remove("hidden");
  const single = $("vz-compare-link");
  if (single) { single.textContent = "Single view"; single.title = "Back to one panel (panel A)"; }
  const note = el("div", { class: "vz-caption cmp-note" },
    el("p", {}, "Two analyses side by side, each scaled to its own min\u2013max: compare shapes between panels, and values with the difference map."),
    el("details", {}, el("summary", {}, "More"), el("p", {},
      "Hover over a photo to probe a patch in both panels (at the same relative position when the patch grids differ); "
      + "click to pin it. From the keyboard: Tab to a photo, move the query patch with the arrow keys, pin it with Enter, "
      + "return with Esc. Each panel's colour bar gives its own range.")));
  for (const s of sidesOf(C)) s.ui = sidePanel(s, ctx);
  host.replaceChildren(toolbar(ctx), note, el("div", { class: "cmp-panels" }, C.sides.a.ui.panel, C.sides.b.ui.panel, ctx.diff.panel), ctx.live);

  ctx.diff.canvas.addEventListener("click", (e) => {
    const a = C.sides.a;
    if (!a.A || !ctx.diff.values) return;
    const r = ctx.diff.canvas.getBoundingClientRect(), g = a.A.grid;
    const u = (e.clientX - r.left) / r.width / ((g.cols * g.patch_size) / g.resolution);
    const v = (e.clientY - r.top) / r.height / ((g.rows * g.patch_size) / g.resolution);
    if (u >= 0 && v >= 0 && u < 1 && v < 1) ctx.onClick(a, idxOf(a.A, { u, v }));
  });
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && C.query) { C.query = null; refresh(ctx); } });
  ctx.diff.renorm.addEventListener("change", () => { C.renorm = ctx.diff.renorm.checked; syncURL(ctx); drawDiff(C, ctx.diff); });
  let resizeTimer = 0;
  window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(() => drawDiff(C, ctx.diff), 150); });

  // start: the sample list, then both analyses (the first sample when the URL names no image)
  (async () => {
    try {
      ctx.samples = (await apiGet("/api/vision/samples")).samples;
    } catch (e) { showError(ctx.errBox, e); }
    const first = (ctx.samples[0] || {}).name || "";
    for (const s of sidesOf(C)) {
      if (s.sample === "__first__") s.sample = first;
      if (!s.sample && !s.img) s.sample = C.sides.a.sample || C.sides.b.sample || first;
    }
    await Promise.all(sidesOf(C).map((s) => analyze(ctx, s)));
  })();
}
