// Head view (as bertviz's): queries on the left, keys on the right, one line per (query, key) weighted by
// attention, one colour per head. Lines are drawn on one canvas, batched by (head, opacity level), so a few
// hundred tokens stay fast; tokens are DOM text nodes (never parsed as HTML).
import { announce, srTable, topK } from "../lib/a11y.js";
import { more, wasOpen } from "./more.js";
import { el } from "../lib/dom.js";
import { downloadCanvas, downloadCSV, downloadJSON, drawLegend, exportButtons, legendRows } from "../lib/export.js";
import { fromApi, NUMBERING } from "../lib/numbering.js";

const PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf", "#3949ab", "#00897b"];
function headColor(h) { return h < PALETTE.length ? PALETTE[h] : `hsl(${(h * 137.5) % 360}, 60%, 45%)`; }

const ROW = 22, LEVELS = 12, MIN_WEIGHT = 0.01; // lines under 1 % are invisible anyway and are skipped
const LONG = 64 * 64, TOP_K = 6, FIRST_PX = 720; // long inputs: each query's TOP_K strongest lines per head (hover shows all)
const SR_K = 5; // the text alternative lists a focused token's SR_K strongest partners
const SR_OVERVIEW_MAX = 128; // with no token in focus, it lists each query's strongest key up to this many queries

// Text on a head's colour: black or white, whichever contrasts more (WCAG relative luminance; both >= 4.5:1).
function inkOn(rgb) {
  const lin = rgb.map((c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; });
  const lum = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2];
  return (lum + 0.05) / 0.05 >= 1.05 / (lum + 0.05) ? "#000000" : "#ffffff";
}

// The token pinned with Enter (or a click), kept across re-renders of the same analysis, kind and layer.
let PIN = null; // {key: "analysisId/kind/layer", side, index}

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

// The head chips: one toggle per head (double-click or Shift+Enter: only this head), then "all" and "none".
function headChips(nHeads, selected, onSelect) {
  const chips = el("div", { class: "tx-chips", role: "group", "aria-label": "Heads shown" });
  for (let h = 0; h < nHeads; h++) {
    const on = selected.has(h);
    const only = () => { selected.clear(); selected.add(h); onSelect(); };
    chips.append(el("button", {
      type: "button", class: "tx-chip", "aria-pressed": String(on),
      "aria-label": `Head ${fromApi(h)}`, title: `Head ${fromApi(h)} (double-click or Shift+Enter: only this head)`,
      style: `--chip: ${headColor(h)}; --chip-ink: ${inkOn(hexToRGB(headColor(h)))}`, dataset: { head: h, focus: `chip${h}` },
      onclick: () => { if (selected.has(h)) selected.delete(h); else selected.add(h); onSelect(); },
      ondblclick: only,
      onkeydown: (e) => { if (e.key === "Enter" && e.shiftKey) { e.preventDefault(); only(); } },
    }, String(fromApi(h))));
  }
  chips.append(
    el("button", { type: "button", class: "tx-chip-all", dataset: { focus: "all" }, onclick: () => { for (let h = 0; h < nHeads; h++) selected.add(h); onSelect(); } }, "all"),
    el("button", { type: "button", class: "tx-chip-all", dataset: { focus: "none" }, onclick: () => { selected.clear(); onSelect(); } }, "none"),
  );
  return chips;
}

// The canvas between two columns of token buttons (a roving tab order: one Tab stop for the whole view).
function tokenColumns(V) {
  const { b, dims, qAxis, kAxis, width, rows, dpr } = V;
  V.canvas = el("canvas", { class: "tx-hv-canvas", role: "img", "aria-label": `${V.title}: attention lines`, "aria-describedby": "tx-hv-topk-table" });
  V.canvas.width = width * dpr; V.canvas.height = rows * ROW * dpr;
  V.canvas.style.width = `${width}px`; V.canvas.style.height = `${rows * ROW}px`;
  V.ctx = V.canvas.getContext("2d");
  const tok = (label, special, side, index) => el("div", {
    class: `tx-tok${special ? " special" : ""}`, dataset: { side, index, focus: `${side}${index}` }, title: label,
    role: "button", tabindex: "-1", "aria-pressed": "false",
    "aria-label": `${side === "q" ? "query" : "key"} ${fromApi(index)} of ${side === "q" ? dims.nq : dims.nk}: ${label}`,
  }, label);
  V.left = el("div", { class: "tx-col tx-col-q", role: "group", "aria-label": `Queries (${b.query_side})` },
    qAxis.labels.map((l, i) => tok(l, qAxis.special[i], "q", i)));
  V.right = el("div", { class: "tx-col tx-col-k", role: "group", "aria-label": `Keys (${b.key_side})` },
    kAxis.labels.map((l, j) => tok(l, kAxis.special[j], "k", j)));
  V.body = el("div", { class: "tx-hv-body" }, V.left, V.canvas, V.right);
}

