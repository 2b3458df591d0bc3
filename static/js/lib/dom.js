// Build DOM with text nodes only: user text is never parsed as HTML.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// The keyboard-widget canvas of `host` (class `className`), made on the first call and reused after: focusable,
// role "application" so that screen readers pass the arrow keys through, `roledescription` saying what it is.
// `wire(canvas)` runs once, when it is made (its listeners read the host's latest props).
export function widgetCanvas(host, className, roledescription, wire) {
  const found = host.querySelector(`canvas.${className}`);
  if (found) return found;
  const canvas = el("canvas", { class: className, tabindex: "0", role: "application", "aria-roledescription": roledescription });
  host.replaceChildren(canvas);
  wire(canvas);
  return canvas;
}

// For the few places that need a string of HTML (plotly hover text and tick labels interpret tags).
export function escapeHTML(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

// The element with this id (every page module uses it; no other lookup helper).
export const $ = (id) => document.getElementById(id);

// Replace a <select>'s options with [value, label] pairs and select `value`.
export function fillSelect(select, options, value) {
  select.replaceChildren(...options.map(([v, label]) => el("option", { value: v }, label)));
  select.value = String(value);
}
