// Side by side on /vision, the difference panel's sentences (pure: strings from the two panels' analyses and
// selections). Head h of one model has nothing to do with head h of another, and layer l of models of different
// depths is not the same stage either, so across models only the head mean and rollout compare, each map first
// renormalised over the patches (issue 15, "two methods that mislead").
import { fmtValue } from "../../lib/colormap.js";
import { fromApi } from "../../lib/numbering.js";

const modelLabel = (A) => A.model.label || A.model.id;
const models = (a, b) => `A: ${modelLabel(a.A)}, B: ${modelLabel(b.A)}`;

// The two panels hold analyses of different models (what they show, not what the selects say mid-switch).
export const crossModel = (a, b) => a.A.model.id !== b.A.model.id;

// Why there is no patch-by-patch difference: the grids differ in rows × columns.
export function gridMismatchCaption(a, b) {
  return `No difference map: A has ${a.A.grid.rows}\u00d7${a.A.grid.cols} patches, B has `
    + `${b.A.grid.rows}\u00d7${b.A.grid.cols}. A patch-by-patch difference needs the same grid of rows \u00d7 columns.`;
}

// Across models with either panel on a single head: the difference is not drawn, and this says why.
export function crossModelHeadCaption(a, b) {
  const lead = `A and B are different models (${models(a, b)}). `;
  const what = a.view === "head" && b.view === "head"
    ? `Head ${fromApi(a.head)} of one model has nothing to do with head ${fromApi(b.head)} of the other`
    : `Head ${fromApi((a.view === "head" ? a : b).head)} of ${a.view === "head" ? "A" : "B"} has no counterpart in the other model`;
  return `${lead}${what}: only the head mean and rollout compare across models. Switch both panels to `
    + "\"Mean of heads\" or \"Rollout\" for a difference that means something.";
}

// The first sentences of a renormalised difference B̂ − Â (l1 = Σ |B̂ − Â|), prefixed across models.
export function renormCaption(a, b, l1) {
  const { rows, cols } = a.A.grid;
  const lead = crossModel(a, b)
    ? `A and B are different models (${models(a, b)}): head h of one has nothing to do with head h of the other, `
      + "so only the head mean and rollout compare. "
    : "";
  return `${lead}Shown: B\u0302 \u2212 \u00c2, each map first renormalised over its ${rows}\u00d7${cols} patches (it sums to 1 `
    + `there), so attention that one ${lead ? "model" : "map"} sends to [CLS] or register tokens and the other does not (an attention sink) does `
    + `not dominate the difference. \u03a3 |B\u0302 \u2212 \u00c2| = ${fmtValue(l1)} (0: the same distribution over patches; `
    + "2: disjoint).";
}

// Same rows × columns but different patch size or input resolution: the cells cover different parts of the photo.
export function geometryClause(a, b) {
  const ga = a.A.grid, gb = b.A.grid;
  if (ga.patch_size === gb.patch_size && ga.resolution === gb.resolution) return "";
  return ` Same ${ga.rows}\u00d7${ga.cols} grid, but A has ${ga.patch_size} px patches at ${ga.resolution} px and B `
    + `${gb.patch_size} px patches at ${gb.resolution} px: patch (r, c) covers a different part of the photo in each, `
    + "so the difference compares grid cells, not image regions.";
}
