// Model view: every layer x head (and the head mean) as a small heatmap, all painted as images on ONE
// canvas from the server's max-pooled uint8 thumbnails (no plotly trace per head). Click a cell to open it.
import { el } from "../lib/dom.js";
import { more, wasOpen } from "./more.js";
import { gridStep } from "../lib/a11y.js";
import { colormapLUT, drawColorbar } from "../lib/colormap.js";
import { downloadCanvas, downloadCSV, downloadJSON, exportButtons } from "../lib/export.js";
import { fromApi, NUMBERING } from "../lib/numbering.js";

const MASKED = [236, 239, 243]; // masked (future) cells of causal blocks: visibly empty

// Block starts of the server's pooling (models/text_stats.pool_max): floor(k * n / size).
function starts(n, size) { return Array.from({ length: size }, (_, k) => Math.floor((k * n) / size)); }

function thumbImage(b, analysis, kind, layer, head, lut) {
  const [, , tq, tk] = b.thumbsT.shape, n = tq * tk;
  const off = (layer * (b.heads + 1) + head) * n;
  const img = new ImageData(tk, tq);
  const qs = starts(b.n_query, tq), ks = starts(b.n_key, tk);
  for (let r = 0; r < tq; r++) {
    const qEnd = (r + 1 < tq ? qs[r + 1] : b.n_query) - 1;
    for (let c = 0; c < tk; c++) {
      const p = (r * tk + c) * 4;
      if (b.causal && analysis.isFuture(kind, qEnd, ks[c])) {
        img.data[p] = MASKED[0]; img.data[p + 1] = MASKED[1]; img.data[p + 2] = MASKED[2]; img.data[p + 3] = 255;
        continue;
      }
      const v = b.thumbsT.data[off + r * tk + c] * 4;
      img.data[p] = lut[v]; img.data[p + 1] = lut[v + 1]; img.data[p + 2] = lut[v + 2]; img.data[p + 3] = 255;
    }
  }
  const small = document.createElement("canvas");
  small.width = tk; small.height = tq;
  small.getContext("2d").putImageData(img, 0, 0);
  return small;
}

