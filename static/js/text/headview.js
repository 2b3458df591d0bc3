// Head view (as bertviz's): queries on the left, keys on the right, one line per (query, key) weighted by
// attention, one colour per head. Lines are drawn on one canvas, batched by (head, opacity level), so a few
// hundred tokens stay fast; tokens are DOM text nodes (never parsed as HTML).
import { el } from "../lib/dom.js";
import { downloadCSV, downloadJSON, exportButtons, canvasToPNG, downloadText } from "../lib/export.js";
import { fromApi, NUMBERING } from "./data.js";

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf", "#3949ab", "#00897b"];
function headColor(h) { return h < PALETTE.length ? PALETTE[h] : `hsl(${(h * 137.5) % 360}, 60%, 45%)`; }

const ROW = 22, LEVELS = 12, MIN_WEIGHT = 0.01; // lines under 1 % are invisible anyway and are skipped
const LONG = 64 * 64, TOP_K = 6, FIRST_PX = 720; // long inputs: each query's TOP_K strongest lines per head (hover shows all)

function hexToRGB(c) {
  if (c.startsWith("#")) return [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16));
  const probe = document.createElement("canvas").getContext("2d");
  probe.fillStyle = c; probe.fillRect(0, 0, 1, 1);
  return Array.from(probe.getImageData(0, 0, 1, 1).data.slice(0, 3));
}

// Draw the lines of `heads` into ctx (already scaled to CSS pixels). focus = {side: "q"|"k", index} or null.
function drawLines(ctx, layer, dims, heads, focus, x0, x1) {
  const { nq, nk } = dims, { values, factor } = layer;
  ctx.lineWidth = nq * nk > LONG ? 1 : 1.5;
  for (const h of heads) {
    const rgb = hexToRGB(headColor(h)), paths = Array.from({ length: LEVELS }, () => new Path2D());
    const base = h * nq * nk;
    const qs = focus && focus.side === "q" ? [focus.index] : null;
    for (const i of qs || Array.from({ length: nq }, (_, k) => k)) {
      const yi = i * ROW + ROW / 2, row = base + i * nk;
      const j0 = focus && focus.side === "k" ? focus.index : 0, j1 = focus && focus.side === "k" ? focus.index + 1 : nk;
      let keep = [];
      for (let j = j0; j < j1; j++) {
        const w = values[row + j] * factor;
        if (w >= (focus ? 0.002 : MIN_WEIGHT)) keep.push([w, j]);
      }
      if (!focus && nq * nk > LONG && keep.length > TOP_K) keep = keep.sort((a, c) => c[0] - a[0]).slice(0, TOP_K);
      for (const [w, j] of keep) {
        const p = paths[Math.min(LEVELS - 1, Math.floor(w * LEVELS))];
        p.moveTo(x0, yi); p.lineTo(x1, j * ROW + ROW / 2);
      }
    }
    paths.forEach((p, lvl) => {
      ctx.strokeStyle = `rgba(${rgb[0]}, ${rgb[1]}, ${rgb[2]}, ${Math.min(1, (lvl + 0.5) / LEVELS)})`;
      ctx.stroke(p);
    });
  }
}

// Long inputs before the full layer is here: the server's k strongest lines per (head, query), same levels.
// Rows i0 .. i1 - 1 only (default: all), so a long input can be painted in chunks of query rows.
function drawTopLines(ctx, lines, dims, heads, x0, x1, i0 = 0, i1 = dims.nq) {
  const { nq } = dims, { index, weight, k } = lines, kk = Math.min(k, TOP_K);
  ctx.lineWidth = 1;
  for (const h of heads) {
    const rgb = hexToRGB(headColor(h)), paths = Array.from({ length: LEVELS }, () => new Path2D());
    for (let i = i0; i < i1; i++) {
      const yi = i * ROW + ROW / 2, row = (h * nq + i) * k;
      for (let t = 0; t < kk; t++) {
        const w = weight[row + t] / 255;
        if (w < MIN_WEIGHT) break; // strongest first: the rest are weaker still
        const p = paths[Math.min(LEVELS - 1, Math.floor(w * LEVELS))];
        p.moveTo(x0, yi); p.lineTo(x1, index[row + t] * ROW + ROW / 2);
      }
    }
    paths.forEach((p, lvl) => {
      ctx.strokeStyle = `rgba(${rgb[0]}, ${rgb[1]}, ${rgb[2]}, ${Math.min(1, (lvl + 0.5) / LEVELS)})`;
      ctx.stroke(p);
    });
  }
}

