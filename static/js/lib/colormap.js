// Colormaps for canvas heatmaps. The stops are matplotlib's, as plotly ships them (plotly.colors.sequential),
// so a canvas map here and a plotly heatmap elsewhere in the app show the same colours for the same value.
const STOPS = {
  viridis: ["#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725"],
  magma: ["#000004", "#180f3d", "#440f76", "#721f81", "#9e2f7f", "#cd4071", "#f1605d", "#fd9668", "#feca8d", "#fcfdbf"],
  inferno: ["#000004", "#1b0c41", "#4a0c6b", "#781c6d", "#a52c60", "#cf4446", "#ed6925", "#fb9b06", "#f7d13d", "#fcffa4"],
  plasma: ["#0d0887", "#46039f", "#7201a8", "#9c179e", "#bd3786", "#d8576b", "#ed7953", "#fb9f3a", "#fdca26", "#f0f921"],
  cividis: ["#00224e", "#123570", "#3b496c", "#575d6d", "#707173", "#8a8678", "#a59c74", "#c3b369", "#e1cc55", "#fee838"],
  gray: ["#000000", "#ffffff"],
};

export const COLORMAPS = Object.keys(STOPS);
const LUTS = new Map();

function hexRGB(h) { return [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16)); }

// 256 RGBA entries, linear interpolation between the stops. Unknown names fall back to viridis.
export function colormapLUT(name) {
  const key = STOPS[name] ? name : "viridis";
  if (LUTS.has(key)) return LUTS.get(key);
  const stops = STOPS[key].map(hexRGB);
  const lut = new Uint8ClampedArray(256 * 4);
  for (let i = 0; i < 256; i++) {
    const x = (i / 255) * (stops.length - 1);
    const k = Math.min(Math.floor(x), stops.length - 2), f = x - k;
    for (let c = 0; c < 3; c++) lut[i * 4 + c] = Math.round(stops[k][c] * (1 - f) + stops[k + 1][c] * f);
    lut[i * 4 + 3] = 255;
  }
  LUTS.set(key, lut);
  return lut;
}

// CSS colour of value t in [0, 1].
export function colorAt(name, t) {
  const lut = colormapLUT(name), i = Math.max(0, Math.min(255, Math.round(t * 255))) * 4;
  return `rgb(${lut[i]}, ${lut[i + 1]}, ${lut[i + 2]})`;
}

// {min, max} of values; with clip, max is the given upper quantile (outliers saturate instead of washing
// out the rest of the map). `clipped` says whether any value lies above max.
export function valueRange(values, { clip = false, quantile = 0.99 } = {}) {
  let min = Infinity, max = -Infinity;
  for (const v of values) { if (v < min) min = v; if (v > max) max = v; }
  if (!Number.isFinite(min)) return { min: 0, max: 1, clipped: false };
  let clipped = false;
  if (clip && values.length > 1) {
    const sorted = Float64Array.from(values).sort();
    const q = sorted[Math.min(sorted.length - 1, Math.floor(quantile * (sorted.length - 1)))];
    if (q > min && q < max) { clipped = true; max = q; }
  }
  return { min, max, clipped };
}

// A rows x cols canvas (one pixel per cell) painted with the colormap; scale it up with drawImage.
// With `fade`, each cell's alpha grows with its value, so low values let what is underneath show through.
export function paintGrid(values, rows, cols, { colormap = "viridis", min, max, offset = 0, fade = false } = {}) {
  const lut = colormapLUT(colormap);
  const canvas = document.createElement("canvas");
  canvas.width = cols; canvas.height = rows;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(cols, rows);
  const span = max > min ? max - min : 1;
  for (let i = 0; i < rows * cols; i++) {
    const t = Math.max(0, Math.min(1, (values[offset + i] - min) / span));
    const j = Math.round(t * 255) * 4;
    img.data[i * 4] = lut[j]; img.data[i * 4 + 1] = lut[j + 1]; img.data[i * 4 + 2] = lut[j + 2];
    img.data[i * 4 + 3] = fade ? Math.round(255 * Math.sqrt(t)) : 255;
  }
  ctx.putImageData(img, 0, 0);
  return canvas;
}

// Colour bar into a 2D context at (x, y, w, h), low to high from left to right (or bottom to top when
// `vertical`); min/max labels drawn under a horizontal bar when `labels` = {min, max} strings.
export function drawColorbar(ctx, colormap, x, y, w, h, labels = null, { vertical = false } = {}) {
  const lut = colormapLUT(colormap);
  const grad = vertical ? ctx.createLinearGradient(0, y + h, 0, y) : ctx.createLinearGradient(x, 0, x + w, 0);
  for (let i = 0; i <= 16; i++) {
    const j = Math.round((i / 16) * 255) * 4;
    grad.addColorStop(i / 16, `rgb(${lut[j]}, ${lut[j + 1]}, ${lut[j + 2]})`);
  }
  ctx.fillStyle = grad;
  ctx.fillRect(x, y, w, h);
  ctx.strokeStyle = "rgba(0, 0, 0, 0.25)";
  ctx.lineWidth = 1;
  ctx.strokeRect(x + 0.5, y + 0.5, w - 1, h - 1);
  if (labels && !vertical) {
    ctx.fillStyle = "#1d2430";
    ctx.textBaseline = "top";
    ctx.textAlign = "left"; ctx.fillText(labels.min, x, y + h + 3);
    ctx.textAlign = "right"; ctx.fillText(labels.max, x + w, y + h + 3);
    ctx.textAlign = "left";
  }
}

// Compact number for labels: 0.0123 -> "0.0123", 1.2e-5 -> "1.2e-5".
export function fmtValue(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e-3 && a < 1e4) return String(Number(v.toPrecision(3)));
  return v.toExponential(1).replace("e-", "e\u2212");
}
