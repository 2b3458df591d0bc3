// The big view: the photo the model saw, with one attention map over it (nearest-neighbour upscaled patch grid,
// or smoothed), the query patch outlined. Hover/click report the patch under the pointer.
import { drawColorbar, paintGrid, valueRange } from "../lib/colormap.js";
import { widgetCanvas } from "../lib/dom.js";

export const CLIP_QUANTILE = 0.98; // "Clip top 2%": values above this quantile saturate

// FNV-1a over the float32 bytes: a short fingerprint of the values drawn (tests and debugging read it).
export function checksum(values) {
  const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  let h = 0x811c9dc5;
  for (let i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193);
  return (h >>> 0).toString(16).padStart(8, "0");
}

// Fraction of the R x R image covered by the patch grid (R need not be a multiple of the patch size).
function coverage(p) {
  return { fx: (p.cols * p.patchSize) / p.resolution, fy: (p.rows * p.patchSize) / p.resolution };
}

function patchAt(p, canvas, clientX, clientY) {
  const r = canvas.getBoundingClientRect();
  const { fx, fy } = coverage(p);
  const u = (clientX - r.left) / r.width / fx, v = (clientY - r.top) / r.height / fy;
  if (u < 0 || v < 0 || u >= 1 || v >= 1) return null;
  return Math.floor(v * p.rows) * p.cols + Math.floor(u * p.cols);
}

function outline(ctx, p, idx, size, style) {
  const { fx, fy } = coverage(p);
  const w = (size * fx) / p.cols, h = (size * fy) / p.rows;
  const x = (idx % p.cols) * w, y = Math.floor(idx / p.cols) * h;
  ctx.setLineDash(style === "hover" ? [5, 4] : []);
  ctx.lineWidth = 4; ctx.strokeStyle = "rgba(0, 0, 0, 0.75)";
  ctx.strokeRect(x + 1, y + 1, w - 2, h - 2);
  ctx.lineWidth = 2; ctx.strokeStyle = style === "hover" ? "#ffffff" : "#ff7a1a";
  ctx.strokeRect(x + 1, y + 1, w - 2, h - 2);
  ctx.setLineDash([]);
}

function draw(canvas, p) {
  const css = canvas.clientWidth || 448;
  const size = Math.round(css * (window.devicePixelRatio || 1));
  if (canvas.width !== size) { canvas.width = size; canvas.height = size; }
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, size, size);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(p.image, 0, 0, size, size);
  const range = valueRange(p.values, { clip: p.clip, quantile: CLIP_QUANTILE });
  const heat = paintGrid(p.values, p.rows, p.cols, { colormap: p.colormap, min: range.min, max: range.max, fade: p.fade });
  const { fx, fy } = coverage(p);
  ctx.globalAlpha = p.opacity;
  ctx.imageSmoothingEnabled = p.smooth;
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(heat, 0, 0, size * fx, size * fy);
  ctx.globalAlpha = 1;
  if (p.gridlines) {
    ctx.strokeStyle = "rgba(255, 255, 255, 0.35)"; ctx.lineWidth = 1;
    ctx.beginPath();
    for (let c = 1; c < p.cols; c++) { const x = Math.round((c * size * fx) / p.cols) + 0.5; ctx.moveTo(x, 0); ctx.lineTo(x, size * fy); }
    for (let r = 1; r < p.rows; r++) { const y = Math.round((r * size * fy) / p.rows) + 0.5; ctx.moveTo(0, y); ctx.lineTo(size * fx, y); }
    ctx.stroke();
  }
  if (p.hover !== null && p.hover !== p.query) outline(ctx, p, p.hover, size, "hover");
  if (p.query !== null) outline(ctx, p, p.query, size, "query");
  Object.assign(canvas.dataset, {
    view: p.meta.view, layer: p.meta.layer, head: p.meta.head, query: p.query === null ? "cls" : p.query,
    checksum: checksum(p.values), rows: p.rows, cols: p.cols, fx, fy, state: "ready",
  });
  return range;
}

