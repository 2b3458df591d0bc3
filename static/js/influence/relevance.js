// Section 2: gradient-weighted relevancy (Chefer et al. 2021) beside attention rollout and last-layer attention,
// for one named target: the pair's cosine (MiniLM), one decoded character (date model), or the [CLS] / a
// clicked patch's feature (ViT). Changing the date model's step tells the curves section (ctx.events "choice").
import { decodeTyped } from "../lib/typed.js";
import { el } from "../lib/dom.js";
import { CONFIG, layout } from "../lib/plot.js";
import { topK } from "../lib/a11y.js";
import { fetchInfluence, fmt3, patchMap } from "./maps.js";

const NAMES = { relevancy: "Relevancy (Chefer)", rollout: "Attention rollout", attention: "Last-layer attention" };
const COLORS = { relevancy: "#d1495b", rollout: "#2b59c3", attention: "#8d99ae" };

export async function mount(root, ctx) {
  const body = root.querySelector('[data-role="body"]');
  body.replaceChildren(el("p", { class: "muted small" }, "Computing relevancy (one backward pass)…"));
  if (ctx.family === "vision") return mountVision(body, ctx);
  return mountText(body, ctx);
}

const norm = (a) => { const m = Math.max(...a.map(Math.abs), 1e-12); return a.map((v) => v / m); };

async function mountText(body, ctx) {
  const isDates = ctx.target !== null;
  const plot = el("div", { class: "fig-plot", role: "figure", "aria-labelledby": "inf-rel-caption" });
  const caption = el("p", { class: "small muted", id: "inf-rel-caption" });
  const alt = el("p", { class: "small" });
  const controls = el("div", { class: "inf-controls" });
  const decoder = el("p", { class: "small" });
  if (isDates) {
    const step = el("select", { id: "inf-rel-step" }, (ctx.analysis.predicted || []).map((c, i) => el("option", { value: i }, `output position ${i + 1}: “${c}”`)));
    step.value = String(ctx.choice.step);
    step.addEventListener("change", () => { ctx.setChoice({ step: Number(step.value) }); draw(); });
    controls.append(el("label", {}, "Explain the character decoded at ", step));
  }
  body.replaceChildren(controls, plot, caption, alt, decoder);
  const draw = async () => {
    const r = await fetchInfluence(ctx, "relevance", isDates ? { step: ctx.choice.step } : { pair: ctx.pair });
    const maps = { relevancy: decodeTyped(r.relevance).data, rollout: decodeTyped(r.rollout).data, attention: decodeTyped(r.attention).data };
    const labels = ctx.tokens.map((t, i) => `${i + 1}:${t}`);
    const traces = Object.entries(maps).map(([k, v]) => ({ type: "bar", name: NAMES[k], x: labels, y: norm(Array.from(v)), marker: { color: COLORS[k] } }));
    await Plotly.react(plot, traces, layout({ barmode: "group", yaxis: { title: "share of the map's max" }, legend: { orientation: "h", y: 1.12 }, margin: { l: 58, r: 14, t: 30, b: 70 } }), CONFIG);
    plot.dataset.state = "ready";
    caption.textContent = `${ctx.modelInfo.label}: target = ${r.target} (${fmt3(r.value)} on this input), computed in ${Math.round(r.compute_ms)} ms. ` +
      `Each map is scaled to its own maximum. Relevancy follows Chefer et al. 2021 (eq. 5–6${isDates ? ", and eq. 10 for the cross-attention to the source" : ""}); ` +
      (isDates ? "rollout is the last cross-attention row (head mean) carried through the encoder's attention rollout; attention is that cross-attention row alone." :
        "the embedding is the mean over tokens, so every map is the mean of its rows: relevancy R − I (the identity every token starts with left out), rollout over the encoder, and the last layer's head-mean attention.");
    alt.textContent = Object.entries(maps).map(([k, v]) => `${NAMES[k]}: ${topK(v, 3).map((i) => `“${ctx.tokens[i]}”`).join(", ")}`).join(". ") + ".";
    if (isDates && r.decoder) {
      const d = decodeTyped(r.decoder).data;
      const prefix = ctx.target.slice(0, d.length);
      decoder.textContent = `Relevance of the decoder's own inputs for this character (R^tt row): ${prefix.map((t, i) => `“${t}” ${fmt3(d[i])}`).join(", ")}.`;
    }
  };
  await draw();
}

async function mountVision(body, ctx) {
  const row = el("div", { class: "inf-row" });
  const caption = el("p", { class: "small muted" });
  const patch = el("input", { type: "number", min: 1, max: ctx.grid.rows * ctx.grid.cols, step: 1, id: "inf-rel-patch", placeholder: "[CLS]" });
  const cls = el("button", { type: "button", id: "inf-rel-cls" }, "Explain [CLS]");
  body.replaceChildren(el("div", { class: "inf-controls" },
    el("label", {}, "Explain patch # (row-major, or click the first map) ", patch), cls), row, caption);
  const draw = async (query) => {
    const r = await fetchInfluence(ctx, "relevance", { query });
    const pick = (p) => { patch.value = String(p + 1); draw(p); };
    row.replaceChildren(
      await patchMap(ctx, decodeTyped(r.relevance).data, `Relevancy: ${query === null ? "[CLS]" : `patch ${query + 1}`}`, { onPick: pick, marked: query }),
      await patchMap(ctx, decodeTyped(r.rollout).data, "Attention rollout, same row", { colormap: "viridis", marked: query }),
      await patchMap(ctx, decodeTyped(r.attention).data, "Last-layer attention, same row", { colormap: "viridis", marked: query }));
    row.dataset.query = query === null ? "cls" : String(query);
    caption.textContent = `${ctx.modelInfo.label}: target = ${r.target} (${fmt3(r.value)}), computed in ${Math.round(r.compute_ms)} ms with one backward pass. ` +
      "Without a classifier (DINOv2 has none), the target is the feature's length along its own fixed direction: the cosine of the feature to itself " +
      "is flat at its maximum and would give no gradient. Relevancy: R ← R + mean_h(∇A ⊙ A)⁺ R over the layers (Chefer et al. 2021, eq. 5–6), row of the chosen token. " +
      "Rollout and attention use the same row with no gradients.";
  };
  patch.addEventListener("change", () => { const p = Number(patch.value) - 1; if (p >= 0 && p < ctx.grid.rows * ctx.grid.cols) draw(p); });
  cls.addEventListener("click", () => { patch.value = ""; draw(null); });
  await draw(ctx.choice.query ?? null);
}