// Long input, no hover: the first CHUNK query rows (more than a screenful) are painted at once, the rest in
// CHUNK-row steps, one per frame (after the previous one is painted), so the first frame rasterises one chunk of
// lines, not all of them. canvas.dataset.lines = "done" once all rows are painted.
function drawChunked(V, seq) {
  const CHUNK = 48, hs = V.heads(), { ctx, dpr, dims, width, canvas } = V;
  canvas.dataset.lines = "partial";
  const nextFrame = (fn) => requestAnimationFrame(() => setTimeout(fn, 0));
  const step = (i0) => {
    if (seq !== V.drawSeq) return; // a newer draw took over
    if (i0 >= dims.nq) { canvas.dataset.lines = "done"; return; }
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    drawTopLines(ctx, V.lines, dims, hs, 4, width - 4, i0, Math.min(dims.nq, i0 + CHUNK));
    nextFrame(() => step(i0 + CHUNK));
  };
  // The first chunk's lines (to keys anywhere, e.g. a final [SEP] 10,000 px down) in two halves: the part
  // inside the first 720 px (more than the 640 px scroll box) in the first frame, the rest in the next.
  const firstChunk = (y0, y1) => {
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.save(); ctx.beginPath(); ctx.rect(0, y0, width, y1 - y0); ctx.clip();
    drawTopLines(ctx, V.lines, dims, hs, 4, width - 4, 0, Math.min(dims.nq, CHUNK));
    ctx.restore();
  };
  firstChunk(0, FIRST_PX);
  nextFrame(() => { if (seq === V.drawSeq) firstChunk(FIRST_PX, V.rows * ROW); step(CHUNK); });
}

// Lines of the token in focus (all lines when none), and the other column shaded by its weights.
function draw(V, focus) {
  const seq = ++V.drawSeq, { ctx, dpr, dims, width, left, right } = V;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, V.rows * ROW);
  V.canvas.dataset.lines = "done";
  if (!V.full && focus) { // first hover of a long input: fetch the whole layer, then draw if still hovered
    const want = focus;
    V.fullLayer().then(() => { if (V.hovered === want) { draw(V, want); describe(V, want); } }).catch(() => {});
    focus = null;
  }
  if (V.full) drawLines(ctx, V.full, dims, V.heads(), focus, 4, width - 4);
  else drawChunked(V, seq);
  for (const node of left.children) { node.style.background = ""; node.style.color = ""; }
  for (const node of right.children) { node.style.background = ""; node.style.color = ""; }
  if (!focus || !V.heads().length) return;
  const w = focusWeights(V.full, dims, V.heads(), focus);
  const other = focus.side === "q" ? right : left, self = focus.side === "q" ? left : right;
  // Blue up to 55% over white keeps the token text (in ink) at >= 6:1 contrast.
  w.forEach((v, t) => {
    if (v < 0.005) return;
    Object.assign(other.children[t].style, { background: `rgba(36, 86, 199, ${Math.min(0.55, v * 1.2)})`, color: "var(--ink)" });
  });
  self.children[focus.index].style.background = "#ffe9a8";
}

