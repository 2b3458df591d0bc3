// Neuron view (bertviz's): for one layer, head and query token, the query vector q, every key vector k,
// q ⊙ k, q·k, q·k/√d_k and the softmax (Attention Is All You Need, Section 3.2.1). The server sends q (d_k)
// and the keys (T, d_k) of this one head and query plus the four T-long rows; q ⊙ k is computed here.
// Tokens are the raw tokenizer tokens (q and k belong to tokens, so "hide special" / "merge" do not apply).
import { apiGet } from "../lib/api.js";
import { srTable, topK } from "../lib/a11y.js";
import { el } from "../lib/dom.js";
import { downloadCanvas, downloadCSV, downloadJSON, exportButtons } from "../lib/export.js";
import { DIVERGING, fmt } from "../lib/plot.js";
import { decodeTyped } from "../lib/typed.js";
import { fromApi, NUMBERING } from "../lib/numbering.js";
import { kindLabel } from "./data.js";
import { more, wasOpen } from "./more.js";

// The model's own factor, in words: printed as the model has it, compared with 1/√d_k (GPT-2 and others may
// use another factor, e.g. scale_attn_by_inverse_layer_idx, or none). Exported for the browser test.
export function scaleWords(scale, d, where) {
  const paper = 1 / Math.sqrt(d), same = Math.abs(scale - paper) <= 1e-6 * paper;
  const vs = same ? `= 1/√${d}` : `(not 1/√${d} = ${fmt(paper, 4)})`;
  return where === "query"
    ? `divides q by √${d} before the product, (q/√d_k)·k: its factor is ${fmt(scale, 4)} ${vs} (models/transformer.py)`
    : `multiplies q·k by its own factor ${fmt(scale, 4)} ${vs} (Hugging Face eager attention)`;
}

const cache = new Map(); // "id/kind/layer/head/query" -> decoded response (LRU, 32 entries)
const LABEL_W = 112, GAP = 14, NUM_W = 62, BAR_W = 120, RIGHT = 62, HEAD_H = 44, FOOT_H = 40;
const MASKED = "#d5d9e0", BAR = "#3b6fb6", UNSCALED = "#e07b00", INK = "#1d2430", MUTED = "#5d6675";

async function fetchNeuron(analysis, kind, layer, head, query) {
  const key = `${analysis.id}/${kind}/${layer}/${head}/${query}`;
  if (cache.has(key)) return cache.get(key);
  const p = new URLSearchParams({ kind, layer, head, query });
  const r = await apiGet(`/api/text/analysis/${analysis.id}/neuron?${p}`);
  const n = {
    ...r, qT: decodeTyped(r.q).data, kT: decodeTyped(r.k).data, dotT: decodeTyped(r.dot).data,
    scaledT: decodeTyped(r.scaled).data, probsT: decodeTyped(r.probs).data, capturedT: decodeTyped(r.captured).data,
    allowedT: decodeTyped(r.allowed).data,
  };
  cache.set(key, n);
  while (cache.size > 32) cache.delete(cache.keys().next().value);
  return n;
}

const STOPS = DIVERGING.map(([t, hex]) => [t, [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16))]);
// Diverging colour of v in [-m, m]: blue < 0 < red, white at 0.
function diverging(v, m) {
  const t = Math.max(0, Math.min(1, 0.5 + (m > 0 ? v / (2 * m) : 0)));
  let k = 0;
  while (k < STOPS.length - 2 && t > STOPS[k + 1][0]) k++;
  const [t0, a] = STOPS[k], [t1, b] = STOPS[k + 1], f = (t - t0) / (t1 - t0 || 1);
  return `rgb(${a.map((c, i) => Math.round(c + (b[i] - c) * f)).join(",")})`;
}

