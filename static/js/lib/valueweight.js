// Value-weighted attention (Kobayashi et al. 2020, "Attention is Not Only a Weight", Section 3) in the browser.
// The server sends the norms ‖f_h(x_j)‖ of the key columns a view draws (models/value_norms.py, recorded in the
// forward that captured the attention); here each drawn row is multiplied by them, key by key, and renormalised
// to sum 1 over the keys drawn. The mean of heads is the mean of the per-head renormalised maps.
// Text: WeightedAnalysis wraps text/data.js's Analysis with the same methods, so the head, model and matrix views
// draw it unchanged. Vision: weighVisionMap / weighVisionGrid transform what vision/data.js gives the page.
import { apiGet } from "./api.js";
import { el } from "./dom.js";
import { decodeTyped } from "./typed.js";

export const WHAT = "Value-weighted: α_ij·‖f_h(x_j)‖ with f_h(x) = (x W_V^h + b_V^h) W_O^h (Kobayashi et al. 2020, Sec. 3), "
  + "the shared output bias b_O left out";
const pct = (x) => `${(100 * x).toFixed(x < 0.1 ? 1 : 0)}%`;

// rows (nq × nk, times factor) × norms (nk) key by key, each row renormalised to sum 1: Float32Array (nq × nk).
export function weighRows(values, nq, nk, norms, factor = 1) {
  const out = new Float32Array(nq * nk);
  for (let i = 0; i < nq; i++) {
    let s = 0;
    for (let j = 0; j < nk; j++) { const v = values[i * nk + j] * factor * norms[j]; out[i * nk + j] = v; s += v; }
    if (s > 0) for (let j = 0; j < nk; j++) out[i * nk + j] /= s;
  }
  return out;
}

// The toggle: a checkbox with its label, off at first; onChange(checked).
export function valueToggle(id, onChange, checked = false) {
  const box = el("input", { type: "checkbox", id });
  box.checked = checked;
  box.addEventListener("change", () => onChange(box.checked));
  return el("label", { title: "Weight each key's attention by the norm of what that head writes from it (Kobayashi et al. 2020)" }, box, " value-weighted");
}

// Enable or disable a toggle made by valueToggle, with the reason as its title.
export function setToggle(label, enabled, reason = "") {
  const box = label.querySelector("input");
  box.disabled = !enabled;
  if (!enabled) box.checked = false;
  label.classList.toggle("dim", !enabled);
  if (reason) label.title = reason;
}

// ---- text -----------------------------------------------------------------------------------------------

// GET the norms of the analysis under its view options (cached on the analysis): {available, reason, caption, blocks}.
export async function textNorms(A) {
  if (!A._valueNorms) {
    const o = A.options, q = `hide_special=${o.hide_special}&merge_words=${o.merge_words}`;
    A._valueNorms = apiGet(`/api/text/analysis/${A.id}/value_norms?${q}`).then((r) => ({
      ...r,
      blocks: new Map(r.blocks.map((b) => [b.kind, {
        norms: b.norms ? decodeTyped(b.norms).data : null, attn: decodeTyped(b.special_attention).data, weighted: decodeTyped(b.special_weighted).data,
      }])),
    }));
    A._valueNorms.catch(() => { A._valueNorms = null; });
  }
  return A._valueNorms;
}

// Block starts of the server's max pooling (models/text/stats.py pool_max): floor(k * n / size).
const starts = (n, size) => Array.from({ length: size }, (_, k) => Math.floor((k * n) / size));

function poolMax(map, nq, nk, tq, tk) {
  const out = new Float32Array(tq * tk), qs = starts(nq, tq), ks = starts(nk, tk);
  for (let r = 0; r < tq; r++) {
    const qe = r + 1 < tq ? qs[r + 1] : nq;
    for (let c = 0; c < tk; c++) {
      const ke = c + 1 < tk ? ks[c + 1] : nk;
      let m = 0;
      for (let i = qs[r]; i < qe; i++) for (let j = ks[c]; j < ke; j++) m = Math.max(m, map[i * nk + j]);
      out[r * tk + c] = m;
    }
  }
  return out;
}

export class WeightedAnalysis {
  constructor(base, vw) {
    Object.assign(this, { base, vw, resp: base.resp, id: base.id, options: base.options });
    this.layerCache = new Map(); this.blockCache = new Map();
  }

