// /influence section "contributions" (contract: docs/influence.md). Skeleton: filled in by the next commits.
import { el } from "../lib/dom.js";

export async function mount(root, ctx) {
  const body = root.querySelector('[data-role="body"]');
  body.replaceChildren(el("p", { class: "muted small" }, `Analysis ${ctx.analysisId.slice(0, 8)} (${ctx.family}).`));
}
