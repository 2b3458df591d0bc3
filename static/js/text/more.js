// "Short text first, detail on demand" (issue 18): a view leads with one sentence; the rest goes in here.
import { el } from "../lib/dom.js";

// <details class="more"><summary>More</summary>…</details>, open when `open` (a redraw keeps the reader's choice:
// pass wasOpen(container) from before the redraw).
export function more(open, ...children) {
  const d = el("details", { class: "more" }, el("summary", {}, "More"), ...children);
  d.open = Boolean(open);
  return d;
}

export const wasOpen = (container) => Boolean(container.querySelector(":scope details.more")?.open);
