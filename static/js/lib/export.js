// Export every chart: PNG and SVG of the picture, CSV and JSON of the numbers behind it.
//
// Numbering, the one convention of every export (CSV, JSON, file names): layers, heads, tokens, patches,
// grid rows and columns, principal components and ranks count from 1, exactly as on screen. The API alone
// counts from 0 (layer 12 on screen and in a download is layer=11 in a request); page code converts at
// that boundary and nowhere else. Quantities that are values rather than indices keep their value:
// positions and dimensions of the sinusoidal encoding (pos 0, dim 0 = sin at i = 0; paper 1, Section 3.5),
// offsets k and d_k.
import { el } from "./dom.js";

function download(name, blob) {
  const a = el("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
}

export function downloadText(name, text, type) { download(name, new Blob([text], { type })); }
export function downloadJSON(name, obj) { downloadText(name, JSON.stringify(obj, null, 1), "application/json"); }

// A string cell that a spreadsheet would run as a formula (leading = + - @, or a tab / CR that some
// spreadsheets skip before one) gets a leading single quote (OWASP, CSV injection). Only strings: tokens,
// labels and file names; numbers such as -0.5 stay numbers.
export function csvCell(v) {
  if (typeof v !== "string") return v === null || v === undefined ? "" : v;
  const s = /^[=+\-@\t\r]/.test(v) ? `'${v}` : v;
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function toCSV(header, rows) {
  return [header.map(csvCell).join(","), ...rows.map((r) => r.map(csvCell).join(","))].join("\n") + "\n";
}
export function downloadCSV(name, header, rows) { downloadText(name, toCSV(header, rows), "text/csv"); }

// A canvas (or several layered canvases of the same size) -> PNG / SVG (the bitmap embedded in an <svg>).
export function canvasToPNG(canvases) {
  const list = Array.isArray(canvases) ? canvases : [canvases];
  const out = document.createElement("canvas");
  out.width = list[0].width; out.height = list[0].height;
  const ctx = out.getContext("2d");
  for (const c of list) ctx.drawImage(c, 0, 0);
  return out.toDataURL("image/png");
}
export function downloadCanvas(name, canvases, format) {
  const png = canvasToPNG(canvases);
  const list = Array.isArray(canvases) ? canvases : [canvases];
  if (format === "png") {
    fetch(png).then((r) => r.blob()).then((b) => download(`${name}.png`, b));
  } else {
    const w = list[0].width, h = list[0].height;
    const svg = `<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}"><image width="${w}" height="${h}" xlink:href="${png}"/></svg>`;
    downloadText(`${name}.svg`, svg, "image/svg+xml");
  }
}

// Buttons: handlers = {png, svg, csv, json}; each is a function. Returns the element.
export function exportButtons(handlers, label = "Export") {
  const box = el("span", { class: "export", "aria-label": label });
  for (const fmt of ["png", "svg", "csv", "json"]) {
    if (!handlers[fmt]) continue;
    box.append(el("button", { type: "button", "data-export": fmt, title: `Download ${fmt.toUpperCase()}`, onclick: handlers[fmt] }, fmt.toUpperCase()));
  }
  return box;
}

// Standard handlers for a plotly chart in `div`.
export function plotlyExports(div, name, dataFn) {
  return {
    png: () => Plotly.downloadImage(div, { format: "png", filename: name, scale: 2 }),
    svg: () => Plotly.downloadImage(div, { format: "svg", filename: name }),
    ...(dataFn ? { csv: () => { const { header, rows } = dataFn(); downloadCSV(`${name}.csv`, header, rows); },
                   json: () => { const { header, rows, meta } = dataFn(); downloadJSON(`${name}.json`, { meta: meta || {}, header, rows }); } } : {}),
  };
}
