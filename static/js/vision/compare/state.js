// Side by side on /vision, the state: what the permalink holds, how it is read and written, and the geometry that
// carries one query patch across two patch grids. State lives in the URL (lib/urlstate.js): compare=1, link, cmap,
// renorm (the difference renormalised over the patches; always on across models), qrow/qcol (the pinned query in A's grid) and per side a.model, a.res, a.sample | a.img, a.view, a.layer, a.head
// (and b.*). URLs and the screen count from 1, the API and this state from 0 (lib/numbering.js converts).
import { COLORMAPS } from "../../lib/colormap.js";
import { fromApi, patchRowCol, toApi, toApiOr } from "../../lib/numbering.js";
import { readState } from "../../lib/urlstate.js";

export const SIDES = ["a", "b"];
export const VIEWS = { head: "Head", mean: "Mean of heads", rollout: "Rollout" };
export const KEYS = ["model", "res", "sample", "img", "view", "layer", "head"];

// The compare permalink built from the single view's URL: A = what the single view shows; B = the same model, image
// and input resolution with another selection, so the difference map says something on first open (startB).
// Unlinked: each panel keeps its own layer, head and view until the user ticks Link. `A`: the single view's
// analysis when there is one (it knows the number of heads and the resolution the URL may leave out).
export function compareHref(search, models, A = null) {
  const p = new URLSearchParams(search), q = new URLSearchParams({ compare: "1", link: "0" });
  const ids = models.map((m) => m.id);
  const model = ids.includes(p.get("model")) ? p.get("model") : A ? A.model.id : ids[0];
  const res = p.get("res") || (A ? String(A.grid.resolution) : "");
  const a = { view: VIEWS[p.get("view")] ? p.get("view") : "head", layer: p.get("layer") || "", head: p.get("head") || "1" };
  const b = startB(a, A ? A.L : null, A ? A.H : null);
  for (const [side, sel] of [["a", a], ["b", b]]) {
    q.set(`${side}.model`, model);
    if (res) q.set(`${side}.res`, res);
    for (const k of ["sample", "img"]) if (p.get(k)) q.set(`${side}.${k}`, p.get(k));
    for (const [k, v] of Object.entries(sel)) if (v) q.set(`${side}.${k}`, v);
  }
  if (b.view !== a.view) q.set("renorm", "1"); // two quantities on different scales: compare where each puts its mass
  if (p.get("cmap")) q.set("cmap", p.get("cmap"));
  return `/vision?${q}`;
}

// B's selection from A's (1-based strings, as in the URL; L layers and H heads when known): one head -> the next
// head of the same layer (wrapping); the mean of heads -> the mean of heads of the last layer (the same quantity,
// so B − A reads directly), or rollout when A is at the last layer; rollout -> the mean of heads of the last layer.
export function startB(a, L, H) {
  const last = !a.layer || (L && Number(a.layer) >= L);
  if (a.view === "mean") return last ? { view: "rollout", layer: a.layer, head: a.head } : { view: "mean", layer: L ? String(L) : "", head: a.head };
  if (a.view === "rollout") return { view: "mean", layer: "", head: a.head };
  const next = Number(a.head) + 1;
  return { view: "head", layer: a.layer, head: String(H && next > H ? 1 : next) };
}

// The whole compare state C from the URL: {link, cmap, renorm, sides: {a, b}, pendingQuery, query, hover, cursor, kbdSide}.
export function readCompareState(PD) {
  const defaults = { link: false, cmap: "viridis", renorm: false, qrow: 0, qcol: 0 };
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
      layer: toApiOr(u[`${s}.layer`], null), // 0-based; null = last layer once known
      head: toApi(u[`${s}.head`] || 1),
      A: null, values: null, token: 0, ctl: null, ui: null,
    };
  }
  if (!sides.a.sample && !sides.a.img && !sides.b.sample && !sides.b.img) sides.a.sample = sides.b.sample = "__first__";
  return {
    link: u.link, cmap: COLORMAPS.includes(u.cmap) ? u.cmap : "viridis", renorm: u.renorm, sides,
    pendingQuery: u.qrow > 0 && u.qcol > 0 ? { row: toApi(u.qrow), col: toApi(u.qcol) } : null,
    query: null, hover: null, // {u, v}: the patch centre as a fraction of the grid, so it maps onto any grid
    cursor: null, kbdSide: null, // the keyboard's query cursor ({u, v}) and the panel whose photo has the focus
  };
}

export const sidesOf = (C) => SIDES.map((n) => C.sides[n]);
export const otherSide = (C, s) => C.sides[s.name === "a" ? "b" : "a"];

// The permalink's fields for state C (written with lib/urlstate.js writeState).
export function urlFields(C) {
  const out = { compare: 1, link: C.link ? 1 : 0, cmap: C.cmap !== "viridis" ? C.cmap : "", renorm: C.renorm ? 1 : "" };
  for (const s of sidesOf(C)) {
    Object.assign(out, { [`${s.name}.model`]: s.model, [`${s.name}.res`]: s.res || "", [`${s.name}.sample`]: s.img ? "" : s.sample,
      [`${s.name}.img`]: s.img, [`${s.name}.view`]: s.view, [`${s.name}.layer`]: s.layer === null ? "" : fromApi(s.layer),
      [`${s.name}.head`]: fromApi(s.head) });
  }
  const a = C.sides.a;
  if (C.query && a.A) {
    const { row, col } = patchRowCol(idxOf(a.A, C.query), a.A.grid.cols);
    out.qrow = row; out.qcol = col;
  }
  return out;
}

// The single view's URL for panel A (the "Single view" link).
export function singleHref(fields) {
  const p = new URLSearchParams();
  for (const k of KEYS) { const v = fields[`a.${k}`]; if (v !== "" && v !== undefined) p.set(k, v); }
  return `/vision?${p}`;
}

// ---- geometry: one query, any grid -----------------------------------------------------------------------------
// A patch index <-> its centre {u, v} as a fraction of the grid, so a query maps onto a grid of another size.
export const rel = (A, idx) => ({ u: ((idx % A.grid.cols) + 0.5) / A.grid.cols, v: (Math.floor(idx / A.grid.cols) + 0.5) / A.grid.rows });
export const idxOf = (A, q) => (q ? Math.min(A.grid.rows - 1, Math.floor(q.v * A.grid.rows)) * A.grid.cols
  + Math.min(A.grid.cols - 1, Math.floor(q.u * A.grid.cols)) : null);
export const centre = (A) => rel(A, Math.floor(A.grid.rows / 2) * A.grid.cols + Math.floor(A.grid.cols / 2));
export const sameGrid = (x, y) => x && y && x.grid.rows === y.grid.rows && x.grid.cols === y.grid.cols;
