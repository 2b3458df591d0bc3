// Long input on the text page: a live token counter for the chosen model (POST /api/text/tokens, the
// analysis's own tokenizer), the model's limit in the hint, a "Truncate to the limit" action, and the
// stale-result dimming when a new analysis fails (the view below is then an earlier text's).
import { apiPost, isCancelled } from "../lib/api.js";
import { el } from "../lib/dom.js";

const DEBOUNCE_MS = 250;

// The hint under the textarea: the characters the server takes and this model's token limit, in its own unit.
export function limitWords(model, maxChars) {
  const chars = `At most ${maxChars.toLocaleString()} characters.`;
  if (!model) return chars;
  return `${chars} ${model.label} takes up to ${model.max_tokens.toLocaleString()} tokens.`;
}

// wireBudget({text, model, slot, models, onTruncate}): keeps `slot` showing "n / max tokens" for the text in
// `text` and the model chosen in `model`; over the limit it says so and offers the truncation.
export function wireBudget({ text, model, slot, models, onTruncate }) {
  let timer = null, ctl = null, seq = 0;
  const count = el("span", { class: "tx-count", id: "tx-count", "aria-live": "polite" });
  const cut = el("button", { type: "button", class: "hidden", id: "tx-truncate" }, "Truncate to the limit");
  slot.replaceChildren(count, " ", cut);
  let fits = null;
  cut.addEventListener("click", () => {
    if (fits === null) return;
    text.value = text.value.slice(0, fits).trimEnd();
    update();
    if (onTruncate) onTruncate();
  });
  async function update() {
    clearTimeout(timer);
    if (ctl) ctl.abort();
    ctl = new AbortController();
    const mine = ++seq, m = models.get(model.value);
    try {
      const r = await apiPost("/api/text/tokens", { text: text.value, model: model.value }, { signal: ctl.signal });
      if (mine !== seq) return;
      const over = r.tokens > r.max_tokens;
      fits = over ? r.fits_chars : null;
      count.textContent = `${r.tokens.toLocaleString()} / ${r.max_tokens.toLocaleString()} tokens` +
        (r.per_character ? " (one per character)" : "") +
        (over ? ` — over ${m ? m.label : "the model"}'s limit` : "");
      count.classList.toggle("over", over);
      cut.classList.toggle("hidden", !over);
    } catch (err) {
      if (isCancelled(err) || mine !== seq) return;
      count.textContent = ""; cut.classList.add("hidden"); // the counter is a hint: the analysis reports errors
    }
  }
  const later = () => { clearTimeout(timer); timer = setTimeout(update, DEBOUNCE_MS); };
  text.addEventListener("input", later);
  model.addEventListener("change", later); // after the page has swapped in the new model's example text
  update();
  return { update };
}

// Dim the results (summary, steps line, views, head table) while they belong to an earlier text.
export function markStale(nodes, stale) {
  for (const n of nodes) if (n) { n.classList.toggle("tx-stale", stale); if (stale) n.setAttribute("aria-describedby", "tx-error"); else n.removeAttribute("aria-describedby"); }
}
