// Export every chart: PNG and SVG of the picture, CSV and JSON of the numbers behind it.
//
// Numbering, the one convention of every export (CSV, JSON, file names): layers, heads, tokens, patches,
// grid rows and columns, principal components and ranks count from 1, exactly as on screen. The API alone
// counts from 0 (layer 12 on screen and in a download is layer=11 in a request); page code converts at
// that boundary and nowhere else. Quantities that are values rather than indices keep their value:
// positions and dimensions of the sinusoidal encoding (pos 0, dim 0 = sin at i = 0; paper 1, Section 3.5),
// offsets k and d_k.
import { el } from "./dom.js";

// The object URL lives a minute: a browser under load may start reading it well after the click, and a URL
// revoked before that gives no download and no error.
function download(name, blob) {
  const a = el("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
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
// The PNG bytes come from canvas.toBlob: fetch(dataURL) would be a connection, which the app's CSP
// (connect-src 'self') refuses. The SVG embeds the bitmap as a data: URL in <image>, an image source that
// img-src allows. `scale` sets the SVG's display size (0.5 for a bitmap drawn at 2x).
function flatten(canvases) {
  const list = Array.isArray(canvases) ? canvases : [canvases];
  if (!list.length || !list[0] || !list[0].width || !list[0].height) throw new Error("there is no picture to export yet");
  const out = document.createElement("canvas");
  out.width = list[0].width; out.height = list[0].height;
  const ctx = out.getContext("2d");
  for (const c of list) ctx.drawImage(c, 0, 0);
  return out;
}
export function canvasToPNG(canvases) { return flatten(canvases).toDataURL("image/png"); }
export function canvasBlob(canvas, type = "image/png") {
  return new Promise((resolve, reject) => canvas.toBlob(
    (b) => (b && b.size ? resolve(b) : reject(new Error("the browser could not encode the picture"))), type));
}
export async function downloadCanvas(name, canvases, format, { scale = 1 } = {}) {
  const out = flatten(canvases);
  if (format === "png") { download(`${name}.png`, await canvasBlob(out)); return; }
  const png = out.toDataURL("image/png");
  const w = out.width * scale, h = out.height * scale;
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}"><image width="${w}" height="${h}" href="${png}" xlink:href="${png}"/></svg>`;
  downloadText(`${name}.svg`, svg, "image/svg+xml");
}

// A legend drawn into an exported picture: a swatch and a label per item ({color, label}), left to right,
// wrapping at maxWidth; legendRows says beforehand how many rows of `line` px it takes (to size the picture).
// Call both with the context's font already set.
function legendLayout(ctx, items, maxWidth, swatch, gap) {
  let cx = 0, row = 0;
  return items.map(({ label }) => {
    const w = swatch + 4 + ctx.measureText(label).width;
    if (cx > 0 && cx + w > maxWidth) { cx = 0; row += 1; }
    const at = { x: cx, row }; cx += w + gap; return at;
  });
}
export function legendRows(ctx, items, maxWidth, { swatch = 10, gap = 14 } = {}) {
  const at = legendLayout(ctx, items, maxWidth, swatch, gap);
  return at.length ? at[at.length - 1].row + 1 : 0;
}
export function drawLegend(ctx, items, x, y, maxWidth, { swatch = 10, gap = 14, line = 16 } = {}) {
  const at = legendLayout(ctx, items, maxWidth, swatch, gap);
  ctx.save(); ctx.textAlign = "left"; ctx.textBaseline = "middle";
  items.forEach(({ color, label }, i) => {
    const px = x + at[i].x, py = y + at[i].row * line;
    ctx.fillStyle = color; ctx.fillRect(px, py + (line - swatch) / 2, swatch, swatch);
    ctx.fillStyle = "#1d2430"; ctx.fillText(label, px + swatch + 4, py + line / 2);
  });
  ctx.restore();
}

// Buttons: handlers = {png, svg, csv, json}; each is a function (it may return a promise). A handler that throws
// or rejects (a canvas the browser cannot encode, a failed fetch of the data) writes a visible message into the
// box's status line (aria-live), so an export never fails silently; a successful one clears the line.
export function exportButtons(handlers, label = "Export") {
  const box = el("span", { class: "export", role: "group", "aria-label": label });
  const status = el("span", { class: "export-status", role: "status", "aria-live": "polite" });
  for (const fmt of ["png", "svg", "csv", "json"]) {
    if (!handlers[fmt]) continue;
    const run = async () => {
      status.replaceChildren(); delete box.dataset.failed;
      try { await handlers[fmt](); } catch (e) {
        box.dataset.failed = fmt;
        status.replaceChildren(`${fmt.toUpperCase()} export failed: ${(e && e.message) || e}`);
        console.warn(`${label}: ${fmt} export failed`, e);
      }
    };
    box.append(el("button", { type: "button", "data-export": fmt, title: `Download ${fmt.toUpperCase()}`, onclick: run }, fmt.toUpperCase()));
  }
  box.append(status);
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
