// Section 1: ALTI contributions (Ferrando et al. 2022). Text: a thresholded flow graph, tokens x layers (SVG),
// with the same numbers as a table; vision: each patch's contribution to [CLS] beside attention rollout.
import { decodeTyped } from "../lib/typed.js";
import { el } from "../lib/dom.js";
import { fetchInfluence, fmt3, patchMap } from "./maps.js";

const NS = "http://www.w3.org/2000/svg";
const svg = (tag, attrs = {}) => {
  const n = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  return n;
};

export async function mount(root, ctx) {
  const body = root.querySelector('[data-role="body"]');
  body.replaceChildren(el("p", { class: "muted small" }, "Computing contributions…"));
  const r = await fetchInfluence(ctx, "contributions");
  if (ctx.family === "vision") return mountVision(body, ctx, r);
  return mountText(body, ctx, r);
}

// ---------------------------------------------------------------------------------------------------- text

function flowGraph(C, T, L, labels, threshold, mode, focus) {
  const rowH = 18, colW = 110, left = 90, top = 22;
  const W = left + L * colW + 90, H = top + T * rowH + 8;
  const s = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": "inf-flow-desc" });
  const x = (l) => left + l * colW, y = (i) => top + i * rowH + rowH / 2;
  for (let l = 0; l <= L; l++) {
    const t = svg("text", { x: x(l), y: 12, "text-anchor": "middle", "font-size": 11, fill: "#5b6475" });
    t.textContent = l === 0 ? "input" : `layer ${l}`;
    s.append(t);
  }
  // edges: layer l's output token i <- layer l-1 token j, weight C_l[i, j] (or the rollout's R_l, from the input)
  let drawn = 0;
  for (let l = 1; l <= L; l++) {
    const base = (l - 1) * T * T;
    for (let i = 0; i < T; i++) for (let j = 0; j < T; j++) {
      const w = C[base + i * T + j];
      if (w < threshold) continue;
      if (focus !== null && mode === "rollout" && i !== focus) continue;
      const from = mode === "rollout" ? 0 : l - 1;
      const on = focus === null || i === focus || (mode !== "rollout" && j === focus);
      s.append(svg("line", {
        x1: x(from), y1: y(j), x2: x(l), y2: y(i), stroke: i === j ? "#8a5a00" : "#2b59c3",
        "stroke-width": (0.5 + 5 * w).toFixed(2), "stroke-opacity": (on ? 0.25 + 0.7 * w : 0.06).toFixed(2),
      }));
      drawn++;
    }
  }
  for (let l = 0; l <= L; l++) for (let i = 0; i < T; i++) {
    s.append(svg("circle", { cx: x(l), cy: y(i), r: 3, fill: i === focus ? "#d1495b" : "#1d2430" }));
  }
  for (let i = 0; i < T; i++) {
    for (const [xx, anchor] of [[left - 8, "end"], [x(L) + 8, "start"]]) {
      const t = svg("text", { x: xx, y: y(i) + 4, "text-anchor": anchor, "font-size": 11, fill: i === focus ? "#d1495b" : "#1d2430" });
      t.textContent = labels[i];
      s.append(t);
    }
  }
  return { node: s, drawn };
}

function table(C, T, labels, layer, mode) {
  const base = layer * T * T;
  return el("table", { class: "inf-table" },
    el("caption", { class: "small" }, `${mode === "rollout" ? "Rolled-out contributions R" : "Contributions C"} of layer ${layer + 1}, in %: row = output token, column = input token${mode === "rollout" ? " (of the sentence)" : " (of the layer's input)"}.`),
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "out \\ in"), labels.map((t) => el("th", { scope: "col" }, t)))),
    el("tbody", {}, labels.map((t, i) => el("tr", {}, el("th", { scope: "row" }, t),
      labels.map((_, j) => el("td", {}, (100 * C[base + i * T + j]).toFixed(1)))))));
}

