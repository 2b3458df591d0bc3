// The vision analysis as the pages see it (the counterpart of text/data.js): run the model on an image, adopt the
// response as an analysis object, fetch one query patch's row and a rollout (each kept in a small cache on the
// analysis), and build the map of a selection with its title and caption. The single view (main.js), the
// side-by-side view (compare/) and the notebook all read analyses through this module.
//
// A selection is {view: "head" | "mean" | "rollout", layer, head, query, fusion, discard, pinned}: layer, head and
// query are 0-based API indices (query: a row-major patch index, or null for the [CLS] map; pinned: it was
// clicked, so every head's row is fetched at once); lib/numbering.js turns them into screen numbers.
import { apiGet, apiPost } from "../lib/api.js";
import { fromApi, patchName } from "../lib/numbering.js";
import { decodeTyped } from "../lib/typed.js";

const PATCH_CACHE = 400; // patch rows kept per analysis (hovering fetches one per patch)

// (L, H, P) per-head maps -> (L, P) mean over heads.
export function headMeans(cls, L, H, P) {
  const means = new Float32Array(L * P); // (L, P)
  for (let l = 0; l < L; l++) for (let h = 0; h < H; h++) for (let p = 0; p < P; p++) means[l * P + p] += cls[(l * H + h) * P + p] / H;
  return means;
}

// One map of (L, H, P) per-head maps or their (L, P) means: head null = the mean of heads.
export function clsMap(A, layer, head) {
  const P = A.P;
  return head === null ? A.means.subarray(layer * P, (layer + 1) * P) : A.cls.subarray((layer * A.H + head) * P, (layer * A.H + head + 1) * P);
}

export function loadImage(src) {
  const img = new Image();
  img.src = src;
  return img.decode().then(() => img, () => { throw new Error("The analysed image could not be loaded; analyse it again."); });
}

// POST /api/vision/analyze for source {file} | {sample} | {hash} under `model` at `res` px (0: the model's own),
// then load the analysed image; resolves to the adopted analysis (see adopt).
export async function analyzeImage(source, { model, res = 0, signal } = {}) {
  const fd = new FormData();
  if (source.file) fd.append("image", source.file, source.file.name || "pasted-image.png");
  else if (source.sample) fd.append("sample", source.sample);
  else fd.append("image_hash", source.hash);
  fd.append("model", model);
  if (res) fd.append("resolution", String(res));
  const r = await apiPost("/api/vision/analyze", fd, { signal });
  return adopt(r, await loadImage(r.image_url));
}

// The /analyze response and its decoded image -> the analysis object every view reads.
export function adopt(r, image) {
  const cls = decodeTyped(r.cls_attention).data; // (L, H, P)
  const { num_layers: L, num_heads: H } = r.model, P = r.grid.rows * r.grid.cols;
  const o = r.rollout_options || { head_fusion: "mean", discard_ratio: 0 };
  return {
    id: r.analysis_id, hash: r.image_hash, model: r.model, grid: r.grid, clsQuery: r.cls_query, L, H, P,
    cls, means: headMeans(cls, L, H, P), predictions: r.predictions, image, forwardMs: r.forward_ms,
    patches: new Map(), // `${layer}|${head}|${query}` -> Float32Array (P)
    rollouts: new Map([[rolloutKey(o.head_fusion, o.discard_ratio), decodeTyped(r.rollout).data]]), // (P) each
  };
}

const rolloutKey = (fusion, discard) => `${fusion}|${Number(discard).toFixed(2)}`;

// One query patch's attention row over the patches, for one head (null: the mean of heads): Float32Array (P).
export async function fetchPatchRow(A, layer, head, query, signal) {
  const key = `${layer}|${head ?? "mean"}|${query}`;
  if (A.patches.has(key)) return A.patches.get(key);
  const q = new URLSearchParams({ layer, query });
  if (head !== null) q.set("head", head);
  const r = await apiGet(`/api/vision/analysis/${A.id}/attention?${q}`, { signal });
  const values = decodeTyped(r.values).data;
  A.patches.set(key, values);
  if (A.patches.size > PATCH_CACHE) A.patches.delete(A.patches.keys().next().value);
  return values;
}

// A clicked patch's rows in every layer and head, in one request (GET .../patch; at 448 and 518 px the server
// recomputes them from the stored residual stream): fills the row cache for each (layer, head). The mean of heads
// is still fetched as the server computes it, so the drawn numbers are the API's to the last bit.
export async function fetchPatchAll(A, query, signal) {
  if (A.patches.has(`0|0|${query}`)) return;
  const r = await apiGet(`/api/vision/analysis/${A.id}/patch?query=${query}`, { signal });
  const v = decodeTyped(r.values).data; // (L, H, R, C)
  const { L, H, P } = A;
  for (let i = 0; i < L * H; i++) A.patches.set(`${Math.floor(i / H)}|${i % H}|${query}`, v.slice(i * P, (i + 1) * P));
  while (A.patches.size > PATCH_CACHE) A.patches.delete(A.patches.keys().next().value);
}