export function renderModelView(pane, { analysis, kind, current, onOpen, exportSlot, title }) {
  const b = analysis.block(kind), cols = b.heads + 1, lut = colormapLUT("viridis");
  const avail = Math.max(360, (pane.clientWidth || 820) - 60);
  const gap = 6, labelW = 56, top = 22;
  const cell = Math.max(28, Math.min(84, Math.floor((avail - labelW) / cols) - gap));
  const width = labelW + cols * (cell + gap), height = top + b.layers * (cell + gap) + 40;
  const dpr = window.devicePixelRatio || 1;
  // A keyboard widget like /vision's model view: Tab focuses it, the arrow keys move a cursor over the
  // thumbnails (Home/End: the row's ends, PageUp/PageDown: a quarter), Enter or Space opens that head in
  // the matrix view; the label says where the cursor is (role "application" passes the keys through).
  const canvas = el("canvas", { class: "tx-mv-canvas", role: "application", "aria-roledescription": "model view", tabindex: "0" });
  const cursor = current ? { l: current.layer, h: current.head === "mean" ? b.heads : current.head } : { l: 0, h: 0 };
  const headName = (h) => (h === b.heads ? "mean of heads" : `head ${fromApi(h)}`);
  const label = () => canvas.setAttribute("aria-label", `${title}: ${b.layers} layers × ${b.heads} heads and their mean. ` +
    `Cursor: layer ${fromApi(cursor.l)}, ${headName(cursor.h)}. Arrow keys move it, Enter opens it in the matrix view.`);
  label();
  canvas.width = width * dpr; canvas.height = height * dpr;
  canvas.style.width = `${width}px`; canvas.style.height = `${height}px`;
  const ctx = canvas.getContext("2d");
  const xy = (l, h) => [labelW + h * (cell + gap), top + l * (cell + gap)];

  function paint() {
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, width, height);
    ctx.fillStyle = "#5d6675"; ctx.font = "11px system-ui, sans-serif"; ctx.textAlign = "center"; ctx.textBaseline = "middle";
    for (let h = 0; h < cols; h++) ctx.fillText(h === b.heads ? "mean" : `H${fromApi(h)}`, xy(0, h)[0] + cell / 2, top / 2);
    ctx.textAlign = "right";
    for (let l = 0; l < b.layers; l++) ctx.fillText(`layer ${fromApi(l)}`, labelW - 8, xy(l, 0)[1] + cell / 2);
    ctx.imageSmoothingEnabled = false;
    for (let l = 0; l < b.layers; l++) for (let h = 0; h < cols; h++) {
      const [x, y] = xy(l, h);
      ctx.drawImage(thumbImage(b, analysis, kind, l, h, lut), x, y, cell, cell);
    }
    if (current) {
      const [x, y] = xy(current.layer, current.head === "mean" ? b.heads : current.head);
      ctx.strokeStyle = "#d62728"; ctx.lineWidth = 2.5; ctx.strokeRect(x - 2, y - 2, cell + 4, cell + 4);
    }
    if (document.activeElement === canvas) { // the keyboard cursor, dashed, only while the canvas has focus
      const [x, y] = xy(cursor.l, cursor.h);
      ctx.strokeStyle = "#1d2430"; ctx.lineWidth = 2; ctx.setLineDash([4, 3]);
      ctx.strokeRect(x - 4, y - 4, cell + 8, cell + 8); ctx.setLineDash([]);
    }
    canvas.dataset.cursor = `${cursor.l},${cursor.h}`;
    ctx.font = "11px system-ui, sans-serif";
    drawColorbar(ctx, "viridis", labelW, height - 30, 160, 8, { min: "0", max: "each map's max" });
    if (b.causal) {
      ctx.fillStyle = `rgb(${MASKED.join(",")})`; ctx.fillRect(labelW + 250, height - 31, 10, 10);
      ctx.fillStyle = "#5d6675"; ctx.textAlign = "left"; ctx.textBaseline = "top";
      ctx.fillText("masked future positions", labelW + 264, height - 31);
    }
  }
  paint();

  function hit(e) {
    const r = canvas.getBoundingClientRect(), x = e.clientX - r.left - labelW, y = e.clientY - r.top - top;
    const h = Math.floor(x / (cell + gap)), l = Math.floor(y / (cell + gap));
    if (x < 0 || y < 0 || h >= cols || l >= b.layers || x % (cell + gap) > cell || y % (cell + gap) > cell) return null;
    return { layer: l, head: h === b.heads ? "mean" : h };
  }
  canvas.addEventListener("mousemove", (e) => {
    const t = hit(e);
    canvas.style.cursor = t ? "pointer" : "default";
    canvas.title = t ? `layer ${fromApi(t.layer)}, ${t.head === "mean" ? "mean over heads" : `head ${fromApi(t.head)}`}: click to open` : "";
  });
  canvas.addEventListener("click", (e) => { const t = hit(e); if (t) onOpen(t.layer, t.head); });
  canvas.addEventListener("focus", paint);
  canvas.addEventListener("blur", paint);
  canvas.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      onOpen(cursor.l, cursor.h === b.heads ? "mean" : cursor.h);
      return;
    }
    const next = gridStep(e.key, cursor.l * cols + cursor.h, b.layers, cols);
    if (next === null) return;
    e.preventDefault();
    cursor.l = Math.floor(next / cols); cursor.h = next % cols;
    label(); paint();
  });

  const open = wasOpen(pane);
  pane.replaceChildren(
    el("p", { class: "small muted" }, `${title}: all ${b.layers} layers × ${b.heads} heads (and their mean); click one to open it.`),
    el("div", { class: "tx-mv-scroll" }, canvas),
    more(open, el("p", {}, "Rows are queries, columns keys; " +
      `each thumbnail is max-pooled to at most ${b.thumbsT.shape[2]}×${b.thumbsT.shape[3]} cells and scaled to its own maximum. ` +
      "Keyboard: Tab to the grid, move with the arrow keys and press Enter to open a head.")),
  );
  const name = `attention_${kind}_model_view`;
  exportSlot.replaceChildren(exportButtons({
    png: () => downloadCanvas(name, canvas, "png"),
    svg: () => downloadCanvas(name, canvas, "svg"),
    csv: () => {
      const [, , tq, tk] = b.thumbsT.shape, rows = [];
      for (let l = 0; l < b.layers; l++) for (let h = 0; h < cols; h++) {
        const s = b.scaleT.data[l * cols + h], off = (l * cols + h) * tq * tk;
        for (let r = 0; r < tq; r++) for (let c = 0; c < tk; c++) rows.push([fromApi(l), h === b.heads ? "mean" : fromApi(h), r + 1, c + 1, (b.thumbsT.data[off + r * tk + c] / 255) * s]);
      }
      downloadCSV(`${name}.csv`, ["layer", "head", "row_block", "col_block", "max_weight"], rows);
    },
    json: () => downloadJSON(`${name}.json`, {
      meta: {
        model: analysis.resp.model.id, kind, options: analysis.options, pooling: "max", shape: b.thumbsT.shape, numbering: NUMBERING,
        layout: "thumbs_u8 and thumb_scale run over [layer][head, then the mean]: layer n, head m on screen is entry (n - 1, m - 1)",
      },
      thumb_scale: Array.from(b.scaleT.data), thumbs_u8: Array.from(b.thumbsT.data),
    }),
  }, "Export model view"));
}
