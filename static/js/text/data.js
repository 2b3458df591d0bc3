// The analysis as the page sees it: the overview response plus per-layer / per-head maps, taken from the
// inline blocks when the server sent them whole, otherwise fetched on demand (and kept in a small LRU).
import { apiGet, apiPost } from "../lib/api.js";
import { decodeTyped } from "../lib/typed.js";

// Layers and heads are 1-based on screen and 0-based here and in the API: lib/numbering.js converts.
const KIND_LABELS = {
  encoder_self: "Encoder self-attention",
  decoder_self: "Decoder masked self-attention",
  cross: "Cross (encoder–decoder) attention",
};
const SHORT_LABELS = { encoder_self: "Encoder self", decoder_self: "Decoder masked self", cross: "Cross (enc–dec)" };
export function kindLabel(kind, modelKind, short = false) {
  if (modelKind === "causal" && kind === "decoder_self") return short ? "Masked self (decoder-only)" : "Masked self-attention (decoder-only)";
  return (short ? SHORT_LABELS : KIND_LABELS)[kind] || kind;
}

function query(params) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined) p.set(k, typeof v === "boolean" ? (v ? "true" : "false") : String(v));
  return p.toString();
}

function decodeLines(r) {
  return { index: decodeTyped(r.index).data, weight: decodeTyped(r.weight).data, k: r.k };
}

export class Analysis {
  constructor(resp) {
    this.resp = resp;
    this.id = resp.analysis_id;
    this.options = resp.options;
    this.blocks = new Map();
    for (const b of resp.blocks) {
      const scale = decodeTyped(b.thumb_scale), stats = decodeTyped(b.stats);
      const block = { ...b, scaleT: scale, statsT: stats, dataT: b.data ? decodeTyped(b.data) : null };
      let thumbs = null; // decoded when the model view first reads them (not on the way to the first view)
      Object.defineProperty(block, "thumbsT", { get: () => (thumbs = thumbs || decodeTyped(b.thumbs)) });
      this.blocks.set(b.kind, block);
    }
    this.layers = new Map(); // "kind/layer" -> {values: Float32Array|Uint8Array, factor}
    this.heads = new Map(); // "kind/layer/head" -> Float32Array
    if (resp.first) this.layers.set(`${resp.first.kind}/${resp.first.layer}`, { values: decodeTyped(resp.first.data).data, factor: 1 / 255 });
    this.lineSets = new Map(); // "kind/layer" -> {index: Uint16Array, weight: Uint8Array, k} (long inputs)
    if (resp.first_lines) this.lineSets.set(`${resp.first_lines.kind}/${resp.first_lines.layer}`, decodeLines(resp.first_lines));
  }

  // True when every weight of the layer is here (inline blocks or a layer already fetched).
  hasLayer(kind, layer) { return Boolean(this.block(kind).dataT) || this.layers.has(`${kind}/${layer}`); }

  // A long input's head view: each (head, query)'s k strongest lines, weight = weight[(h * nq + i) * k + t] / 255
  // for key index[(h * nq + i) * k + t]. Small (k per row, not n_key): the full layer is fetched on hover only.
  async lines(kind, layer) {
    const key = `${kind}/${layer}`;
    if (this.lineSets.has(key)) return this.lineSets.get(key);
    const r = await apiGet(`/api/text/analysis/${this.id}/lines?${query({ kind, layer, ...this.options })}`);
    return this._remember(this.lineSets, key, decodeLines(r), 12);
  }

  block(kind) { return this.blocks.get(kind); }
  kinds() { return [...this.blocks.keys()]; }
  axis(side) { return this.resp.axes[side]; }
  // Decoder rows (query side "target") are named by the step they write: "<s> → 1", "1 → 7", ... (the server's
  // axes.target.steps; models/text/steps.py). Their keys keep the plain decoder-input labels.
  queryAxis(kind) {
    const side = this.block(kind).query_side, ax = this.axis(side);
    if (side !== "target" || !ax.steps) return ax;
    return (this._stepAxis = this._stepAxis || { ...ax, labels: ax.steps });
  }
  // Raw (unmerged) decoder tokens named by their step, for views that work on raw tokens (the neuron view).
  queryTokens(kind) {
    const side = this.block(kind).query_side, r = this.resp;
    if (side !== "target" || !r.predicted) return r[side].tokens;
    return r.target.tokens.map((t, i) => `${t} → ${r.predicted[i] ?? ""}`);
  }
  hasSteps(kind) { return this.block(kind).query_side === "target" && Boolean(this.axis("target").steps); }
  keyAxis(kind) { return this.axis(this.block(kind).key_side); }

  _remember(map, key, value, max) {
    map.set(key, value);
    while (map.size > max) map.delete(map.keys().next().value);
    return value;
  }

  // Every head of one layer: {values, factor} with weight = values[(h * nq + i) * nk + j] * factor.
  async layer(kind, layer) {
    const b = this.block(kind), key = `${kind}/${layer}`;
    if (b.dataT) {
      const n = b.heads * b.n_query * b.n_key;
      return { values: b.dataT.data.subarray(layer * n, (layer + 1) * n), factor: 1 };
    }
    if (this.layers.has(key)) return this.layers.get(key);
    const r = await apiGet(`/api/text/analysis/${this.id}/layer?${query({ kind, layer, ...this.options })}`);
    return this._remember(this.layers, key, { values: decodeTyped(r.data).data, factor: 1 / 255 }, 6);
  }

  // One head (or the mean over heads when head === "mean") at full precision: Float32Array (nq * nk).
  async head(kind, layer, head) {
    const b = this.block(kind), key = `${kind}/${layer}/${head}`, n = b.n_query * b.n_key;
    if (this.heads.has(key)) return this.heads.get(key);
    let out;
    if (b.dataT) {
      const base = layer * b.heads * n;
      if (head === "mean") {
        out = new Float32Array(n);
        for (let h = 0; h < b.heads; h++) for (let i = 0; i < n; i++) out[i] += b.dataT.data[base + h * n + i] / b.heads;
      } else out = b.dataT.data.subarray(base + head * n, base + (head + 1) * n);
    } else {
      const params = { kind, layer, ...this.options, ...(head === "mean" ? {} : { head }) };
      const r = await apiGet(`/api/text/analysis/${this.id}/head?${query(params)}`);
      out = decodeTyped(r.data).data;
    }
    return this._remember(this.heads, key, out, 16);
  }

  // stats row of (layer, head); head index `heads` is the mean.
  stats(kind, layer, head) {
    const b = this.block(kind), s = this.resp.stat_names.length;
    const off = (layer * (b.heads + 1) + head) * s;
    return Array.from(b.statsT.data.subarray(off, off + s));
  }

  // Masked (future) cell of a causal block, in view coordinates: the key starts after the query ends.
  isFuture(kind, i, j) {
    const b = this.block(kind);
    if (!b.causal) return false;
    return this.keyAxis(kind).spans[j][0] > this.queryAxis(kind).spans[i][1] - 1;
  }
}

export async function analyze(body) { return new Analysis(await apiPost("/api/text/analyze", body)); }

export async function review(id, options, kind, layer) {
  return new Analysis(await apiGet(`/api/text/analysis/${id}?${query({ ...options, kind, layer })}`));
}