// Mean weight over the selected heads of row i (focus q) or column j (focus k).
function focusWeights(layer, dims, heads, focus) {
  const { nq, nk } = dims, n = focus.side === "q" ? nk : nq, out = new Float32Array(n);
  for (const h of heads) {
    for (let t = 0; t < n; t++) {
      const i = focus.side === "q" ? focus.index : t, j = focus.side === "q" ? t : focus.index;
      out[t] += (layer.values[(h * nq + i) * nk + j] * layer.factor) / heads.length;
    }
  }
  return out;
}

// `data` is the full layer ({values, factor}) or null for a long input, whose first draw uses `lines` (top-k per
// query) and whose hover, focus and data exports fetch the full layer once through `loadFull()`.
export function renderHeadView(pane, { analysis, kind, layer, data, lines, loadFull, selected, onSelect, exportSlot, title }) {
  let full = data, pending = null; // one fetch of the full layer, however many hovers ask for it
  const fullLayer = async () => {
    if (!full) { pending = pending || loadFull(); try { full = await pending; } finally { pending = full ? pending : null; } }
    return full;
  };
  const b = analysis.block(kind), qAxis = analysis.queryAxis(kind), kAxis = analysis.keyAxis(kind);
  const dims = { nq: b.n_query, nk: b.n_key };
  const heads = () => [...selected].filter((h) => h < b.heads).sort((x, y) => x - y);
  pane.replaceChildren();

  const chips = el("div", { class: "tx-chips", role: "group", "aria-label": "Heads shown" });
  for (let h = 0; h < b.heads; h++) {
    const on = selected.has(h);
    chips.append(el("button", {
      type: "button", class: "tx-chip", "aria-pressed": String(on), title: `Head ${fromApi(h)} (double-click: only this head)`,
      style: `--chip: ${headColor(h)}`, dataset: { head: h },
      onclick: () => { if (selected.has(h)) selected.delete(h); else selected.add(h); onSelect(); },
      ondblclick: () => { selected.clear(); selected.add(h); onSelect(); },
    }, String(fromApi(h))));
  }
  chips.append(
    el("button", { type: "button", class: "tx-chip-all", onclick: () => { for (let h = 0; h < b.heads; h++) selected.add(h); onSelect(); } }, "all"),
    el("button", { type: "button", class: "tx-chip-all", onclick: () => { selected.clear(); onSelect(); } }, "none"),
  );

  const rows = Math.max(dims.nq, dims.nk), width = 240;
  const canvas = el("canvas", { class: "tx-hv-canvas", "aria-label": `${title}: attention lines` });
  const dpr = window.devicePixelRatio || 1;
  canvas.width = width * dpr; canvas.height = rows * ROW * dpr;
  canvas.style.width = `${width}px`; canvas.style.height = `${rows * ROW}px`;
  const ctx = canvas.getContext("2d");
  const tok = (label, special, side, index) => el("div", {
    class: `tx-tok${special ? " special" : ""}`, dataset: { side, index }, title: label,
  }, label);
  const left = el("div", { class: "tx-col tx-col-q" }, qAxis.labels.map((l, i) => tok(l, qAxis.special[i], "q", i)));
  const right = el("div", { class: "tx-col tx-col-k" }, kAxis.labels.map((l, j) => tok(l, kAxis.special[j], "k", j)));
  const body = el("div", { class: "tx-hv-body" }, left, canvas, right);
  const legend = el("p", { class: "small muted tx-hv-legend" },
    `${title}. Left: queries (${b.query_side}); right: keys (${b.key_side}). Hover a token to see only its lines; line opacity = attention weight` +
    (analysis.resp.inline ? "" : " (sent as bytes, 1/255 steps)") +
    (!full || dims.nq * dims.nk > LONG ? `; long input: each query's ${TOP_K} strongest lines per head until you hover.` : "."));

  let hovered = null, drawSeq = 0;
  // Long input, no hover: the first CHUNK query rows (more than a screenful) are painted at once, the rest
  // in CHUNK-row steps, one per frame (after the previous one is painted), so the first frame rasterises
  // one chunk of lines, not all of them.
  // canvas.dataset.lines = "done" once all rows are painted.
  function drawChunked(seq) {
    const CHUNK = 48, hs = heads();
    canvas.dataset.lines = "partial";
    const step = (i0) => {
      if (seq !== drawSeq) return; // a newer draw took over
      if (i0 >= dims.nq) { canvas.dataset.lines = "done"; return; }
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      drawTopLines(ctx, lines, dims, hs, 4, width - 4, i0, Math.min(dims.nq, i0 + CHUNK));
      nextFrame(() => step(i0 + CHUNK));
    };
    const nextFrame = (fn) => requestAnimationFrame(() => setTimeout(fn, 0));
    // The first chunk's lines (to keys anywhere, e.g. a final [SEP] 10,000 px down) in two halves: the part
    // inside the first 720 px (more than the 640 px scroll box) in the first frame, the rest in the next.
    const firstChunk = (y0, y1) => {
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.save(); ctx.beginPath(); ctx.rect(0, y0, width, y1 - y0); ctx.clip();
      drawTopLines(ctx, lines, dims, hs, 4, width - 4, 0, Math.min(dims.nq, CHUNK));
      ctx.restore();
    };
    firstChunk(0, FIRST_PX);
    nextFrame(() => { if (seq === drawSeq) firstChunk(FIRST_PX, rows * ROW); step(CHUNK); });
  }
  function draw(focus) {
    const seq = ++drawSeq;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, rows * ROW);
    canvas.dataset.lines = "done";
    if (!full && focus) { // first hover of a long input: fetch the whole layer, then draw if still hovered
      const want = focus;
      fullLayer().then(() => { if (hovered === want) draw(want); }).catch(() => {});
      focus = null;
    }
    if (full) drawLines(ctx, full, dims, heads(), focus, 4, width - 4);
    else drawChunked(seq);
    for (const node of left.children) node.style.background = "";
    for (const node of right.children) node.style.background = "";
    if (!focus || !heads().length) return;
    const w = focusWeights(full, dims, heads(), focus);
    const other = focus.side === "q" ? right : left, self = focus.side === "q" ? left : right;
    w.forEach((v, t) => { other.children[t].style.background = `rgba(36, 86, 199, ${Math.min(0.85, v * 1.6)})`; });
    self.children[focus.index].style.background = "#ffe9a8";
  }
  body.addEventListener("mouseover", (e) => {
    const t = e.target.closest(".tx-tok");
    if (t) { hovered = { side: t.dataset.side, index: Number(t.dataset.index) }; draw(hovered); }
  });
  body.addEventListener("mouseleave", () => { hovered = null; draw(null); });
  draw(null);
  pane.append(chips, legend, body);

  // Export: a picture with the token labels, and the numbers of the heads shown.
  const name = `attention_${kind}_layer${fromApi(layer)}_heads`;
  function picture() {
    const lw = 170, out = document.createElement("canvas");
    out.width = (lw * 2 + width) * 2; out.height = (rows * ROW + 30) * 2;
    const c = out.getContext("2d");
    c.scale(2, 2); c.fillStyle = "#fff"; c.fillRect(0, 0, lw * 2 + width, rows * ROW + 30);
    c.fillStyle = "#1d2430"; c.font = "12px system-ui, sans-serif"; c.fillText(`${title} · heads ${heads().map(fromApi).join(", ")}`, 6, 16);
    c.translate(0, 26); c.textBaseline = "middle";
    c.textAlign = "right"; qAxis.labels.forEach((l, i) => c.fillText(l, lw - 6, i * ROW + ROW / 2));
    c.textAlign = "left"; kAxis.labels.forEach((l, j) => c.fillText(l, lw + width + 6, j * ROW + ROW / 2));
    c.translate(lw, 0);
    if (full) drawLines(c, full, dims, heads(), null, 4, width - 4); else drawTopLines(c, lines, dims, heads(), 4, width - 4);
    return out;
  }
  const matrixOf = (d, h) => Array.from({ length: dims.nq }, (_, i) => Array.from({ length: dims.nk }, (_, j) => d.values[(h * dims.nq + i) * dims.nk + j] * d.factor));
  exportSlot.replaceChildren(exportButtons({
    png: () => { const a = el("a", { href: canvasToPNG(picture()), download: `${name}.png` }); document.body.append(a); a.click(); a.remove(); },
    svg: () => {
      const p = picture(), url = canvasToPNG(p);
      downloadText(`${name}.svg`, `<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="${p.width / 2}" height="${p.height / 2}"><image width="${p.width / 2}" height="${p.height / 2}" xlink:href="${url}"/></svg>`, "image/svg+xml");
    },
    csv: async () => {
      const data = await fullLayer(), rowsOut = [];
      for (const h of heads()) for (let i = 0; i < dims.nq; i++) for (let j = 0; j < dims.nk; j++) {
        rowsOut.push([kind, fromApi(layer), fromApi(h), i + 1, qAxis.labels[i], j + 1, kAxis.labels[j], data.values[(h * dims.nq + i) * dims.nk + j] * data.factor]);
      }
      downloadCSV(`${name}.csv`, ["kind", "layer", "head", "query_index", "query", "key_index", "key", "weight"], rowsOut);
    },
    json: async () => {
      const data = await fullLayer();
      downloadJSON(`${name}.json`, {
        meta: { model: analysis.resp.model.id, kind, layer: fromApi(layer), numbering: NUMBERING, options: analysis.options, quantised: !analysis.resp.inline },
        queries: qAxis.labels, keys: kAxis.labels, heads: heads().map(fromApi), weights: heads().map((h) => matrixOf(data, h)),
      });
    },
  }, "Export head view"));
}
