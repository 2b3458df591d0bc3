// The vision page's "Entropy" view: for one layer and head, the Shannon entropy (nats) of each query patch's
// attention row over the patch keys, drawn on the photo. Computed once per analysis on the server
// (models/vision/views.py: patch_entropy, GET /api/vision/analysis/{id}/entropy) and in the notebook output
// (show_vision: the same function). Prefix tokens ([CLS], registers) are left out and each row renormalised
// over the patches, so 0 = the patch looks at one patch, log(P) = it looks at every patch equally.
import { apiGet } from "../lib/api.js";
import { fromApi } from "../lib/numbering.js";
import { decodeTyped } from "../lib/typed.js";

const cache = new Map(); // `${aid}|${layer}|${head}` -> {values, maxEntropy, perHead, label}
const CACHE_MAX = 500;

// What the map shows, in words (layers and heads count from 1 on screen).
export function entropyCaption(label, layer, head, numPatches, maxEntropy, mean = null) {
  const who = head === null ? `the mean over heads of layer ${fromApi(layer)}` : `layer ${fromApi(layer)}, head ${fromApi(head)}`;
  return `Attention entropy of ${label}, ${who}: for each query patch, the Shannon entropy in nats of its attention `
    + `row over the ${numPatches} patches (softmax probabilities, Section 3.2.1 of \u201cAttention Is All You Need\u201d), `
    + "with the prefix tokens left out and the row renormalised over the patches. "
    + `0 means the patch attends to a single patch; the maximum, log(${numPatches}) = ${maxEntropy.toFixed(2)} nats, `
    + "means it attends to every patch equally (uniform attention)."
    + (mean === null ? "" : ` Mean over the patches: ${mean.toFixed(2)} nats.`);
}

// {values, meta, title, caption} for the overlay, as main.js's currentMap() returns for the other views.
export async function entropyMap(A, layer, head, signal) {
  const key = `${A.id}|${layer}|${head ?? "mean"}`;
  let r = cache.get(key);
  if (!r) {
    const q = new URLSearchParams({ layer });
    if (head !== null) q.set("head", head);
    const resp = await apiGet(`/api/vision/analysis/${A.id}/entropy?${q}`, { signal });
    r = { values: decodeTyped(resp.values).data, maxEntropy: resp.max_entropy, perHead: decodeTyped(resp.per_head).data, label: resp.label };
    cache.set(key, r);
    if (cache.size > CACHE_MAX) cache.delete(cache.keys().next().value);
  }
  const mean = head === null ? null : r.perHead[layer * A.H + head];
  const title = `Attention entropy \u00b7 layer ${fromApi(layer)} \u00b7 ${head === null ? `mean of ${A.H} heads` : `head ${fromApi(head)}`}`;
  return { values: r.values, meta: { view: "entropy", layer, head: head ?? "mean", query: null }, title,
    caption: entropyCaption(r.label, layer, head, A.P, r.maxEntropy, mean) };
}