// ---- text alternative: a hidden table of the focused token's strongest partners, and a live summary ----
function describe(V, f) {
  const hs = V.heads(), { dims, title, srHost, live } = V, full = V.full;
  const label = (side, i) => `${side === "q" ? V.qAxis.labels[i] : V.kAxis.labels[i]} (${fromApi(i)})`;
  const pct = (v) => `${(v * 100).toFixed(1)}%`;
  if (!hs.length) {
    srTable(srHost, { id: "tx-hv-topk-table", caption: `${title}: no head is shown.`, headers: ["Token", "Weight"], rows: [] });
    announce(live, "No head is shown.");
    return;
  }
  const what = `head${hs.length > 1 ? "s" : ""} ${hs.map(fromApi).join(", ")}`;
  if (f && full) {
    const w = focusWeights(full, dims, hs, f), best = topK(w, SR_K), partner = f.side === "q" ? "k" : "q";
    const table = srTable(srHost, {
      id: "tx-hv-topk-table",
      caption: `${title}, mean of ${what}: the ${best.length} ${partner === "k" ? "keys" : "queries"} with the most attention `
        + `${f.side === "q" ? "from" : "to"} ${f.side === "q" ? "query" : "key"} ${label(f.side, f.index)}`,
      headers: [partner === "k" ? "Key" : "Query", "Weight"],
      rows: best.map((j) => [label(partner, j), pct(w[j])]),
    });
    table.dataset.focus = `${f.side}${f.index}`;
    const pinned = V.pinned && V.pinned.side === f.side && V.pinned.index === f.index;
    announce(live, `${f.side === "q" ? "Query" : "Key"} ${label(f.side, f.index)}${pinned ? ", pinned" : ""}: `
      + best.slice(0, 3).map((j) => `${label(partner, j)} ${pct(w[j])}`).join(", "));
    return;
  }
  if (f) { announce(live, `${f.side === "q" ? "Query" : "Key"} ${label(f.side, f.index)}: loading its weights`); return; }
  if (!full || dims.nq > SR_OVERVIEW_MAX) { // long input: no table of every query (the DOM stays small)
    srTable(srHost, { id: "tx-hv-topk-table", caption: `${title}: long input; focus a token to list its strongest partners.`, headers: ["Token", "Weight"], rows: [] });
    return;
  }
  if (!V.overview) { // no token in focus: each query's strongest key (mean of the shown heads), computed once
    V.overview = [];
    for (let i = 0; i < dims.nq; i++) {
      const w = focusWeights(full, dims, hs, { side: "q", index: i }), j = topK(w, 1)[0];
      V.overview.push([label("q", i), label("k", j), pct(w[j])]);
    }
  }
  srTable(srHost, { id: "tx-hv-topk-table", caption: `${title}, mean of ${what}: each query's most attended key`, headers: ["Query", "Key", "Weight"], rows: V.overview });
}