function mountText(body, ctx, r) {
  const layers = decodeTyped(r.layers), roll = decodeTyped(r.rollout);
  const [L, T] = layers.shape;
  const labels = r.labels;
  const state = { threshold: 0.1, mode: "layers", focus: null, tableLayer: L - 1 };
  const thr = el("input", { type: "range", min: 0.02, max: 0.6, step: 0.01, value: state.threshold, id: "inf-flow-thr" });
  const thrOut = el("output", { for: "inf-flow-thr" }, state.threshold.toFixed(2));
  const mode = el("select", { id: "inf-flow-mode" }, el("option", { value: "layers" }, "per layer: C_l (from the layer below)"), el("option", { value: "rollout" }, "rolled out: R_l (from the input)"));
  const focus = el("select", { id: "inf-flow-focus" }, el("option", { value: "" }, "all tokens"), labels.map((t, i) => el("option", { value: i }, `${i + 1}: ${t}`)));
  const tl = el("select", { id: "inf-flow-layer" }, Array.from({ length: L }, (_, l) => el("option", { value: l }, `layer ${l + 1}`)));
  tl.value = String(state.tableLayer);
  const graphHost = el("div", { class: "inf-flow" }), desc = el("p", { class: "small muted", id: "inf-flow-desc" });
  const tableHost = el("div", { class: "inf-flow" });
  const draw = () => {
    const C = state.mode === "rollout" ? roll.data : layers.data;
    const g = flowGraph(C, T, L, labels, state.threshold, state.mode, state.focus);
    // keyboard: the graph takes focus; Up/Down highlight the previous/next token, Escape clears
    g.node.setAttribute("tabindex", "0");
    g.node.addEventListener("keydown", (e) => {
      const step = { ArrowDown: 1, ArrowUp: -1 }[e.key];
      if (step === undefined && e.key !== "Escape") return;
      e.preventDefault();
      state.focus = e.key === "Escape" ? null : ((state.focus ?? (step > 0 ? -1 : T)) + step + T) % T;
      focus.value = state.focus === null ? "" : String(state.focus);
      draw();
      graphHost.querySelector("svg").focus();
    });
    graphHost.replaceChildren(g.node);
    graphHost.dataset.edges = String(g.drawn);
    desc.textContent = `${ctx.modelInfo.label}${ctx.target ? " (encoder)" : ""}: ${g.drawn} edges at or above ${state.threshold.toFixed(2)} ` +
      `over ${L} layers and ${T} tokens. ${state.mode === "rollout" ? "Each edge joins an input token to a token of layer l with R_l = C_l … C_1 (ALTI Section 3.3)." : "Each edge joins token j of the layer below to token i of layer l with its share C_l[i, j]; brown edges are the token's own part (its residual plus its own value)."} ` +
      "Line width and opacity grow with the share; rows of C and R sum to 1. The table below lists the same numbers. " +
      "Focus the graph and press Up/Down to highlight one token, Escape for all.";
    tableHost.replaceChildren(table(C, T, labels, state.tableLayer, state.mode));
  };
  thr.addEventListener("input", () => { state.threshold = Number(thr.value); thrOut.textContent = state.threshold.toFixed(2); draw(); });
  mode.addEventListener("change", () => { state.mode = mode.value; draw(); });
  focus.addEventListener("change", () => { state.focus = focus.value === "" ? null : Number(focus.value); draw(); });
  tl.addEventListener("change", () => { state.tableLayer = Number(tl.value); draw(); });
  const diag = Array.from({ length: L }, (_, l) => { let s = 0; for (let i = 0; i < T; i++) s += layers.data[l * T * T + i * T + i]; return s / T; });
  body.replaceChildren(
    el("div", { class: "inf-controls" },
      el("label", {}, "Show ", mode), el("label", {}, "Threshold ", thr, thrOut), el("label", {}, "Highlight ", focus)),
    graphHost, desc,
    el("p", { class: "small" }, `The token's own share (residual + its own value) per layer, mean over tokens: ${diag.map((v, l) => `layer ${l + 1}: ${(100 * v).toFixed(0)} %`).join(", ")}. ` +
      "A large own share means the layer mostly keeps each token as it was, whatever the attention weights say."),
    el("details", {}, el("summary", {}, "Table of the numbers"), el("div", { class: "inf-controls" }, el("label", {}, "Layer ", tl)), tableHost));
  draw();
}

// -------------------------------------------------------------------------------------------------- vision

async function mountVision(body, ctx, r) {
  const layers = decodeTyped(r.layers), roll = decodeTyped(r.rollout), attn = decodeTyped(r.attention_rollout).data;
  const [L, P] = roll.shape;
  const slider = el("input", { type: "range", min: 1, max: L, step: 1, value: L, id: "inf-contrib-layer" });
  const out = el("output", { for: "inf-contrib-layer" }, `layer ${L}`);
  const row = el("div", { class: "inf-row" });
  const cls = ctx.analysis.cls_query === "cls" ? "[CLS]" : "the mean patch token";
  const draw = async (l) => {
    const R = roll.data.subarray((l - 1) * P, l * P), C = layers.data.subarray((l - 1) * P, l * P);
    row.replaceChildren(
      await patchMap(ctx, R, `ALTI rollout to ${cls}, layers 1–${l}`),
      await patchMap(ctx, C, `ALTI contributions to ${cls}, layer ${l} alone`),
      await patchMap(ctx, attn, `Attention rollout (all ${L} layers)`, { colormap: "viridis" }));
    row.dataset.layer = String(l);
  };
  slider.addEventListener("input", () => { out.textContent = `layer ${slider.value}`; draw(Number(slider.value)); });
  body.replaceChildren(
    el("div", { class: "inf-controls" }, el("label", {}, "Up to ", slider, out)), row,
    el("p", { class: "small muted" }, `${ctx.modelInfo.label}, ${ctx.grid.rows} × ${ctx.grid.cols} patches. Left: each patch's share of ${cls}'s representation after layer l, ` +
      `composed over layers (ALTI Section 3.3; with LayerScale, DINOv2's attention parts are scaled before they are compared). Middle: layer l's own contributions (the [CLS]'s own part is left out of the map). ` +
      `Right: attention rollout (Abnar & Zuidema 2020), which mixes the attention weights with an identity for the residual and ignores the values and their norms. ` +
      `Each map has its own colour range (${fmt3(0)} = none).`));
  await draw(L);
}
