// Model view: every layer x head CLS map as a small thumbnail on ONE canvas (plotly slows past ~30 traces),
// rows = layers, columns = heads + a "mean" column. Click or arrow keys select; the selection is outlined.
import { paintGrid, valueRange } from "../lib/colormap.js";
import { widgetCanvas } from "../lib/dom.js";
import { fromApi } from "../lib/numbering.js";
import { CLIP_QUANTILE } from "./overlay.js";

const LABEL_W = 30, HEAD_H = 18, GAP = 3, MEAN_GAP = 8;
const FONT = "11px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";

// Geometry of the grid for the host width: CSS pixels.
function layout(props, width) {
  const { L, H, rows, cols } = props;
  const n = H + 1;
  const byWidth = Math.floor((width - LABEL_W - (n - 1) * GAP - MEAN_GAP) / n);
  const byHeight = Math.floor(((props.maxHeight || 1e9) - HEAD_H) / L - GAP) * (cols / rows);
  const tw = Math.max(14, Math.min(64, byWidth, byHeight));
  const th = Math.round((tw * rows) / cols);
  return {
    tw, th, L, n,
    x: (c) => LABEL_W + c * (tw + GAP) + (c === n - 1 ? MEAN_GAP : 0),
    y: (l) => HEAD_H + l * (th + GAP),
    width: LABEL_W + n * (tw + GAP) + MEAN_GAP,
    height: HEAD_H + L * (th + GAP),
  };
}

// One rows x cols canvas per map, cached per (data, colormap, clip).
const THUMBS = new WeakMap();
function thumbs(props) {
  const key = `${props.colormap}|${props.clip}`;
  if (!THUMBS.has(props.cls)) THUMBS.set(props.cls, new Map());
  const cache = THUMBS.get(props.cls);
  if (cache.has(key)) return cache.get(key);
  const { L, H, rows, cols, cls, means } = props;
  const P = rows * cols, out = [];
  for (let l = 0; l < L; l++) {
    const row = [];
    for (let c = 0; c <= H; c++) {
      const src = c < H ? cls : means, offset = c < H ? (l * H + c) * P : l * P;
      const r = valueRange(src.subarray(offset, offset + P), { clip: props.clip, quantile: CLIP_QUANTILE });
      row.push(paintGrid(src, rows, cols, { colormap: props.colormap, min: r.min, max: r.max, offset }));
    }
    out.push(row);
  }
  cache.set(key, out);
  return out;
}

function draw(canvas, props) {
  const g = layout(props, (canvas.parentElement.clientWidth || 320) - 8);
  const dpr = window.devicePixelRatio || 1;
  canvas.style.width = `${g.width}px`; canvas.style.height = `${g.height}px`;
  canvas.width = Math.round(g.width * dpr); canvas.height = Math.round(g.height * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, g.width, g.height);
  const maps = thumbs(props);
  const { layer: sl, col: sc } = props.selected;
  ctx.font = FONT; ctx.textBaseline = "middle";
  for (let c = 0; c < g.n; c++) {
    ctx.fillStyle = c === sc && props.active ? "#2456c7" : "#5d6675";
    ctx.textAlign = "center";
    ctx.fillText(c === g.n - 1 ? "mean" : `H${fromApi(c)}`, g.x(c) + g.tw / 2, HEAD_H / 2);
  }
  ctx.imageSmoothingEnabled = false;
  for (let l = 0; l < g.L; l++) {
    ctx.fillStyle = l === sl && props.active ? "#2456c7" : "#5d6675";
    ctx.textAlign = "right";
    ctx.fillText(`L${fromApi(l)}`, LABEL_W - 6, g.y(l) + g.th / 2);
    for (let c = 0; c < g.n; c++) ctx.drawImage(maps[l][c], g.x(c), g.y(l), g.tw, g.th);
  }
  // Selection: a thick outline (dashed while the rollout view, which does not use it, is shown).
  const x = g.x(sc), y = g.y(sl);
  ctx.lineWidth = 2.5;
  ctx.strokeStyle = "#ffffff";
  ctx.strokeRect(x - 1, y - 1, g.tw + 2, g.th + 2);
  ctx.setLineDash(props.active ? [] : [4, 3]);
  ctx.strokeStyle = "#e8590c";
  ctx.strokeRect(x - 2.5, y - 2.5, g.tw + 5, g.th + 5);
  ctx.setLineDash([]);
  Object.assign(canvas.dataset, {
    layers: g.L, heads: g.n - 1, selected: `${sl},${sc}`, originX: g.x(0), originY: g.y(0),
    pitchX: g.tw + GAP, pitchY: g.th + GAP, meanGap: MEAN_GAP, thumbW: g.tw, thumbH: g.th,
  });
  canvas.setAttribute("aria-label", `Model view, ${g.L} layers by ${g.n - 1} heads plus mean. Selected: layer ${fromApi(sl)}, ${
    sc === g.n - 1 ? "mean of heads" : `head ${fromApi(sc)}`}. Arrow keys move the selection.`);
  return g;
}

function hit(g, px, py) {
  for (let l = 0; l < g.L; l++) {
    if (py < g.y(l) - GAP / 2 || py > g.y(l) + g.th + GAP / 2) continue;
    for (let c = 0; c < g.n; c++) if (px >= g.x(c) - GAP / 2 && px <= g.x(c) + g.tw + GAP / 2) return { layer: l, col: c };
  }
  return null;
}

// props: {cls (L*H*P), means (L*P), L, H, rows, cols, colormap, clip, selected: {layer, col}, active, maxHeight,
// onSelect(layer, col), describedBy (id of its caption)}; col === H is the mean column. Re-render by calling
// again with new props.
export function renderModelGrid(host, props) {
  // A keyboard widget (the arrow keys move the selection): the label says what is selected, the caption below
  // says how to read the thumbnails.
  const canvas = widgetCanvas(host, "vz-grid-canvas", "model view", (canvas) => {
    if (props.describedBy) canvas.setAttribute("aria-describedby", props.describedBy);
    canvas.addEventListener("click", (e) => {
      const r = canvas.getBoundingClientRect();
      const cell = hit(host._g, e.clientX - r.left, e.clientY - r.top);
      canvas.focus();
      if (cell) host._props.onSelect(cell.layer, cell.col);
    });
    canvas.addEventListener("mousemove", (e) => {
      const r = canvas.getBoundingClientRect();
      const cell = hit(host._g, e.clientX - r.left, e.clientY - r.top);
      const H = host._props.H;
      canvas.title = cell ? `Layer ${fromApi(cell.layer)}, ${cell.col === H ? "mean of heads" : `head ${fromApi(cell.col)}`}` : "";
      canvas.style.cursor = cell ? "pointer" : "default";
    });
    canvas.addEventListener("keydown", (e) => {
      const p = host._props, { layer, col } = p.selected;
      const move = { ArrowLeft: [0, -1], ArrowRight: [0, 1], ArrowUp: [-1, 0], ArrowDown: [1, 0],
        Home: [-layer, 0], End: [p.L - 1 - layer, 0] }[e.key];
      if (!move) return;
      e.preventDefault();
      const nl = Math.max(0, Math.min(p.L - 1, layer + move[0]));
      const nc = Math.max(0, Math.min(p.H, col + move[1]));
      p.onSelect(nl, nc);
    });
    new ResizeObserver(() => { if (host._props) host._g = draw(canvas, host._props); }).observe(host);
  });
  host._props = props;
  host._g = draw(canvas, props);
  return canvas;
}