function softmax(values, allowed) {
  let max = -Infinity;
  for (let j = 0; j < values.length; j++) if (allowed[j]) max = Math.max(max, values[j]);
  const out = new Float64Array(values.length);
  let sum = 0;
  for (let j = 0; j < values.length; j++) if (allowed[j]) { out[j] = Math.exp(values[j] - max); sum += out[j]; }
  for (let j = 0; j < values.length; j++) out[j] = sum > 0 ? out[j] / sum : 0;
  return out;
}

function clip(s, n = 14) { return s.length > n ? `${s.slice(0, n - 1)}…` : s; }

// Cell width: both d_k-wide blocks fit the pane when they can (at least 3 px a cell, else it scrolls).
function geometry(n, avail) {
  const T = n.dotT.length, d = n.d_k, fixed = LABEL_W + 2 * GAP + 2 * NUM_W + 8 + BAR_W + RIGHT;
  const cw = Math.max(3, Math.min(14, Math.floor((avail - fixed) / (2 * d)))), rh = T <= 64 ? 16 : T <= 200 ? 12 : 9;
  const xk = LABEL_W, xp = xk + d * cw + GAP, xd = xp + d * cw + GAP, xs = xd + NUM_W, xb = xs + NUM_W + 8;
  return { T, d, cw, rh, xk, xp, xd, xs, xb, width: xb + BAR_W + RIGHT, height: HEAD_H + rh + 8 + T * rh + FOOT_H, y0: HEAD_H + rh + 8 };
}

function draw(canvas, n, keys, queryToken, unscaled, avail) {
  const g = geometry(n, avail), dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(g.width * dpr); canvas.height = Math.round(g.height * dpr);
  canvas.style.width = `${g.width}px`; canvas.style.height = `${g.height}px`;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, g.width, g.height);
  const { T, d, cw, rh } = g, q = n.qT, k = n.kT;
  let mv = 0, mp = 0;
  for (let i = 0; i < d; i++) mv = Math.max(mv, Math.abs(q[i]));
  for (let j = 0; j < T; j++) for (let i = 0; i < d; i++) {
    mv = Math.max(mv, Math.abs(k[j * d + i]));
    if (n.allowedT[j]) mp = Math.max(mp, Math.abs(k[j * d + i] * q[i]));
  }
  const font = (px, bold = false) => `${bold ? "600 " : ""}${px}px system-ui, -apple-system, Segoe UI, Roboto, sans-serif`;
  // column titles
  ctx.fillStyle = INK; ctx.font = font(12, true); ctx.textBaseline = "middle";
  ctx.fillText("key k", g.xk, 12); ctx.fillText("q ⊙ k", g.xp, 12);
  ctx.fillText("q · k", g.xd, 12); ctx.fillText("scaled", g.xs, 12); ctx.fillText("softmax", g.xb, 12);
  ctx.font = font(11); ctx.fillStyle = MUTED;
  ctx.fillText(`${d} dims`, g.xk, 28); ctx.fillText("summed → q · k", g.xp, 28);
  ctx.fillText(`× ${fmt(n.scale, 4)}`, g.xs, 28); ctx.fillText("weight", g.xb, 28);
  // the query vector, above the keys
  const yq = HEAD_H;
  ctx.textAlign = "right"; ctx.fillStyle = INK; ctx.font = font(11, true);
  ctx.fillText(`query q: ${clip(queryToken)}`, g.xk - 6, yq + rh / 2);
  ctx.textAlign = "left";
  for (let i = 0; i < d; i++) { ctx.fillStyle = diverging(q[i], mv); ctx.fillRect(g.xk + i * cw, yq, cw - (cw > 4 ? 1 : 0), rh - 2); }
  // one row per key
  ctx.font = font(rh >= 12 ? 11 : 9);
  for (let j = 0; j < T; j++) {
    const y = g.y0 + j * rh, on = n.allowedT[j] === 1;
    ctx.textAlign = "right"; ctx.fillStyle = on ? INK : MUTED;
    ctx.fillText(`${clip(keys[j])} ${j + 1}`, g.xk - 6, y + rh / 2);
    ctx.textAlign = "left";
    for (let i = 0; i < d; i++) {
      const kv = k[j * d + i];
      ctx.fillStyle = diverging(kv, mv); ctx.fillRect(g.xk + i * cw, y, cw - (cw > 4 ? 1 : 0), rh - 1);
      ctx.fillStyle = on ? diverging(kv * q[i], mp) : MASKED;
      ctx.fillRect(g.xp + i * cw, y, cw - (cw > 4 ? 1 : 0), rh - 1);
    }
    ctx.fillStyle = on ? INK : MUTED;
    ctx.fillText(fmt(n.dotT[j], 3), g.xd, y + rh / 2);
    ctx.fillText(on ? fmt(n.scaledT[j], 3) : "masked", g.xs, y + rh / 2);
    ctx.fillStyle = "#eef1f5"; ctx.fillRect(g.xb, y + 1, BAR_W, rh - 3);
    if (on) {
      ctx.fillStyle = BAR; ctx.fillRect(g.xb, y + 1, BAR_W * n.probsT[j], rh - 3);
      ctx.fillStyle = UNSCALED; ctx.fillRect(g.xb + BAR_W * unscaled[j] - 1, y, 2, rh - 1);
      ctx.fillStyle = INK; ctx.fillText(fmt(n.probsT[j], 3), g.xb + BAR_W + 6, y + rh / 2);
    }
  }
  // legend
  const yl = g.y0 + T * rh + 14;
  const steps = 60;
  for (let s = 0; s < steps; s++) { ctx.fillStyle = diverging(-1 + (2 * s) / (steps - 1), 1); ctx.fillRect(g.xk + s * 2, yl, 2, 10); }
  ctx.fillStyle = MUTED; ctx.font = font(11); ctx.textAlign = "left";
  ctx.fillText(`q, k: ±${fmt(mv, 3)} · q ⊙ k: ±${fmt(mp, 3)} (blue < 0 < red)`, g.xk + steps * 2 + 8, yl + 5);
  ctx.fillStyle = BAR; ctx.fillRect(g.xb, yl, 12, 10);
  ctx.fillStyle = MUTED; ctx.fillText("with the factor", g.xb + 16, yl + 5);
  ctx.fillStyle = UNSCALED; ctx.fillRect(g.xb, yl + 16, 12, 3);
  ctx.fillStyle = MUTED; ctx.fillText("without it", g.xb + 16, yl + 18);
  return g;
}

