// Head view (as bertviz's): queries on the left, keys on the right, one line per (query, key) weighted by
// attention, one colour per head. Lines are drawn on one canvas, batched by (head, opacity level), so a few
// hundred tokens stay fast; tokens are DOM text nodes (never parsed as HTML).
import { announce, srTable, topK } from "../lib/a11y.js";
import { el } from "../lib/dom.js";
import { downloadCSV, downloadJSON, exportButtons, canvasToPNG, downloadText } from "../lib/export.js";
import { fromApi, NUMBERING } from "./data.js";

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

// The token pinned with Enter (or a click) survives re-renders of the same analysis and kind (a head toggled).
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
  // A re-render (a head toggled from the keyboard) puts the focus back on the control that had it.
  const hadFocus = pane.contains(document.activeElement) ? document.activeElement.dataset.focus : null;
  pane.replaceChildren();

  const chips = el("div", { class: "tx-chips", role: "group", "aria-label": "Heads shown" });
  for (let h = 0; h < b.heads; h++) {
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
    el("button", { type: "button", class: "tx-chip-all", dataset: { focus: "all" }, onclick: () => { for (let h = 0; h < b.heads; h++) selected.add(h); onSelect(); } }, "all"),
    el("button", { type: "button", class: "tx-chip-all", dataset: { focus: "none" }, onclick: () => { selected.clear(); onSelect(); } }, "none"),
  );

  const rows = Math.max(dims.nq, dims.nk), width = 240;
  const canvas = el("canvas", { class: "tx-hv-canvas", role: "img", "aria-label": `${title}: attention lines`, "aria-describedby": "tx-hv-topk-table" });
  const dpr = window.devicePixelRatio || 1;
  canvas.width = width * dpr; canvas.height = rows * ROW * dpr;
  canvas.style.width = `${width}px`; canvas.style.height = `${rows * ROW}px`;
  const ctx = canvas.getContext("2d");
  // Tokens are buttons in a roving tab order (one Tab stop for the whole view): see the keyboard map below.
  const tok = (label, special, side, index) => el("div", {
    class: `tx-tok${special ? " special" : ""}`, dataset: { side, index, focus: `${side}${index}` }, title: label,
    role: "button", tabindex: "-1", "aria-pressed": "false",
    "aria-label": `${side === "q" ? "query" : "key"} ${index + 1} of ${side === "q" ? dims.nq : dims.nk}: ${label}`,
  }, label);
  const left = el("div", { class: "tx-col tx-col-q", role: "group", "aria-label": `Queries (${b.query_side})` },
    qAxis.labels.map((l, i) => tok(l, qAxis.special[i], "q", i)));
  const right = el("div", { class: "tx-col tx-col-k", role: "group", "aria-label": `Keys (${b.key_side})` },
    kAxis.labels.map((l, j) => tok(l, kAxis.special[j], "k", j)));
  const body = el("div", { class: "tx-hv-body" }, left, canvas, right);
  const legend = el("p", { class: "small muted tx-hv-legend" },
    `${title}. Left: queries (${b.query_side}); right: keys (${b.key_side}). Hover a token to see only its lines, click to pin it ` +
    "(keyboard: Tab to the tokens, arrow keys move, Enter pins, Esc returns); line opacity = attention weight" +
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
      fullLayer().then(() => { if (hovered === want) { draw(want); describe(want); } }).catch(() => {});
      focus = null;
    }
    if (full) drawLines(ctx, full, dims, heads(), focus, 4, width - 4);
    else drawChunked(seq);
    for (const node of left.children) { node.style.background = ""; node.style.color = ""; }
    for (const node of right.children) { node.style.background = ""; node.style.color = ""; }
    if (!focus || !heads().length) return;
    const w = focusWeights(full, dims, heads(), focus);
    const other = focus.side === "q" ? right : left, self = focus.side === "q" ? left : right;
    // Blue up to 55% over white keeps the token text (in ink) at >= 6:1 contrast.
    w.forEach((v, t) => {
      if (v < 0.005) return;
      Object.assign(other.children[t].style, { background: `rgba(36, 86, 199, ${Math.min(0.55, v * 1.2)})`, color: "var(--ink)" });
    });
    self.children[focus.index].style.background = "#ffe9a8";
  }
  // ---- pointer and keyboard: a token in focus (hovered, keyboard-focused or pinned) shows only its lines ----
  const pinKey = `${analysis.id}/${kind}/${layer}`;
  let pinned = PIN && PIN.key === pinKey && PIN.index < (PIN.side === "q" ? dims.nq : dims.nk) ? { side: PIN.side, index: PIN.index } : null;
  const col = (side) => (side === "q" ? left : right);
  const nodeOf = (f) => col(f.side).children[f.index];
  function show(f) { hovered = f; draw(f); describe(f); }
  function setPin(f) {
    if (pinned) nodeOf(pinned).setAttribute("aria-pressed", "false");
    pinned = f;
    PIN = f ? { key: pinKey, ...f } : null;
    if (f) nodeOf(f).setAttribute("aria-pressed", "true");
  }
  let rover = pinned || { side: "q", index: 0 }; // the one token in the Tab order
  function moveRover(f, focus = true) {
    nodeOf(rover).tabIndex = -1;
    rover = f;
    const node = nodeOf(f);
    node.tabIndex = 0;
    if (focus) node.focus();
  }
  const at = (t) => ({ side: t.dataset.side, index: Number(t.dataset.index) });
  body.addEventListener("mouseover", (e) => {
    const t = e.target.closest(".tx-tok");
    if (t) show(at(t));
  });
  body.addEventListener("mouseleave", () => {
    const t = body.contains(document.activeElement) ? document.activeElement.closest(".tx-tok") : null;
    show(t ? at(t) : pinned);
  });
  body.addEventListener("click", (e) => {
    const t = e.target.closest(".tx-tok");
    if (!t) return;
    const f = at(t);
    setPin(pinned && pinned.side === f.side && pinned.index === f.index ? null : f);
    moveRover(f);
    show(f);
  });
  body.addEventListener("focusin", (e) => {
    const t = e.target.closest(".tx-tok");
    if (!t) return;
    const f = at(t);
    if (rover.side !== f.side || rover.index !== f.index) moveRover(f, false);
    if (!hovered || hovered.side !== f.side || hovered.index !== f.index) show(f);
  });
  body.addEventListener("focusout", (e) => { if (!body.contains(e.relatedTarget)) show(pinned); });
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
      setPin(pinned && pinned.side === f.side && pinned.index === f.index ? null : f);
      show(f);
    } else if (e.key === "Escape") {
      e.preventDefault();
      setPin(null);
      show(null);
    }
  });

  // ---- text alternative: a hidden table of the focused token's strongest partners, and a live summary ----
  const srHost = el("div", { class: "tx-hv-sr" }), live = el("p", { class: "sr-only", "aria-live": "polite" });
  const label = (side, i) => `${side === "q" ? qAxis.labels[i] : kAxis.labels[i]} (${i + 1})`;
  const pct = (v) => `${(v * 100).toFixed(1)}%`;
  let overview = null; // no token in focus: each query's strongest key (mean of the shown heads), computed once
  function describe(f) {
    const hs = heads();
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
      announce(live, `${f.side === "q" ? "Query" : "Key"} ${label(f.side, f.index)}${pinned && pinned.side === f.side && pinned.index === f.index ? ", pinned" : ""}: `
        + best.slice(0, 3).map((j) => `${label(partner, j)} ${pct(w[j])}`).join(", "));
      return;
    }
    if (f) { announce(live, `${f.side === "q" ? "Query" : "Key"} ${label(f.side, f.index)}: loading its weights`); return; }
    if (!full || dims.nq > SR_OVERVIEW_MAX) { // long input: no table of every query (the DOM stays small)
      srTable(srHost, { id: "tx-hv-topk-table", caption: `${title}: long input; focus a token to list its strongest partners.`, headers: ["Token", "Weight"], rows: [] });
      return;
    }
    if (!overview) {
      overview = [];
      for (let i = 0; i < dims.nq; i++) {
        const w = focusWeights(full, dims, hs, { side: "q", index: i }), j = topK(w, 1)[0];
        overview.push([label("q", i), label("k", j), pct(w[j])]);
      }
    }
    srTable(srHost, { id: "tx-hv-topk-table", caption: `${title}, mean of ${what}: each query's most attended key`, headers: ["Query", "Key", "Weight"], rows: overview });
  }

  if (pinned) nodeOf(pinned).setAttribute("aria-pressed", "true");
  nodeOf(rover).tabIndex = 0;
  show(pinned);
  pane.append(chips, legend, body, srHost, live);
  if (hadFocus) pane.querySelector(`[data-focus="${hadFocus}"]`)?.focus();

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
