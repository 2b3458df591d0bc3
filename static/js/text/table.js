// Head table: per-head statistics of the current view (computed on the server, models/text/stats.py),
// sortable by any column; clicking a row opens that head in the matrix view. "null" is the positional score of
// uniform attention over the allowed keys (same tokens and mask), "excess" the head's largest gain over it.
import { el } from "../lib/dom.js";
import { downloadCSV, downloadJSON, exportButtons } from "../lib/export.js";
import { fromApi, NUMBERING } from "../lib/numbering.js";

const SHORT = { entropy: "entropy", special: "→special", self: "→self", previous: "→prev", next: "→next", offset: "offset", positional: "pos. score", positional_null: "null", positional_excess: "excess" };
let sortKey = null, sortDir = 1;

function fmt(v) { return Number.isFinite(v) ? (Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(3)) : "—"; }

export function renderTable(box, { analysis, kind, current, onOpen, exportSlot }) {
  const b = analysis.block(kind), names = analysis.resp.stat_names, labels = analysis.resp.stat_labels;
  const rows = [];
  for (let l = 0; l < b.layers; l++) for (let h = 0; h <= b.heads; h++) {
    rows.push({ layer: l, head: h === b.heads ? "mean" : h, values: analysis.stats(kind, l, h) });
  }
  const keyOf = (r, k) => (k === "head" ? r.layer * 1000 + (r.head === "mean" ? 999 : r.head) : r.values[k]);
  if (sortKey !== null) {
    rows.sort((x, y) => {
      const a = keyOf(x, sortKey), c = keyOf(y, sortKey);
      const na = !Number.isFinite(a), nc = !Number.isFinite(c);
      if (na || nc) return na - nc; // NaN ("does not apply") always last
      return (a - c) * sortDir;
    });
  }
  // Each header holds a button (the sortable-table pattern): Tab reaches it, Enter/Space sorts, and focus
  // stays on the same header after the table is redrawn.
  const th = (key, text, title) => el("th", {
    scope: "col", title, "aria-sort": sortKey === key ? (sortDir > 0 ? "ascending" : "descending") : "none",
  }, el("button", {
    type: "button", class: "th-sort", dataset: { sort: String(key) },
    onclick: () => {
      sortDir = sortKey === key ? -sortDir : key === "head" ? 1 : -1; sortKey = key;
      renderTable(box, { analysis, kind, current, onOpen, exportSlot });
      box.querySelector(`button.th-sort[data-sort="${String(key)}"]`)?.focus();
    },
  }, text, sortKey === key ? (sortDir > 0 ? " ▲" : " ▼") : ""));
  const head = el("tr", {}, th("head", "head", "layer · head"), names.map((n, k) => th(k, SHORT[n] || n, labels[k])));
  const body = rows.map((r) => el("tr", {
    class: current && current.layer === r.layer && String(current.head) === String(r.head) ? "selected" : "",
    dataset: { layer: r.layer, head: r.head }, tabindex: "0",
    onclick: () => onOpen(r.layer, r.head),
    onkeydown: (e) => { if (e.key === "Enter") onOpen(r.layer, r.head); },
  }, el("td", {}, `L${fromApi(r.layer)} · ${r.head === "mean" ? "mean" : `H${fromApi(r.head)}`}`), r.values.map((v) => el("td", {}, fmt(v)))));
  const table = el("table", { class: "data tx-table" }, el("thead", {}, head), el("tbody", {}, body));
  box.replaceChildren(table);
  const sel = table.querySelector("tr.selected");
  if (sel && box.scrollHeight > box.clientHeight) { // scroll the table box only, never the page
    const top = sel.offsetTop - table.tHead.offsetHeight;
    if (top < box.scrollTop || top + sel.offsetHeight > box.scrollTop + box.clientHeight) box.scrollTop = top - box.clientHeight / 3;
  }

  const csvRows = rows.map((r) => [kind, fromApi(r.layer), fromApi(r.head), ...r.values.map((v) => (Number.isFinite(v) ? v : ""))]);
  exportSlot.replaceChildren(exportButtons({
    csv: () => downloadCSV(`head_stats_${kind}.csv`, ["kind", "layer", "head", ...names], csvRows),
    json: () => downloadJSON(`head_stats_${kind}.json`, {
      meta: { model: analysis.resp.model.id, kind, numbering: NUMBERING, options: analysis.options, descriptions: Object.fromEntries(names.map((n, k) => [n, labels[k]])) },
      header: ["layer", "head", ...names], rows: rows.map((r) => [fromApi(r.layer), fromApi(r.head), ...r.values.map((v) => (Number.isFinite(v) ? v : null))]),
    }),
  }, "Export head statistics"));
}