// Attention rollout with these options (the response's own is there already): Float32Array (P).
export async function fetchRollout(A, fusion, discard, signal) {
  const key = rolloutKey(fusion, discard);
  if (!A.rollouts.has(key)) {
    const r = await apiGet(`/api/vision/analysis/${A.id}/rollout?head_fusion=${fusion}&discard_ratio=${discard}`, { signal });
    A.rollouts.set(key, decodeTyped(r.rollout).data);
  }
  return A.rollouts.get(key);
}

// "patch row 3, col 5" for a patch of this analysis.
export const patchLabel = (A, index) => patchName(index, A.grid.cols);

// Title and caption of a selection (no values): {title, heading, where, what, caption}. `title` names the map
// ("Layer 3 · head 2 · query patch row 1, col 4"), `heading` the layer and head alone, `where` the same in lower
// case for the middle of a sentence, `what` the quantity in a few words, `caption` what the map shows.
export function describeMap(A, sel) {
  const head = sel.view === "mean" ? null : sel.head, q = sel.view === "rollout" ? null : sel.query;
  const cls = A.clsQuery === "cls";
  if (sel.view === "rollout") {
    const fusion = sel.fusion || "mean", pct = Math.round((sel.discard || 0) * 100);
    return {
      title: `Attention rollout \u00b7 layers 1\u2013${A.L}`, where: `rollout, layers 1\u2013${A.L}`,
      what: cls ? "rollout from [CLS]" : "rollout, mean of patch rows",
      caption: `Attention rollout (Abnar & Zuidema 2020; ViT Fig. 6 and App. D.8): heads fused by ${fusion}, the weakest ${pct}% `
        + "of the patch-to-patch entries discarded (never a prefix row or column: [CLS] and registers included), identity added "
        + `for the residual connection, rows renormalised, layers 1 to ${A.L} multiplied. `
        + (cls ? "Row [CLS] of the product: rollout's estimate of how much each patch feeds the final [CLS] token "
          + "(it mixes attention linearly; the values, the output projections and the MLPs are ignored, so it is not a measured contribution)."
          : "This model has no [CLS] token: shown is the mean over the patch rows of the product."),
    };
  }
  const layer = fromApi(sel.layer), heads = head === null ? `mean of ${A.H} heads` : `head ${fromApi(head)}`;
  const heading = `Layer ${layer} \u00b7 ${heads}`, where = `layer ${layer} \u00b7 ${heads}`;
  if (q !== null && q !== undefined) {
    const name = patchLabel(A, q);
    return {
      title: `${heading} \u00b7 query ${name}`, heading, where, what: `query ${name}`,
      caption: `Where the outlined patch (${name}) attends in layer ${layer}, ${head === null ? "averaged over heads" : `head ${fromApi(head)}`}: `
        + `its row of the attention matrix, over the image patches${A.grid.num_prefix_tokens ? " (the share it gives the [CLS] and other prefix tokens is not drawn)" : ""}.`,
    };
  }
  return {
    title: heading, heading, where, what: cls ? "[CLS] attention" : "mean patch-query attention",
    caption: `${heading}: ` + (cls
      ? "how strongly the [CLS] token attends to each patch (its row of the softmax attention matrix without the prefix tokens, so the patch weights sum to less than 1; ViT paper Sec. 3.1)."
      : "this model has no [CLS] token, so the map is the attention of the average patch query: each patch's mean weight as a key."),
  };
}

// The values of a selection (fetched when they are not in the analysis) with its description, plus
// meta {view, layer, head ("mean" for the mean of heads), query} and q, the query patch drawn (null: none).
export async function mapOf(A, sel, signal) {
  const head = sel.view === "mean" ? null : sel.head, q = sel.view === "rollout" ? null : (sel.query ?? null);
  const meta = { view: sel.view, layer: sel.layer, head: head ?? "mean", query: q };
  let values;
  if (sel.view === "rollout") values = await fetchRollout(A, sel.fusion || "mean", sel.discard || 0, signal);
  else if (q !== null) {
    if (sel.pinned) await fetchPatchAll(A, q, signal); // a clicked patch: every head at once
    values = await fetchPatchRow(A, sel.layer, head, q, signal);
  }
  else values = clsMap(A, sel.layer, head);
  return { values, meta, q, ...describeMap(A, sel) };
}