  kinds() { return this.base.kinds(); }
  axis(side) { return this.base.axis(side); }
  queryAxis(kind) { return this.base.queryAxis(kind); }
  queryTokens(kind) { return this.base.queryTokens(kind); }
  hasSteps(kind) { return this.base.hasSteps(kind); }
  keyAxis(kind) { return this.base.keyAxis(kind); }
  isFuture(kind, i, j) { return this.base.isFuture(kind, i, j); }
  stats(kind, layer, head) { return this.base.stats(kind, layer, head); }
  block(kind) { return this.blockCache.get(kind) || this.base.block(kind); }
  hasLayer() { return true; } // the head view then draws from the whole weighted layer, never from top-k lines

  norms(kind, layer, head) {
    const b = this.base.block(kind), n = b.n_key, off = (layer * b.heads + head) * n;
    return this.vw.blocks.get(kind).norms.subarray(off, off + n);
  }

  // Every head of one layer, value-weighted: {values: Float32Array (H × nq × nk), factor: 1}.
  async layer(kind, layer) {
    const key = `${kind}/${layer}`;
    if (!this.layerCache.has(key)) {
      const b = this.base.block(kind), { values, factor } = await this.base.layer(kind, layer), n = b.n_query * b.n_key;
      const out = new Float32Array(b.heads * n);
      for (let h = 0; h < b.heads; h++) out.set(weighRows(values.subarray(h * n, (h + 1) * n), b.n_query, b.n_key, this.norms(kind, layer, h), factor), h * n);
      this.layerCache.set(key, { values: out, factor: 1 });
      while (this.layerCache.size > 8) this.layerCache.delete(this.layerCache.keys().next().value);
    }
    return this.layerCache.get(key);
  }

  // One head (full precision) or the mean of the weighted heads: Float32Array (nq × nk).
  async head(kind, layer, head) {
    const b = this.base.block(kind), n = b.n_query * b.n_key;
    if (head !== "mean") return weighRows(await this.base.head(kind, layer, head), b.n_query, b.n_key, this.norms(kind, layer, head));
    const { values } = await this.layer(kind, layer), out = new Float32Array(n);
    for (let h = 0; h < b.heads; h++) for (let i = 0; i < n; i++) out[i] += values[h * n + i] / b.heads;
    return out;
  }

  // Weighted thumbnails of every layer for the model view, pooled and scaled like the server's (per map max).
  async prepare(kind) {
    if (this.blockCache.has(kind)) return;
    const b = this.base.block(kind), [L, cols, tq, tk] = b.thumbsT.shape, n = b.n_query * b.n_key;
    const thumbs = new Uint8Array(L * cols * tq * tk), scale = new Float32Array(L * cols);
    for (let l = 0; l < L; l++) {
      const { values } = await this.layer(kind, l), mean = new Float32Array(n);
      for (let h = 0; h < b.heads; h++) for (let i = 0; i < n; i++) mean[i] += values[h * n + i] / b.heads;
      for (let h = 0; h < cols; h++) {
        const pooled = poolMax(h === b.heads ? mean : values.subarray(h * n, (h + 1) * n), b.n_query, b.n_key, tq, tk);
        const m = pooled.reduce((a, v) => Math.max(a, v), 0), off = (l * cols + h) * tq * tk;
        scale[l * cols + h] = m;
        for (let i = 0; i < pooled.length; i++) thumbs[off + i] = m > 0 ? Math.round((pooled[i] / m) * 255) : 0;
      }
    }
    const shape = [L, cols, tq, tk];
    this.blockCache.set(kind, { ...b, dataT: null, thumbsT: { data: thumbs, shape }, scaleT: { data: scale, shape: [L, cols] } });
  }
}

// One sentence for a layer/head of a block: what is shown, and how much special-token attention survives.
export function textCaption(vw, kind, layer, head, heads, inline) {
  const b = vw.blocks.get(kind);
  const at = (arr) => (head === "mean" ? Array.from(arr.subarray(layer * heads, (layer + 1) * heads)).reduce((a, v) => a + v, 0) / heads : arr[layer * heads + head]);
  const a = at(b.attn), w = at(b.weighted);
  return `${WHAT}. Each row is renormalised to sum 1 over the keys drawn${head === "mean" ? "; the mean of heads averages the weighted heads" : ""}`
    + `${inline ? "" : " (from the 8-bit layer: 1/255 steps before weighting)"}. `
    + `Special tokens take ${pct(a)} of a row's attention here (mean over queries) and ${pct(w)} of the value-weighted mass`
    + `${a > 0 ? ` (value weighting multiplies their share by ${(w / a).toFixed(2)})` : ""}.`;
}

