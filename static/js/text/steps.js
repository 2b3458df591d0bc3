// Encoder–decoder output read correctly: the greedy output with its probability, a warning when the input has
// nothing the model can read (the date model's "no date-like token", models/text/steps.py), and the one caption
// line that says decoder rows are named by the step they write.
import { el } from "../lib/dom.js";

export const STEPS_NOTE = "Decoder rows are steps: “1 → 7” is the row that reads 1 (the decoder input, the output so far " +
  "shifted right by one, Section 3.1) and writes 7 (the model's most likely next token there).";

// The summary's output part: "greedy output: 2022-03-18 (probability 0.32; weakest step 0.90)".
export function outputParts(r) {
  const parts = [" · greedy output: ", el("code", { class: "tx-generated" }, r.generated_text || "(empty)")];
  const steps = r.step_probabilities;
  if (r.output_probability !== null && r.output_probability !== undefined && steps && steps.length) {
    const weakest = Math.min(...steps);
    parts.push(el("span", {
      class: "tx-output-prob", title: "The product of the probabilities the model gives each token it writes. " +
        "A model trained with label smoothing (Section 5.4, ε = 0.1) gives no step much more than 0.9.",
    }, ` (probability ${r.output_probability.toFixed(2)}; weakest step ${weakest.toFixed(2)})`));
  }
  return parts;
}

// The warning about the input (the date model's "no date-like token"), on its own line under the summary's output.
export function warningNode(r) {
  return r.input_warning ? el("span", { class: "tx-warning", role: "note" }, `⚠ ${r.input_warning}`) : "";
}

// Show the caption line when the current kind's rows are decoder steps.
export function showStepsNote(node, analysis, kind) {
  const on = Boolean(analysis && analysis.hasSteps(kind));
  node.textContent = on ? STEPS_NOTE : "";
  node.classList.toggle("hidden", !on);
}
