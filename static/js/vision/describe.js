// /vision helpers moved out of main.js (kept under 400 lines): the map in words, the resolution select.
import { fmtValue } from "../lib/colormap.js";
import { announce, srTable, topK } from "../lib/a11y.js";
import { $, el } from "../lib/dom.js";
import { patchWhere } from "../lib/numbering.js";

// The map in words: a visually hidden table of its TOP_K patches (read by screen readers, described-by of the
// canvas) and a one-line summary in the polite live region.
export function describeMap(S, TOP_K, m, range) {
  const A = S.A, cols = A.grid.cols, best = topK(m.values, TOP_K);
  const where = (i) => patchWhere(i, cols);
  const table = srTable($("vz-topk"), {
    id: "vz-topk-table",
    caption: `${m.title}: the ${best.length} patches with the highest values, of ${A.P} (rows and columns count from 1, top left)`,
    headers: ["Rank", "Patch", "Value"],
    rows: best.map((i, r) => [String(r + 1), where(i), fmtValue(m.values[i])]),
  });
  table.dataset.first = String(best[0]);
  const pinned = S.view !== "rollout" && S.query !== null ? " (pinned)" : "";
  announce($("vz-live"), `${m.title}${pinned}. Highest: ${best.slice(0, 3).map((i) => `${where(i)} ${fmtValue(m.values[i])}`).join("; ")}. `
    + `Scale ${fmtValue(range.min)} to ${fmtValue(range.max)}.`);
}

export function fillResolutions(list, current) {
  const sel = $("vz-res");
  const opts = list.length ? list : [];
  sel.replaceChildren(
    ...(opts.length ? [] : [el("option", { value: "" }, "model default")]),
    ...opts.map((r) => el("option", { value: r }, `${r} px`)));
  sel.value = opts.includes(Number(current)) ? String(current) : (opts.length ? String(opts[0]) : "");
}

