// Shared by the ablation, importance and lens sections of /influence: the model's heads (GET
// /api/influence/heads, asked once per model), block names, and a light background colour for a value in
// [0, 1] under dark text (white -> orange keeps black text above 4.5:1 contrast everywhere).
import { apiGet } from "../lib/api.js";
import { el } from "../lib/dom.js";

const cache = new Map(); // "family|model" -> Promise of the /api/influence/heads answer

export function headsOf(ctx) {
  const key = `${ctx.family}|${ctx.model}`;
  if (!cache.has(key)) {
    const url = `/api/influence/heads?family=${encodeURIComponent(ctx.family)}&model=${encodeURIComponent(ctx.model)}`;
    const p = apiGet(url);
    p.catch(() => cache.delete(key)); // a failure is asked again next time
    cache.set(key, p);
  }
  return cache.get(key);
}

// The heads of the section's model, or null after saying in the section's body why this model has none to cut
// (a section mounts only when this gives heads).
export async function headsOrWhyNot(root, ctx) {
  const info = await headsOf(ctx);
  if (info.kind) return info;
  root.querySelector('[data-role="body"]').replaceChildren(
    el("p", { class: "muted small" }, `Not available for ${info.label}: ${info.reason}`));
  return null;
}

export const BLOCK_NAMES = {
  encoder_self: "Encoder self-attention",
  decoder_self: "Decoder masked self-attention",
  cross: "Encoder–decoder (cross) attention",
};

export function blockName(block, kind) {
  return block === "encoder_self" && kind !== "dates" ? "Self-attention" : BLOCK_NAMES[block];
}

// t in [0, 1] -> an rgb() between white and a light orange (#f0a35e).
export function warm(t) {
  const u = Math.max(0, Math.min(1, Number.isFinite(t) ? t : 0));
  const mix = (a, b) => Math.round(a + (b - a) * u);
  return `rgb(${mix(255, 240)}, ${mix(255, 163)}, ${mix(255, 94)})`;
}

export const fmt = (v, digits = 3) => (v === null || v === undefined || !Number.isFinite(v) ? "–" : v.toFixed(digits));
export const signed = (v, digits = 3) => (Number.isFinite(v) ? (v > 0 ? "+" : v < 0 ? "−" : "±") + Math.abs(v).toFixed(digits) : "–");
