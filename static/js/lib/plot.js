// Shared plotly look and number formatting for every chart page (positional, scaling, tour, distance,
// ViT embeddings), so the same quantity reads the same everywhere.
import { exportButtons, plotlyExports } from "./export.js";

export const FONT = { family: "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", size: 12, color: "#1d2430" };
export const DIVERGING = [[0, "#2166ac"], [0.25, "#92c5de"], [0.5, "#f7f7f7"], [0.75, "#f4a582"], [1, "#b2182b"]];
export const CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };

// A plotly layout with the house margins, font and white background; `extra` overrides any of it.
export function layout(extra = {}) {
  return { margin: { l: 58, r: 14, t: 10, b: 44 }, font: FONT, paper_bgcolor: "#fff", plot_bgcolor: "#fff", ...extra };
}

// 1.2345e-14 -> "1.23e−14"; 0.5 -> "0.5"; 1234567 -> "1,234,567".
export function fmt(v, digits = 3) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (Number.isInteger(v) && a < 1e12) return v.toLocaleString("en-US");
  if (a >= 1e-3 && a < 1e5) return String(Number(v.toPrecision(digits)));
  return v.toExponential(digits - 1).replace("e-", "e\u2212").replace("e+", "e");
}

// 1 -> "1st", 2 -> "2nd", 11 -> "11th", 23 -> "23rd".
export const ordinal = (n) => `${n}${[11, 12, 13].includes(n % 100) ? "th" : ["th", "st", "nd", "rd"][n % 10] || "th"}`;

// PNG/SVG/CSV/JSON buttons for the plotly chart in `div`, into the element with id `slotId` (if present).
export function mountExports(slotId, div, name, dataFn) {
  const box = document.getElementById(slotId);
  if (box) box.replaceChildren(exportButtons(plotlyExports(div, name, dataFn)));
}