// ---- pointer and keyboard: a token in focus (hovered, keyboard-focused or pinned) shows only its lines ----
function wireTokens(V) {
  const { dims, body } = V;
  const nodeOf = (f) => (f.side === "q" ? V.left : V.right).children[f.index];
  const same = (x, y) => x && y && x.side === y.side && x.index === y.index;
  const show = (f) => { V.hovered = f; draw(V, f); describe(V, f); };
  const setPin = (f) => {
    if (V.pinned) nodeOf(V.pinned).setAttribute("aria-pressed", "false");
    V.pinned = f;
    PIN = f ? { key: V.pinKey, ...f } : null;
    if (f) nodeOf(f).setAttribute("aria-pressed", "true");
  };
  let rover = V.pinned || { side: "q", index: 0 }; // the one token in the Tab order
  const moveRover = (f, focus = true) => {
    nodeOf(rover).tabIndex = -1;
    rover = f;
    const node = nodeOf(f);
    node.tabIndex = 0;
    if (focus) node.focus();
  };
  const at = (t) => ({ side: t.dataset.side, index: Number(t.dataset.index) });
  body.addEventListener("mouseover", (e) => { const t = e.target.closest(".tx-tok"); if (t) show(at(t)); });
  body.addEventListener("mouseleave", () => {
    const t = body.contains(document.activeElement) ? document.activeElement.closest(".tx-tok") : null;
    show(t ? at(t) : V.pinned);
  });
  body.addEventListener("click", (e) => {
    const t = e.target.closest(".tx-tok");
    if (!t) return;
    const f = at(t);
    setPin(same(V.pinned, f) ? null : f);
    moveRover(f);
    show(f);
  });
  body.addEventListener("focusin", (e) => {
    const t = e.target.closest(".tx-tok");
    if (!t) return;
    const f = at(t);
    if (!same(rover, f)) moveRover(f, false);
    if (!same(V.hovered, f)) show(f);
  });
  body.addEventListener("focusout", (e) => { if (!body.contains(e.relatedTarget)) show(V.pinned); });
  body.addEventListener("keydown", (e) => {
    const t = e.target.closest(".tx-tok");
    if (!t || e.altKey || e.ctrlKey || e.metaKey) return;
    const f = at(t), n = f.side === "q" ? dims.nq : dims.nk;
    const to = {
      ArrowUp: { side: f.side, index: Math.max(0, f.index - 1) },
      ArrowDown: { side: f.side, index: Math.min(n - 1, f.index + 1) },
      Home: { side: f.side, index: 0 },
      End: { side: f.side, index: n - 1 },
      ArrowLeft: f.side === "k" ? { side: "q", index: Math.min(dims.nq - 1, f.index) } : null,
      ArrowRight: f.side === "q" ? { side: "k", index: Math.min(dims.nk - 1, f.index) } : null,
    }[e.key];
    if (to !== undefined) {
      e.preventDefault();
      if (to) moveRover(to); // Left on a query, Right on a key: stay
    } else if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      setPin(same(V.pinned, f) ? null : f);
      show(f);
    } else if (e.key === "Escape") {
      e.preventDefault();
      setPin(null);
      show(null);
    }
  });
  if (V.pinned) nodeOf(V.pinned).setAttribute("aria-pressed", "true");
  nodeOf(rover).tabIndex = 0;
  show(V.pinned);
}

// Export: a picture with the token labels, and the numbers of the heads shown.
function headViewExports(V) {
  const { dims, qAxis, kAxis, width, rows, analysis, kind, layer } = V;
  const name = `attention_${kind}_layer${fromApi(layer)}_heads`;
  // The picture at 2x: the title, a legend of the head colours shown, then the two token columns and the lines.
  function picture() {
    const lw = 170, W = lw * 2 + width, heads = V.heads(), font = "12px system-ui, sans-serif";
    const legend = heads.map((h) => ({ color: headColor(h), label: `head ${fromApi(h)}` }));
    const probe = document.createElement("canvas").getContext("2d"); probe.font = font;
    const top = 26 + 16 * legendRows(probe, legend, W - 12) + 6, out = document.createElement("canvas");
    out.width = W * 2; out.height = (rows * ROW + top + 4) * 2;
    const c = out.getContext("2d");
    c.scale(2, 2); c.fillStyle = "#fff"; c.fillRect(0, 0, W, rows * ROW + top + 4);
    c.fillStyle = "#1d2430"; c.font = font; c.fillText(`${V.title} · heads ${heads.map(fromApi).join(", ")}`, 6, 16);
    drawLegend(c, legend, 6, 24, W - 12);
    c.translate(0, top); c.textBaseline = "middle";
    c.textAlign = "right"; qAxis.labels.forEach((l, i) => c.fillText(l, lw - 6, i * ROW + ROW / 2));
    c.textAlign = "left"; kAxis.labels.forEach((l, j) => c.fillText(l, lw + width + 6, j * ROW + ROW / 2));
    c.translate(lw, 0);
    if (V.full) drawLines(c, V.full, dims, heads, null, 4, width - 4); else drawTopLines(c, V.lines, dims, heads, 4, width - 4);
    return out;
  }
  const matrixOf = (d, h) => Array.from({ length: dims.nq }, (_, i) => Array.from({ length: dims.nk }, (_, j) => d.values[(h * dims.nq + i) * dims.nk + j] * d.factor));
  return exportButtons({
    png: () => downloadCanvas(name, picture(), "png"),
    svg: () => downloadCanvas(name, picture(), "svg", { scale: 0.5 }),
    csv: async () => {
      const data = await V.fullLayer(), rowsOut = [];
      for (const h of V.heads()) for (let i = 0; i < dims.nq; i++) for (let j = 0; j < dims.nk; j++) {
        rowsOut.push([kind, fromApi(layer), fromApi(h), fromApi(i), qAxis.labels[i], fromApi(j), kAxis.labels[j], data.values[(h * dims.nq + i) * dims.nk + j] * data.factor]);
      }
      downloadCSV(`${name}.csv`, ["kind", "layer", "head", "query_index", "query", "key_index", "key", "weight"], rowsOut);
    },
    json: async () => {
      const data = await V.fullLayer();
      downloadJSON(`${name}.json`, {
        meta: { model: analysis.resp.model.id, kind, layer: fromApi(layer), numbering: NUMBERING, options: analysis.options, quantised: !analysis.resp.inline },
        queries: qAxis.labels, keys: kAxis.labels, heads: V.heads().map(fromApi), weights: V.heads().map((h) => matrixOf(data, h)),
      });
    },
  }, "Export head view");
}

