// Top-5 class predictions as labelled bars, or a plain note when the model has no classifier head.
import { el } from "../lib/dom.js";

export function renderPredictions(host, predictions, modelLabel) {
  if (!predictions) {
    host.replaceChildren(el("p", { class: "vz-caption", "data-predictions": "none" },
      el("b", {}, "No classifier head. "),
      `${modelLabel} is a self-supervised feature extractor: it outputs image features, not class scores. `
      + "Its [CLS] maps often outline the main object anyway (Caron et al. 2021, DINO)."));
    return;
  }
  const list = el("ol", { class: "vz-predlist", "data-predictions": predictions.length });
  for (const p of predictions) {
    const pct = (p.probability * 100).toFixed(p.probability >= 0.1 ? 1 : 2);
    list.append(el("li", { title: `${p.label}: ${pct}%` },
      el("span", { class: "vz-predlabel" }, p.label),
      el("span", { class: "vz-predbar" }, el("span", { style: `width: ${Math.max(1, p.probability * 100)}%` })),
      el("span", { class: "vz-predpct mono small" }, `${pct}%`)));
  }
  host.replaceChildren(list);
}
