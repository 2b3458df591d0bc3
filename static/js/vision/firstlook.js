// What /vision opens on when the URL names no image, and the always-visible note on bright background patches.
// The numbers are measured by bench/vision_first_look.py (models/vision/first_look.py) on the bundled sample
// photos and pinned by tests/models/test_first_look.py; change them together.
import { fromApi } from "../lib/numbering.js";

// Score of a layer: the share of its head-mean [CLS] map's mass (over the patches) held by the top 10% of the
// patches that touch another top-10% patch (a uniform map: about 0.10; one compact blob: 1; isolated specks: 0).
export const FIRST_LOOK = {
  model: "dinov2_vits14", modelLabel: "DINOv2 ViT-S/14", sample: "chelsea", res: 448, layer: 7, // 0-based: layer 8
  view: "mean", samples: 8,
  meanScore: 0.43, lastScore: 0.32, // mean over the 8 samples at 448 px: layer 8 (the best) and layer 12
  photoScore: 0.47, photoLastScore: 0.21, // the chelsea photo alone: layer 8 and layer 12
  maxNormRatio: 1.44, // the largest max/median output patch norm over the 8 samples, at 224 and 448 px
};

// The opening selection for the page's models: the measured one when the measured model is served, else the
// sample at the model's own resolution and its last layer (the measurement says nothing about other models).
export function firstLook(models, defaultModel) {
  const measured = models.find((m) => m.id === FIRST_LOOK.model);
  if (measured) {
    return { model: measured.id, sample: FIRST_LOOK.sample, view: FIRST_LOOK.view, layer: FIRST_LOOK.layer,
      res: measured.resolutions.includes(FIRST_LOOK.res) ? FIRST_LOOK.res : 0, measured: true };
  }
  return { model: defaultModel, sample: FIRST_LOOK.sample, view: FIRST_LOOK.view, layer: null, res: 0, measured: false };
}

// The sentence that says why the page opened where it did (shown above the map until the user changes anything).
export function firstLookCaption(A, look) {
  if (!look.measured || A.model.id !== FIRST_LOOK.model) {
    return `Opened on a sample photo at ${A.model.label}'s last layer; the layer the page opens at was measured for ${FIRST_LOOK.modelLabel} only.`;
  }
  const pct = (x) => `${Math.round(x * 100)}%`, L = fromApi(FIRST_LOOK.layer);
  return `Why layer ${L} at ${A.grid.resolution} px: of ${FIRST_LOOK.modelLabel}'s ${A.L} layers, its head-mean [CLS] maps are the most compact on our `
    + `${FIRST_LOOK.samples} sample photos: ${pct(FIRST_LOOK.meanScore)} of the attention in touching top-10% patches, against `
    + `${pct(FIRST_LOOK.lastScore)} at layer ${A.L} (uniform: 10%; this photo ${pct(FIRST_LOOK.photoScore)} vs ${pct(FIRST_LOOK.photoLastScore)}; bench/vision_first_look.py).`;
}

// One line, always visible near the map: what bright background patches are, and what they are not.
export function specksNote(A) {
  const what = "Bright isolated patches are high attention weights, not proof that those pixels matter";
  if (A.model.id !== FIRST_LOOK.model) return `${what}; whether they are the high-norm tokens of Darcet et al. 2023 was not measured for this model.`;
  return `${what}, and not the high-norm artifact tokens of Darcet et al. 2023 (Sec. 2): on our ${FIRST_LOOK.samples} samples `
    + `${FIRST_LOOK.modelLabel}'s output patch norms stay \u2264 ${FIRST_LOOK.maxNormRatio.toFixed(2)}\u00d7 the median.`;
}

// Put the opening selection into the page state S, except what the URL names itself (?layer=, ?view=, ...).
export function applyFirstLook(S, look, search = window.location.search) {
  const given = new URLSearchParams(search);
  S.sample = look.sample;
  if (!given.has("model")) S.model = look.model;
  if (!given.has("res") && S.model === look.model) S.res = look.res;
  if (!given.has("layer")) S.layer = S.model === look.model ? look.layer : null; // another model: its last layer
  if (!given.has("view")) S.view = look.view;
}
