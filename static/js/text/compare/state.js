// Side by side on /text, the state: what the permalink holds and how it is read and written. State lives in the
// URL (lib/urlstate.js): compare=1, link, hide, merge, vw (value-weighted) and per side a.text, a.model, a.target, a.kind, a.layer,
// a.head (and b.*); layers and heads count from 1 there and on screen, from 0 here and in the API
// (lib/numbering.js converts).
import { fromApi, toApi } from "../../lib/numbering.js";
import { readState } from "../../lib/urlstate.js";
import { kindLabel } from "../data.js";

export const SIDES = ["a", "b"];
const URL_TEXT_MAX = 300; // longer texts are not put in the URL (as on the single view)
const EXAMPLE = "The animal didn't cross the street because it was too tired.";

// The compare permalink from the single view's URL: A = what the single view shows, B = the same text, model,
// kind and layer with the next head (two heads of one layer side by side, unlinked).
export function compareHref(search) {
  const p = new URLSearchParams(search), q = new URLSearchParams({ compare: "1", link: "0" });
  for (const k of ["hide", "merge", "vw"]) if (p.get(k)) q.set(k, p.get(k));
  const head = p.get("head") || "1";
  for (const side of SIDES) {
    for (const k of ["text", "model", "target", "kind", "layer"]) if (p.get(k)) q.set(`${side}.${k}`, p.get(k));
    q.set(`${side}.head`, side === "a" ? head : head === "mean" ? "1" : String(Number(head) + 1)); // the next head
  }
  return `/text?${q}`;
}

// The compare state C from the URL: {link, hide, merge, vw, sides: {a, b}}; `models` maps id -> model entry.
export function readCompareState(pd, models) {
  const defaults = { link: false, hide: false, merge: false, vw: false };
  for (const s of SIDES) Object.assign(defaults, { [`${s}.text`]: "", [`${s}.model`]: pd.default_model, [`${s}.target`]: "",
    [`${s}.kind`]: "", [`${s}.layer`]: 1, [`${s}.head`]: "1" });
  const u = readState(defaults);
  const C = { link: u.link, hide: u.hide, merge: u.merge, vw: u.vw, sides: {} };
  for (const name of SIDES) {
    C.sides[name] = {
      name, text: u[`${name}.text`] || u["a.text"] || EXAMPLE,
      model: models.has(u[`${name}.model`]) ? u[`${name}.model`] : pd.default_model, target: u[`${name}.target`],
      kind: u[`${name}.kind`], layer: toApi(u[`${name}.layer`]), head: toApi(u[`${name}.head`]),
      A: null, W: null, values: null, token: 0, ui: null, weighted: false, vwNote: "",
      wrap: name === "b", // B's first analysis: a head past the last one (compareHref's "next head") wraps to head 1
    };
  }
  return C;
}

export const sidesOf = (C) => SIDES.map((n) => C.sides[n]);
export const otherSide = (C, s) => C.sides[s.name === "a" ? "b" : "a"];

// Keep a side's kind / layer / head inside its analysis.
export function clamp(s) {
  const kinds = s.A.kinds();
  if (!kinds.includes(s.kind)) s.kind = kinds[0];
  const b = s.A.block(s.kind);
  s.layer = Math.min(Math.max(0, Number(s.layer) || 0), b.layers - 1);
  const head = Math.max(0, Number(s.head) || 0);
  if (s.head !== "mean") s.head = s.wrap && head >= b.heads ? 0 : Math.min(head, b.heads - 1);
  s.wrap = false;
}

// "Encoder self-attention · layer 2 · head 3" for side s.
export const where = (s) => `${kindLabel(s.kind, s.A.resp.model.kind)} \u00b7 layer ${fromApi(s.layer)} \u00b7 ${
  s.head === "mean" ? "mean of heads" : `head ${fromApi(s.head)}`}`;

// True when both sides show exactly the same query and key tokens (a cell-by-cell difference is defined).
export function sameTokens(a, b) {
  const eq = (x, y) => x.length === y.length && x.every((t, i) => t === y[i]);
  return eq(a.A.queryAxis(a.kind).labels, b.A.queryAxis(b.kind).labels) && eq(a.A.keyAxis(a.kind).labels, b.A.keyAxis(b.kind).labels);
}

// The permalink's fields for state C.
export function urlFields(C) {
  const out = { compare: 1, link: C.link, hide: C.hide, merge: C.merge, vw: C.vw };
  for (const s of sidesOf(C)) {
    Object.assign(out, { [`${s.name}.text`]: s.text.length <= URL_TEXT_MAX ? s.text : "", [`${s.name}.model`]: s.model,
      [`${s.name}.target`]: s.target && s.target.length <= URL_TEXT_MAX ? s.target : "", [`${s.name}.kind`]: s.kind,
      [`${s.name}.layer`]: fromApi(s.layer), [`${s.name}.head`]: fromApi(s.head) });
  }
  return out;
}

// The single view's URL for panel A (the "Single view" link).
export function singleHref(C, fields) {
  const a = C.sides.a, p = new URLSearchParams();
  for (const [k, v] of Object.entries({ text: fields["a.text"], model: a.model, target: fields["a.target"], kind: a.kind,
    layer: fromApi(a.layer), head: fromApi(a.head), view: "matrix", hide: C.hide ? "1" : "", merge: C.merge ? "1" : "", vw: C.vw ? "1" : "" })) {
    if (v !== "" && v !== undefined) p.set(k, v);
  }
  return `/text?${p}`;
}