function readout(n, g, keys, x, y) {
  const j = Math.floor((y - g.y0) / g.rh);
  if (y < g.y0 || j < 0 || j >= g.T) {
    if (y >= HEAD_H && y < HEAD_H + g.rh && x >= g.xk && x < g.xk + g.d * g.cw) {
      const i = Math.floor((x - g.xk) / g.cw);
      return `query q, dim ${i + 1}: ${fmt(n.qT[i], 4)}`;
    }
    return "";
  }
  const head = `key ${j + 1} “${keys[j]}”`;
  for (const [x0, what] of [[g.xk, "k"], [g.xp, "q ⊙ k"]]) {
    if (x >= x0 && x < x0 + g.d * g.cw) {
      const i = Math.floor((x - x0) / g.cw), kv = n.kT[j * g.d + i];
      return `${head}, dim ${i + 1}: k = ${fmt(kv, 4)}, q = ${fmt(n.qT[i], 4)}, q·k term = ${fmt(kv * n.qT[i], 4)}` + (what === "k" ? "" : " (summed over dims: q · k)");
    }
  }
  if (!n.allowedT[j]) return `${head}: masked, weight exactly 0`;
  return `${head}: q·k = ${fmt(n.dotT[j], 4)}, q·k × ${fmt(n.scale, 4)} = ${fmt(n.scaledT[j], 4)}, softmax = ${fmt(n.probsT[j], 4)} (the model's own: ${fmt(n.capturedT[j], 4)})`;
}

