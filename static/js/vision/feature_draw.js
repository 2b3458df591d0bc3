// Drawing helpers of the features and norms tabs: a patch grid painted over the photo the model saw (RGB cells,
// a colormap, or categorical parts), the outline of a patch mask, and a layers x heads heat grid. Canvases only;
// every canvas gets its text alternative from the caller (aria-label or an sr-only table).
import { colormapLUT, paintGrid, valueRange } from "../lib/colormap.js";

// 16 distinguishable part colours (Tableau-like; K-means labels 0..15).
export const PART_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94"];

function hexRGB(hex) { const n = parseInt(hex.slice(1), 16); return [(n >> 16) & 255, (n >> 8) & 255, n & 255]; }

// The fraction of the R x R image the patch grid covers (R need not be a multiple of the patch size).
function cover(A) {
  const g = A.grid;
  return { fx: (g.cols * g.patch_size) / g.resolution, fy: (g.rows * g.patch_size) / g.resolution };
}

function sized(canvas) {
  const css = canvas.clientWidth || canvas.width;
  const size = Math.round(css * (window.devicePixelRatio || 1));
  if (canvas.width !== size) { canvas.width = size; canvas.height = size; }
  return size;
}

// Photo (dimmed by `photoAlpha`) and a rows x cols RGBA grid (cells: i -> [r, g, b, a]) drawn over it, unsmoothed.
export function drawCells(canvas, A, cell, { photoAlpha = 1 } = {}) {
  const size = sized(canvas), ctx = canvas.getContext("2d"), { rows, cols } = A.grid;
  ctx.clearRect(0, 0, size, size);
  ctx.fillStyle = "#000"; ctx.fillRect(0, 0, size, size);
  ctx.globalAlpha = photoAlpha; ctx.imageSmoothingEnabled = true;
  ctx.drawImage(A.image, 0, 0, size, size);
  ctx.globalAlpha = 1;
  const grid = document.createElement("canvas");
  grid.width = cols; grid.height = rows;
  const g = grid.getContext("2d"), img = g.createImageData(cols, rows);
  for (let i = 0; i < rows * cols; i++) img.data.set(cell(i), i * 4);
  g.putImageData(img, 0, 0);
  const { fx, fy } = cover(A);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(grid, 0, 0, size * fx, size * fy);
  return { ctx, size };
}

// RGB PCA colours (Uint8Array rows*cols*3) over the photo; cells where `show(i)` is false let the photo through.
export function drawRGB(canvas, A, rgb, show) {
  return drawCells(canvas, A, (i) => (show(i) ? [rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2], 255] : [0, 0, 0, 0]),
    { photoAlpha: 0.45 });
}

// A scalar map (rows*cols) in a colormap over the photo at `opacity`; returns the value range drawn.
export function drawHeat(canvas, A, values, { colormap = "viridis", opacity = 0.7, range = null } = {}) {
  const r = range || valueRange(values);
  const lut = colormapLUT(colormap), span = r.max > r.min ? r.max - r.min : 1, a = Math.round(255 * opacity);
  const { ctx, size } = drawCells(canvas, A, (i) => {
    const j = Math.round(Math.max(0, Math.min(1, (values[i] - r.min) / span)) * 255) * 4;
    return [lut[j], lut[j + 1], lut[j + 2], a];
  });
  return { ctx, size, range: r };
}

// Categorical parts (labels rows*cols) over the photo.
export function drawParts(canvas, A, labels) {
  const rgb = PART_COLORS.map(hexRGB);
  return drawCells(canvas, A, (i) => [...rgb[labels[i] % rgb.length], 170]);
}

// Outline the boundary of a patch mask (mask[i] truthy) on a canvas drawn by drawCells.
export function outlineMask(ctx, size, A, mask, color = "#fff") {
  const { rows, cols } = A.grid, { fx, fy } = cover(A), w = (size * fx) / cols, h = (size * fy) / rows;
  const on = (r, c) => r >= 0 && c >= 0 && r < rows && c < cols && mask[r * cols + c];
  ctx.strokeStyle = color; ctx.lineWidth = Math.max(1.5, size / 200);
  ctx.beginPath();
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) {
    if (!on(r, c)) continue;
    const x = c * w, y = r * h;
    if (!on(r - 1, c)) { ctx.moveTo(x, y); ctx.lineTo(x + w, y); }
    if (!on(r + 1, c)) { ctx.moveTo(x, y + h); ctx.lineTo(x + w, y + h); }
    if (!on(r, c - 1)) { ctx.moveTo(x, y); ctx.lineTo(x, y + h); }
    if (!on(r, c + 1)) { ctx.moveTo(x + w, y); ctx.lineTo(x + w, y + h); }
  }
  ctx.stroke();
}

// A layers x heads grid of values (Float32Array L*H, row-major) with L1.. / h1.. labels, colormap on [0, max].
export function drawLayerHeads(canvas, values, L, H, { colormap = "viridis", max = null } = {}) {
  const ctx = canvas.getContext("2d"), left = 34, top = 18;
  const w = canvas.width - left, h = canvas.height - top;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  let hi = max ?? 0;
  if (max === null) for (const v of values) hi = Math.max(hi, v);
  const grid = paintGrid(values, L, H, { colormap, min: 0, max: hi > 0 ? hi : 1 });
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(grid, left, top, w, h);
  ctx.fillStyle = "#1d2430"; ctx.font = "11px system-ui, sans-serif"; ctx.textBaseline = "middle";
  for (let l = 0; l < L; l++) ctx.fillText(`L${l + 1}`, 2, top + (l + 0.5) * (h / L));
  ctx.textAlign = "center";
  for (let k = 0; k < H; k++) ctx.fillText(`h${k + 1}`, left + (k + 0.5) * (w / H), 9);
  ctx.textAlign = "start";
  return hi;
}