// props: {image, values (rows*cols), rows, cols, patchSize, resolution, colormap, opacity, smooth, clip, fade,
// gridlines, query, hover, interactive, meta: {view, layer, head, label}, onHover(idx|null), onClick(idx),
// onKey(keydown event), onFocus(), onBlur(), describedBy (id of the text alternative)}.
// Returns {canvas, range: {min, max, clipped}}.
export function renderOverlay(host, props) {
  // A keyboard widget (Tab focuses it, the arrow keys move a query cursor): what it shows is read from the live
  // region and the top-k table.
  const canvas = widgetCanvas(host, "vz-overlay-canvas", "attention map", (canvas) => {
    canvas.addEventListener("keydown", (e) => host._props.onKey?.(e));
    // Focus from the keyboard (not from a click, which probes where it lands) shows the cursor.
    canvas.addEventListener("focus", () => { if (canvas.matches(":focus-visible")) host._props.onFocus?.(); });
    canvas.addEventListener("blur", () => host._props.onBlur?.());
    let last = null;
    canvas.addEventListener("mousemove", (e) => {
      const p = host._props;
      if (!p.interactive) return;
      const idx = patchAt(p, canvas, e.clientX, e.clientY);
      if (idx !== last) { last = idx; p.onHover(idx); }
    });
    canvas.addEventListener("mouseleave", () => { last = null; if (host._props.interactive) host._props.onHover(null); });
    canvas.addEventListener("click", (e) => {
      const p = host._props;
      if (!p.interactive) return;
      const idx = patchAt(p, canvas, e.clientX, e.clientY);
      if (idx !== null) p.onClick(idx);
    });
    new ResizeObserver(() => { if (host._props) draw(canvas, host._props); }).observe(canvas);
  });
  host._props = props;
  canvas.style.cursor = props.interactive ? "crosshair" : "default";
  canvas.setAttribute("aria-label", `${props.meta.label || "attention map over the photo"}. ${props.interactive
    ? "Arrow keys move the query patch, Enter pins it, Escape returns." : "Patch queries: switch to Head or Mean of heads."}`);
  if (props.describedBy) canvas.setAttribute("aria-describedby", props.describedBy);
  return { canvas, range: draw(canvas, props) };
}

// A downloadable figure: title, the chart canvas, a colour bar with its labels, and a footnote.
export function figureCanvas({ title, source, colormap, labels, note }) {
  const pad = 14, titleH = 24, barH = 12, below = 36 + (note ? 18 : 0);
  const out = document.createElement("canvas");
  out.width = source.width + 2 * pad;
  out.height = pad + titleH + source.height + 10 + barH + below;
  const ctx = out.getContext("2d");
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, out.width, out.height);
  ctx.fillStyle = "#1d2430"; ctx.font = "bold 15px system-ui, sans-serif"; ctx.textBaseline = "top";
  ctx.fillText(title, pad, pad);
  ctx.drawImage(source, pad, pad + titleH);
  const by = pad + titleH + source.height + 10;
  ctx.font = "12px system-ui, sans-serif";
  drawColorbar(ctx, colormap, pad, by, Math.min(source.width, 320), barH, labels);
  if (note) { ctx.fillStyle = "#5d6675"; ctx.fillText(note, pad, by + barH + 22); }
  return out;
}

// How many values stand far above the 98th percentile (0 when none): they would wash out the map.
export function outlierCount(values) {
  if (values.length < 50) return 0;
  const sorted = Float64Array.from(values).sort();
  const min = sorted[0], q = sorted[Math.floor(CLIP_QUANTILE * (sorted.length - 1))], max = sorted[sorted.length - 1];
  if (max - min <= 4 * (q - min)) return 0;
  const cut = min + 4 * (q - min);
  return sorted.filter((v) => v > cut).length;
}

// The sentence under a map whose few brightest patches set the colour scale ("" when none do), true to the
// "Clip top 2%" box: `clipped` says it is on (the outliers are saturated) or off (they set the scale).
export function outlierNote(values, clipped) {
  const out = outlierCount(values);
  if (!out) return "";
  const which = out === 1 ? "One patch is" : `${out} patches are`;
  return clipped
    ? `${which} far brighter than the rest; \u201cClip top 2%\u201d (on) saturates the top 2% of values so the rest of the map shows. Untick it to see them set the scale.`
    : `${which} far brighter than the rest and set the colour scale; tick \u201cClip top 2%\u201d to see the rest of the map.`;
}