function range(values, allowed) {
  let lo = Infinity, hi = -Infinity;
  for (let j = 0; j < values.length; j++) if (allowed[j]) { lo = Math.min(lo, values[j]); hi = Math.max(hi, values[j]); }
  return [lo, hi];
}

export async function renderNeuron(pane, { analysis, kind, layer, head, query, exportSlot, isCurrent, onQuery }) {
  const b = analysis.block(kind), r = analysis.resp;
  const qTokens = analysis.queryTokens(kind), kTokens = r[b.key_side].tokens;
  query = Math.min(Math.max(0, query), qTokens.length - 1);
  const n = await fetchNeuron(analysis, kind, layer, head, query);
  if (isCurrent && !isCurrent()) return;
  const model = r.model, d = n.d_k;
  const unscaled = softmax(n.dotT, n.allowedT);
  const pmax = (p) => { let m = 0, at = 0; for (let j = 0; j < p.length; j++) if (p[j] > m) { m = p[j]; at = j; } return [m, at]; };
  const [ps, js] = pmax(n.probsT), [pu, ju] = pmax(unscaled);
  const [lo, hi] = range(n.dotT, n.allowedT), [slo, shi] = range(n.scaledT, n.allowedT);
  const where = scaleWords(n.scale, d, n.scale_where);
  const title = `${kindLabel(kind, model.kind)} · layer ${fromApi(layer)} · head ${fromApi(head)} · query ${query + 1} “${qTokens[query]}”`;

  const strip = el("div", { class: "nv-queries", role: "group", "aria-label": "Query token" },
    el("span", { class: "small muted" }, `Query token (${b.query_side}): `),
    ...qTokens.map((t, i) => el("button", {
      type: "button", class: "nv-q", "aria-pressed": String(i === query), dataset: { q: String(i + 1) },
      title: `query ${i + 1}`, onclick: () => onQuery(i),
    }, t)));
  const canvas = el("canvas", { class: "nv-canvas", id: "nv-canvas", role: "img", "aria-label": `Neuron view: ${title}` });
  const hover = el("div", { class: "nv-readout small", "aria-live": "polite" }, "Hover a cell for its values.");
  const srHost = el("div", {});
  const ok = n.matches;
  const check = el("p", { class: `small nv-check ${ok ? "ok" : "bad"}` },
    `Check: max |softmax(q·k × ${fmt(n.scale, 4)}) − the model's own probabilities| = ${n.max_abs_diff.toExponential(1)} `,
    ok ? `≤ ${n.tolerance.toExponential(1)}, the float32 rounding bound ✓` : `> ${n.tolerance.toExponential(1)}, the float32 rounding bound ✗`);
  pane.replaceChildren(
    el("h3", { class: "nv-title" }, title),
    el("p", { class: "small nv-intro" }, `How this head weighs every key for one query token: q·k, scaled by ${fmt(n.scale, 4)}, then the softmax `,
      `(Section 3.2.1); the largest weight is ${fmt(ps, 3)}, on key ${js + 1} “${kTokens[js]}”.`),
    strip, hover, el("div", { class: "nv-scroll" }, canvas), srHost,
    ...(ok ? [] : [check]), // a failed check is never hidden
    more(wasOpen(pane), el("p", { class: "small nv-lead" },
      "Scaled dot-product attention (", el("em", {}, "Attention Is All You Need"), ", Section 3.2.1): the query q of one token is ",
      "compared with the key k of every token by the dot product q·k (the sum of q ⊙ k over the ", String(d), " dimensions of this head), ",
      `scaled (the paper divides by √d_k = √${d}; this model's own factor is ${fmt(n.scale, 4)}), and the softmax over the keys gives the weights. Shown: ${model.label}, ${kindLabel(kind, model.kind).toLowerCase()}, `,
      `layer ${fromApi(layer)}, head ${fromApi(head)}, on the text you analysed; q and k come from one extra forward pass with hooks on this layer's query and key projections. `,
      `This model ${where}.`),
    el("p", { class: "small nv-lead" },
      `Here the scores q·k span ${fmt(lo, 3)} … ${fmt(hi, 3)}, after scaling ${fmt(slo, 3)} … ${fmt(shi, 3)}. `,
      `The largest weight is ${fmt(ps, 3)} (key ${js + 1} “${kTokens[js]}”); this head's q and k without the factor would give ${fmt(pu, 3)} (key ${ju + 1}, orange ticks). `,
      "A model trained without the factor would have learned other q and k, so that number is not what such a model would do. ",
      "The paper motivates the scaling (Section 3.2.1, footnote 4) with q and k whose components are independent with mean 0 and variance 1, so that q·k has variance d_k; ",
      "this head's q and k need not satisfy that assumption: the chart shows what the division does here, not the paper's argument. ",
      b.causal || n.allowedT.some((a) => !a) ? "Grey rows: keys the mask removes (future tokens in the decoder, padding); their weight is exactly 0." : ""),
    ...(ok ? [check] : [])),
  );
  // The canvas's text alternative (screen readers): every key's q·k, q·k × the factor and weight for this query,
  // strongest weight first (the hover readout is mouse-only; the same numbers are in the CSV export).
  const order = topK(Array.from(n.probsT), kTokens.length);
  srTable(srHost, {
    caption: `Neuron view values, ${title}, keys by weight`, id: "nv-sr",
    headers: ["key", "q·k", `q·k × ${fmt(n.scale, 4)}`, "weight", "weight without the factor"],
    rows: order.map((j) => [`${j + 1} “${kTokens[j]}”${n.allowedT[j] ? "" : " (masked)"}`,
      fmt(n.dotT[j], 3), fmt(n.scaledT[j], 3), fmt(n.probsT[j], 3), fmt(unscaled[j], 3)]),
  });
  const g = draw(canvas, n, kTokens, qTokens[query], unscaled, Math.max(480, (pane.clientWidth || 760) - 16));
  canvas.dataset.geom = JSON.stringify({ xk: g.xk, xp: g.xp, cw: g.cw, y0: g.y0, rh: g.rh }); // CSS px, for tests
  canvas.addEventListener("mousemove", (e) => {
    const box = canvas.getBoundingClientRect();
    hover.textContent = readout(n, g, kTokens, e.clientX - box.left, e.clientY - box.top) || "Hover a cell for its values.";
  });
  const name = `neuron_${kind}_layer${fromApi(layer)}_head${fromApi(head)}_query${query + 1}`;
  const meta = () => ({
    model: model.id, kind, layer: fromApi(layer), head: fromApi(head), query: query + 1, query_token: qTokens[query],
    d_k: d, scale: n.scale, scale_where: n.scale_where, max_abs_diff: n.max_abs_diff, tolerance: n.tolerance, numbering: NUMBERING,
  });
  const rows = () => kTokens.map((t, j) => [j + 1, t, n.allowedT[j], n.dotT[j], n.scaledT[j], n.probsT[j], n.capturedT[j], unscaled[j]]);
  const header = ["key_index", "key", "allowed", "q_dot_k", "scaled", "softmax", "model_softmax", "softmax_unscaled"];
  exportSlot.replaceChildren(exportButtons({
    png: () => downloadCanvas(name, canvas, "png"),
    svg: () => downloadCanvas(name, canvas, "svg"),
    csv: () => downloadCSV(`${name}.csv`, header, rows()),
    json: () => downloadJSON(`${name}.json`, {
      meta: meta(), q: Array.from(n.qT), k: kTokens.map((_, j) => Array.from(n.kT.subarray(j * d, (j + 1) * d))), header, rows: rows(),
    }),
  }, "Export neuron view"));
}
