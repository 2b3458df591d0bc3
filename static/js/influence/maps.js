// Shared drawing for the /influence sections: a patch map over the analysed image (canvas, with a top-5 text
// alternative), fetching with the section's options, and small formatting helpers.
import { apiGet } from "../lib/api.js";
import { colorAt, paintGrid, valueRange } from "../lib/colormap.js";
import { el } from "../lib/dom.js";
import { topK } from "../lib/a11y.js";

export const SIZE = 224; // px of each drawn map

export const fmt3 = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toPrecision(2));

const images = new Map(); // url -> Promise<HTMLImageElement>
export function loadImage(url) {
  if (!images.has(url)) {
    const img = new Image();
    img.src = url;
    images.set(url, img.decode().then(() => img));
  }
  return images.get(url);
}

// GET /api/influence/<family>/<analysisId>/<what>?params
export function fetchInfluence(ctx, what, params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined && v !== "") q.set(k, v);
  const s = q.toString();
  return apiGet(`/api/influence/${ctx.family}/${ctx.analysisId}/${what}${s ? `?${s}` : ""}`, { signal: ctx.signal });
}

// A figure: the image with `values` (P, row-major over rows x cols) as a heat layer, a title, and a caption
// listing the five strongest patches. `onPick(patch)` makes the canvas clickable (and keyboard operable by
// the arrow keys + Enter through the returned figure's input).
export async function patchMap(ctx, values, title, { colormap = "inferno", onPick = null, marked = null } = {}) {
  const { rows, cols } = ctx.grid;
  const canvas = el("canvas", { width: SIZE, height: SIZE, role: "img", "aria-label": `${title}: heat map over the photo's ${rows} × ${cols} patches` });
  const g = canvas.getContext("2d");
  const img = await loadImage(ctx.imageUrl);
  const { min, max } = valueRange(values, { clip: true });
  g.drawImage(img, 0, 0, SIZE, SIZE);
  g.globalAlpha = 0.75;
  g.imageSmoothingEnabled = false;
  g.drawImage(paintGrid(values, rows, cols, { colormap, min, max, fade: true }), 0, 0, SIZE, SIZE);
  g.globalAlpha = 1;
  if (marked !== null && marked !== undefined) {
    const w = SIZE / cols, h = SIZE / rows;
    g.strokeStyle = "#00e5ff"; g.lineWidth = 2;
    g.strokeRect((marked % cols) * w + 1, Math.floor(marked / cols) * h + 1, w - 2, h - 2);
  }
  const top = topK(values, 5).map((p) => `row ${Math.floor(p / cols) + 1}, col ${(p % cols) + 1} (${fmt3(values[p])})`);
  const fig = el("figure", { class: "inf-map" }, el("figcaption", {}, el("b", {}, title)), canvas,
    el("figcaption", {}, `Strongest patches: ${top.join("; ")}.`),
    el("div", { class: "inf-bar", "aria-hidden": "true" },
      el("span", { style: `background:${colorAt(colormap, 0)}` }), `${fmt3(min)} … ${fmt3(max)}`, el("span", { style: `background:${colorAt(colormap, 1)}` })));
  if (onPick) {
    canvas.style.cursor = "crosshair";
    canvas.addEventListener("click", (e) => {
      const r = canvas.getBoundingClientRect();
      const c = Math.min(cols - 1, Math.floor(((e.clientX - r.left) / r.width) * cols));
      const rr = Math.min(rows - 1, Math.floor(((e.clientY - r.top) / r.height) * rows));
      onPick(rr * cols + c);
    });
  }
  return fig;
}
