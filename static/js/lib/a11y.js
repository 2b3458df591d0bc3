// Text alternatives and keyboard helpers shared by the chart views: a visually hidden (screen-reader read)
// table of the top-k entries of a map, a polite live region, the ARIA tabs pattern, and a 2-D cursor that
// the arrow keys move. Everything is built from text nodes (lib/dom.js `el`), never from HTML strings.
import { el } from "./dom.js";

// Indices of the k largest values, strongest first (ties: lower index first). values: any array-like.
export function topK(values, k) {
  const idx = Array.from({ length: values.length }, (_, i) => i);
  idx.sort((a, b) => values[b] - values[a] || a - b);
  return idx.slice(0, Math.min(k, idx.length));
}

// Replace host's content with a table read by screen readers and hidden on screen (class "sr-only").
// rows: arrays of cell texts; the first cell of each row is its header. Returns the table.
export function srTable(host, { caption, headers, rows, id }) {
  const table = el("table", { class: "sr-only", id, "data-rows": rows.length },
    el("caption", {}, caption),
    el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, el("th", { scope: "row" }, r[0]), r.slice(1).map((c) => el("td", {}, c))))));
  // A table ignores its width and overflow (it grows to fit its cells), so on its own it would widen the page
  // even when clipped: the 1 px, overflow-hidden wrapper holds it.
  host.replaceChildren(el("div", { class: "sr-only" }, table));
  return table;
}

// Write text into a polite live region, only when it changed (screen readers repeat identical writes).
export function announce(region, text) {
  if (region && region.textContent !== text) region.textContent = text;
}

// The ARIA tabs pattern on a role="tablist": Left/Right (and Home/End) move to the neighbouring tab, focus it
// and click it (automatic activation); only the selected tab is in the Tab order (call syncTabs after a change).
export function wireTabs(tablist) {
  const tabs = () => [...tablist.querySelectorAll("[role=tab]")];
  tablist.addEventListener("keydown", (e) => {
    const list = tabs(), i = list.indexOf(e.target);
    if (i < 0) return;
    const j = { ArrowLeft: i - 1, ArrowRight: i + 1, Home: 0, End: list.length - 1 }[e.key];
    if (j === undefined) return;
    e.preventDefault();
    const next = list[(j + list.length) % list.length];
    next.focus();
    next.click();
  });
  syncTabs(tablist);
}

export function syncTabs(tablist) {
  const list = [...tablist.querySelectorAll("[role=tab]")];
  const selected = list.find((t) => t.getAttribute("aria-selected") === "true") || list[0];
  for (const t of list) t.tabIndex = t === selected ? 0 : -1;
}

// Arrow-key step for a rows x cols cursor at index idx (row-major); null for keys that do not move it.
// PageUp/PageDown jump a quarter of the grid, Home/End go to the row's ends.
export function gridStep(key, idx, rows, cols) {
  const r = Math.floor(idx / cols), c = idx % cols, jump = Math.max(1, Math.round(Math.max(rows, cols) / 4));
  const to = {
    ArrowLeft: [r, c - 1], ArrowRight: [r, c + 1], ArrowUp: [r - 1, c], ArrowDown: [r + 1, c],
    PageUp: [r - jump, c], PageDown: [r + jump, c], Home: [r, 0], End: [r, cols - 1],
  }[key];
  if (!to) return null;
  const nr = Math.max(0, Math.min(rows - 1, to[0])), nc = Math.max(0, Math.min(cols - 1, to[1]));
  return nr * cols + nc;
}