// ---- vision ---------------------------------------------------------------------------------------------

export async function visionNorms(A) {
  if (!A._valueNorms) {
    A._valueNorms = apiGet(`/api/vision/analysis/${A.id}/value_norms`).then((r) => (r.available ? {
      ...r, norms: decodeTyped(r.norms).data, attn: decodeTyped(r.prefix_attention).data, weighted: decodeTyped(r.prefix_weighted).data,
    } : r));
    A._valueNorms.catch(() => { A._valueNorms = null; });
  }
  return A._valueNorms;
}

const patchNorms = (A, vw, layer, head) => vw.norms.subarray((layer * A.H + head) * A.P, (layer * A.H + head + 1) * A.P);

// The [CLS] (or mean patch-query) maps of every layer and head, value-weighted: {cls (L, H, P), means (L, P)}.
export function weighVisionGrid(A, vw) {
  if (!A._weightedGrid) {
    const cls = new Float32Array(A.L * A.H * A.P), means = new Float32Array(A.L * A.P);
    for (let l = 0; l < A.L; l++) for (let h = 0; h < A.H; h++) {
      const off = (l * A.H + h) * A.P, row = weighRows(A.cls.subarray(off, off + A.P), 1, A.P, patchNorms(A, vw, l, h));
      cls.set(row, off);
      for (let p = 0; p < A.P; p++) means[l * A.P + p] += row[p] / A.H;
    }
    A._weightedGrid = { cls, means };
  }
  return A._weightedGrid;
}

// A map of vision/data.js mapOf, value-weighted (rollout and entropy are left as they are, and say so).
// fetchRow(layer, head, query) gives one head's patch row (the mean of heads needs every head's).
export async function weighVisionMap(A, vw, m, fetchRow) {
  const { view, layer, query } = m.meta;
  if (view === "rollout" || view === "entropy") return { ...m, caption: `${m.caption} (Value weighting does not apply to this view.)` };
  const heads = m.meta.head === "mean" ? [...Array(A.H).keys()] : [m.meta.head];
  const values = new Float32Array(A.P);
  for (const h of heads) {
    const row = query === null || query === undefined ? weighVisionGrid(A, vw).cls.subarray((layer * A.H + h) * A.P, (layer * A.H + h + 1) * A.P)
      : weighRows(await fetchRow(layer, h, query), 1, A.P, patchNorms(A, vw, layer, h));
    for (let p = 0; p < A.P; p++) values[p] += row[p] / heads.length;
  }
  const at = (arr) => heads.reduce((s, h) => s + arr[layer * A.H + h], 0) / heads.length;
  const a = at(vw.attn), w = at(vw.weighted), prefix = A.model.num_prefix_tokens > 1 ? "[CLS] and the other prefix tokens" : "[CLS]";
  const caption = `${m.caption} ${WHAT}; a LayerScale γ (DINOv2's) is part of f_h. Shown: each ${m.meta.head === "mean" ? "head's " : ""}row times the patch keys' norms, `
    + `renormalised to sum 1 over the patches${m.meta.head === "mean" ? ", then averaged over the heads" : ""}. `
    + `The patch queries give ${prefix} ${pct(a)} of their attention here and ${pct(w)} of the value-weighted mass${a > 0 ? ` (value weighting multiplies their share by ${(w / a).toFixed(2)})` : ""}.`;
  return { ...m, values, caption, title: `${m.title} \u00b7 value-weighted`, meta: { ...m.meta, value_weighted: true } };
}

// The vision page's toggle: mounted in `slot`; adopt(A) on every new analysis; grid(A) gives {cls, means} to draw
// (A itself when off); map(A, m, fetchRow) the big map (m itself when off). onChange() redraws.
export function visionValueWeight({ slot, checked, onChange, onError }) {
  let on = checked, data = null, current = null;
  const toggle = valueToggle("vz-vw", (v) => { on = v; load(); }, checked);
  slot.replaceChildren(toggle);
  async function load() {
    const A = current;
    data = null;
    if (A && on) {
      try {
        const d = await visionNorms(A);
        if (A !== current) return;
        if (d.available) data = d; else { on = false; setToggle(toggle, false, d.reason); }
      } catch (e) { onError(e); }
    }
    onChange();
  }
  return {
    on: () => on,
    adopt(A) { current = A; data = null; if (on) load(); },
    grid: (A) => (data && A === current ? weighVisionGrid(A, data) : A),
    map: (A, m, fetchRow) => (data && A === current ? weighVisionMap(A, data, m, fetchRow) : m),
  };
}