// `data` is the full layer ({values, factor}) or null for a long input, whose first draw uses `lines` (top-k per
// query) and whose hover, focus and data exports fetch the full layer once through `loadFull()`. The view's
// state V is shared by the helpers above: the layer (V.full, once here), the token hovered and pinned.
export function renderHeadView(pane, { analysis, kind, layer, data, lines, loadFull, selected, onSelect, exportSlot, title }) {
  const b = analysis.block(kind), dims = { nq: b.n_query, nk: b.n_key };
  const pinKey = `${analysis.id}/${kind}/${layer}`;
  const V = {
    analysis, kind, layer, lines, title, b, dims, qAxis: analysis.queryAxis(kind), kAxis: analysis.keyAxis(kind),
    full: data, pending: null, hovered: null, drawSeq: 0, overview: null, pinKey,
    width: 240, rows: Math.max(dims.nq, dims.nk), dpr: window.devicePixelRatio || 1,
    heads: () => [...selected].filter((h) => h < b.heads).sort((x, y) => x - y),
    // The token pinned with Enter (or a click) survives re-renders of the same analysis and kind (a head toggled).
    pinned: PIN && PIN.key === pinKey && PIN.index < (PIN.side === "q" ? dims.nq : dims.nk) ? { side: PIN.side, index: PIN.index } : null,
    srHost: el("div", { class: "tx-hv-sr" }), live: el("p", { class: "sr-only", "aria-live": "polite" }),
  };
  V.fullLayer = async () => { // one fetch of the full layer, however many hovers ask for it
    if (!V.full) { V.pending = V.pending || loadFull(); try { V.full = await V.pending; } finally { V.pending = V.full ? V.pending : null; } }
    return V.full;
  };
  // A re-render (a head toggled from the keyboard) puts the focus back on the control that had it.
  const hadFocus = pane.contains(document.activeElement) ? document.activeElement.dataset.focus : null;
  const chips = headChips(b.heads, selected, onSelect);
  tokenColumns(V);
  const open = wasOpen(pane);
  pane.replaceChildren();
  const legend = el("p", { class: "small muted tx-hv-legend" },
    `${title}. Each line joins a query (left) to a key (right); the stronger the attention, the darker the line.`);
  const detail = more(open, el("p", {},
    `Left: ${analysis.hasSteps(kind) ? "decoder steps, named “reads → writes”" : `queries (${b.query_side})`}; right: keys (${b.key_side}). Hover a token to see only its lines, click to pin it ` +
    "(keyboard: Tab to the tokens, arrow keys move, Enter pins, Esc returns); line opacity = attention weight" +
    (analysis.resp.inline ? "" : " (sent as bytes, 1/255 steps)") +
    (!V.full || dims.nq * dims.nk > LONG ? `; long input: each query's ${TOP_K} strongest lines per head until you hover.` : ".")));
  wireTokens(V);
  pane.append(chips, legend, V.body, detail, V.srHost, V.live);
  if (hadFocus) pane.querySelector(`[data-focus="${hadFocus}"]`)?.focus();
  exportSlot.replaceChildren(headViewExports(V));
}
