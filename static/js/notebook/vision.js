// Notebook output of show_vision() (app/notebook.py): the vision page's model view grid (vision/grid.js) and
// attention overlay (vision/overlay.js) on data carried inside the output, with no server: [CLS] maps, patch
// probing (hover a patch or move the cursor with the arrow keys; click or Enter pins, Esc returns), rollout with its options, and the mean attention
// distance per head. Layers, heads and patches count from 1 on screen, as on the /vision page.
import { drawColorbar, fmtValue } from "../lib/colormap.js";
import { el } from "../lib/dom.js";
import { fromApi, patchName as patchNameIn } from "../lib/numbering.js";
import { decodeTyped } from "../lib/typed.js";
import { headMeans } from "../vision/data.js";
import { entropyCaption } from "../vision/entropy.js";
import { renderModelGrid } from "../vision/grid.js";
import { renderOverlay } from "../vision/overlay.js";

function loadImage(src) {
  const img = new Image();
  img.src = src;
  return img.decode().then(() => img);
}

// patchRow(layer, head, query): one query patch's row over the patches (dequantised), for one head or the mean of
// heads (head null); null when the layer's patch rows were left out of the output (max_mb).
function probeRows(D, probeIndex, H, P) {
  const probe = decodeTyped(D.probe).data, probeScale = decodeTyped(D.probe_scale).data; // (Lp, H, P, P) u8, (Lp, H, P)
  return (l, head, q) => {
    const i = probeIndex.get(l);
    if (i === undefined) return null;
    const out = new Float32Array(P);
    const heads = head === null ? [...Array(H).keys()] : [head];
    for (const h of heads) {
      const base = ((i * H + h) * P + q) * P, s = probeScale[(i * H + h) * P + q] / heads.length;
      for (let p = 0; p < P; p++) out[p] += probe[base + p] * s;
    }
    return out;
  };
}

// Mean attention distance per layer (rows) and head (columns), ViT paper Fig. 7 right.
function distanceTable(dist, L, H) {
  return el("table", { class: "nb-dist" },
    el("caption", { class: "small muted" }, "Mean attention distance (pixels of the model input) per layer and head: the attention-weighted distance from each query patch to the patches it attends to (ViT paper, Fig. 7 right; App. D.7)."),
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "layer"), [...Array(H).keys()].map((h) => el("th", { scope: "col" }, `H${fromApi(h)}`)))),
    el("tbody", {}, [...Array(L).keys()].map((l) => el("tr", {}, el("th", { scope: "row" }, `L${fromApi(l)}`),
      [...Array(H).keys()].map((h) => el("td", {}, dist[l * H + h].toFixed(1)))))));
}

// The lines above the views: model and grid, the predictions, and which layers can be probed.
function summary(D, clsWhat) {
  const { num_layers: L, num_heads: H } = D.model, g = D.grid;
  return [
    el("p", {}, el("b", {}, D.model.label), ` \u00b7 ${L} layers \u00d7 ${H} heads \u00b7 ${g.rows}\u00d7${g.cols} patches of ${g.patch_size} px at ${g.resolution} px`),
    D.predictions ? el("p", { class: "small" }, "Top-5 predictions: ",
      D.predictions.map(({ label, probability }, i) => `${i ? "; " : ""}${label} ${(100 * probability).toFixed(1)}%`).join("")) : null,
    D.probe_layers.length < L ? el("p", { class: "nb-note" },
      `Patch probing is included for layers ${D.probe_layers.map(fromApi).join(", ")} (max_mb); other layers show their ${clsWhat} map.`) : null,
  ].filter(Boolean);
}

// Keyboard probing on the photo: the arrow keys move a query cursor over the patch grid, Enter pins it, Esc returns
// to the [CLS] map. Handled on this output only (not on document), and stopped there, so the notebook's own
// shortcuts stay untouched.
function wireKeys(root, overlayHost, S, g, probing, update) {
  overlayHost.addEventListener("keydown", (e) => {
    if (S.view === "rollout" || !probing(S.layer) || e.altKey || e.ctrlKey || e.metaKey) return;
    const cur = S.hover ?? S.query ?? Math.floor(g.rows / 2) * g.cols + Math.floor(g.cols / 2);
    const r = Math.floor(cur / g.cols), c = cur % g.cols;
    const to = { ArrowLeft: [r, c - 1], ArrowRight: [r, c + 1], ArrowUp: [r - 1, c], ArrowDown: [r + 1, c] }[e.key];
    if (to) {
      S.hover = Math.max(0, Math.min(g.rows - 1, to[0])) * g.cols + Math.max(0, Math.min(g.cols - 1, to[1]));
    } else if (e.key === "Enter" || e.key === " ") {
      S.query = S.query === cur ? null : cur; S.hover = cur;
    } else return;
    e.preventDefault(); e.stopPropagation();
    update();
  });
  root.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && (S.query !== null || S.hover !== null)) { e.stopPropagation(); S.query = null; S.hover = null; update(); }
  });
}

// The rollout's discard-ratio select; changing it or the head-fusion select switches the view to rollout.
function rolloutDiscard(D, S, fusion, update) {
  const discard = el("select", { "aria-label": "Rollout discard ratio" }, D.discards.map((d) => el("option", { value: d.toFixed(2) }, `discard ${Math.round(d * 100)}%`)));
  const onRollout = () => { S.fusion = fusion.value; S.discard = Number(discard.value); S.view = "rollout"; update(); };
  fusion.addEventListener("change", onRollout); discard.addEventListener("change", onRollout);
  return discard;
}

// What the rollout map shows, for the fusion and discard ratio of `S` over `L` layers.
function rolloutCaption(D, S, L) {
  return `Rollout (Abnar & Zuidema 2020; ViT paper Fig. 6, App. D.8): heads fused by ${S.fusion}, the weakest ${Math.round(S.discard * 100)}% of the `
    + "patch-to-patch entries discarded (never a prefix row or column: [CLS] and registers included), "
    + `identity added for the residual connection, rows renormalised, layers multiplied from 1 up to ${L}. `
    + (D.cls_query === "cls"
      ? "Shown: row [CLS] of the product, rollout's estimate of how much each patch feeds the final [CLS] token "
        + "(it mixes attention linearly; the values, the output projections and the MLPs are ignored, so it is not a measured contribution)."
      : "This model has no [CLS] token: shown is the mean over the patch rows of the product.");
}

export async function mount(root, D) {
  const { num_layers: L, num_heads: H } = D.model, g = D.grid, P = g.rows * g.cols;
  const cls = decodeTyped(D.cls_attention).data; // (L, H, P)
  const means = headMeans(cls, L, H, P); // (L, P): mean over heads
  const probeIndex = new Map(D.probe_layers.map((l, i) => [l, i]));
  const patchRow = probeRows(D, probeIndex, H, P);
  const rollouts = Object.fromEntries(Object.entries(D.rollouts).map(([k, v]) => [k, decodeTyped(v).data]));
  const dist = decodeTyped(D.distance).data; // (L, H) pixels
  const entropy = decodeTyped(D.entropy).data; // (L, H, P) nats
  const image = await loadImage(D.image_url);
  const sel = D.selected;
  const S = { layer: sel.layer, head: sel.head, view: sel.view, query: sel.query, hover: null,
    fusion: D.fusions[0], discard: D.discards[0], colormap: "viridis", clip: true, fade: true };

  const patchName = (idx) => patchNameIn(idx, g.cols);
  const clsWhat = D.cls_query === "cls" ? "[CLS] token" : "mean patch query";

  // ---- layout ----
  const seg = el("div", { class: "nb-seg", role: "group", "aria-label": "View" });
  const viewBtn = (v, label) => el("button", { type: "button", dataset: { view: v }, onclick: () => { S.view = v; S.hover = null; update(); } }, label);
  seg.append(viewBtn("head", "Head"), viewBtn("mean", "Mean of heads"), viewBtn("rollout", "Rollout"), viewBtn("entropy", "Entropy"));
  const fusion = el("select", { "aria-label": "Rollout head fusion" }, D.fusions.map((f) => el("option", { value: f }, `fuse heads: ${f}`)));
  const discard = rolloutDiscard(D, S, fusion, () => update());
  const back = el("button", { type: "button", class: "hidden", onclick: () => { S.query = null; S.hover = null; update(); } }, D.cls_query === "cls" ? "\u2190 Back to CLS (Esc)" : "\u2190 Back to mean map (Esc)");
  const queryText = el("span", { class: "small" });
  const gridHost = el("div", { class: "vz-grid" });
  const overlayHost = el("div", { class: "vz-overlay", tabindex: "0", role: "group", "aria-label": "Attention over the photo: the arrow keys move the query patch, Enter pins it, Esc returns" });
  const cb = el("canvas", { width: 320, height: 10, "aria-hidden": "true" }), cbMin = el("span", { class: "mono small" }), cbMax = el("span", { class: "mono small" });
  const title = el("h3", {}), caption = el("p", { class: "nb-caption" });
  root.append(
    ...summary(D, clsWhat),
    el("div", { class: "nb-cols" },
      el("section", { class: "nb-panel", style: "flex: 1 1 320px; max-width: 520px" },
        el("h3", {}, "Model view"), gridHost,
        el("p", { class: "nb-caption" }, `Rows: layers (L1 nearest the pixels). Columns: heads, then their mean. Each thumbnail is one ${clsWhat} map, scaled to its own min\u2013max. Click, or focus the grid and use the arrow keys.`)),
      el("section", { class: "nb-panel", style: "flex: 1 1 460px" },
        title, el("div", { class: "nb-bar" }, seg, fusion, discard),
        el("div", { class: "nb-bar" }, queryText, back),
        overlayHost,
        el("div", { class: "nb-bar" }, cbMin, cb, cbMax),
        caption)),
    el("details", { class: "nb-panel", style: "margin-top: 10px" }, el("summary", {}, "Mean attention distance per head"), distanceTable(dist, L, H)),
  );

  function renderGrid() {
    renderModelGrid(gridHost, {
      cls, means, L, H, rows: g.rows, cols: g.cols, colormap: S.colormap, clip: S.clip, active: S.view !== "rollout",
      selected: { layer: S.layer, col: S.view === "mean" ? H : S.head }, maxHeight: 560,
      onSelect: (layer, col) => {
        S.layer = layer;
        if (col === H) S.view = "mean"; else { S.head = col; S.view = S.view === "entropy" ? "entropy" : "head"; }
        update();
      },
    });
  }

  function current() {
    const l = S.layer, head = S.view === "mean" ? null : S.head;
    const where = `Layer ${fromApi(l)} \u00b7 ${head === null ? `mean of ${H} heads` : `head ${fromApi(head)}`}`;
    if (S.view === "rollout") {
      return { values: rollouts[`${S.fusion}|${S.discard.toFixed(2)}`], meta: { view: "rollout", layer: l, head: head ?? "mean" },
        title: `Attention rollout \u00b7 layers 1\u2013${L}`, caption: rolloutCaption(D, S, L) };
    }
    if (S.view === "entropy") {
      const values = entropy.subarray((l * H + S.head) * P, (l * H + S.head + 1) * P);
      return { values, meta: { view: "entropy", layer: l, head: S.head }, query: null, title: `Attention entropy \u00b7 layer ${fromApi(l)} \u00b7 head ${fromApi(S.head)}`,
        caption: entropyCaption(D.model.label, l, S.head, P, D.max_entropy) };
    }
    const q = S.query ?? S.hover;
    const row = q === null ? null : patchRow(l, head, q);
    if (row) {
      return { values: row, meta: { view: S.view, layer: l, head: head ?? "mean" }, query: q, title: `${where} \u00b7 query ${patchName(q)}`,
        caption: `Where the outlined patch (${patchName(q)}) attends in layer ${fromApi(l)}, ${head === null ? "averaged over heads" : `head ${fromApi(head)}`}: its row of the attention matrix over the patches`
          + `${g.num_prefix_tokens ? " (its share for the prefix tokens is not drawn)" : ""}, in 1/255 steps of the row's maximum. `
          + (S.query === null ? "Click to pin this query." : "Esc or \u201cBack\u201d returns to the map you started from.") };
    }
    const values = head === null ? means.subarray(l * P, (l + 1) * P) : cls.subarray((l * H + head) * P, (l * H + head + 1) * P);
    return { values, meta: { view: S.view, layer: l, head: head ?? "mean" }, query: null, title: where,
      caption: `${where}: ` + (D.cls_query === "cls"
        ? "how strongly the [CLS] token attends to each patch (its row of the softmax attention matrix, Section 3.2.1 of \u201cAttention Is All You Need\u201d; ViT paper Sec. 3.1), without the prefix tokens, so the patch weights sum to less than 1."
        : "this model has no [CLS] token, so the map is the attention of the average patch query.")
        + (probeIndex.has(l) ? " Hover over the photo to see where any single patch looks." : "") };
  }

  function update() {
    for (const b of seg.querySelectorAll("button")) b.setAttribute("aria-pressed", String(b.dataset.view === S.view));
    fusion.value = S.fusion; discard.value = S.discard.toFixed(2);
    renderGrid();
    const m = current();
    const probing = S.view !== "rollout" && S.view !== "entropy" && probeIndex.has(S.layer);
    const { range } = renderOverlay(overlayHost, {
      image, values: m.values, rows: g.rows, cols: g.cols, patchSize: g.patch_size, resolution: g.resolution,
      colormap: S.colormap, opacity: 0.6, smooth: false, clip: S.clip, fade: S.fade, gridlines: false,
      query: m.query ?? null, hover: S.query === null ? null : S.hover, interactive: probing,
      meta: { ...m.meta, label: m.title },
      onHover: (idx) => { if (S.hover !== idx) { S.hover = idx; update(); } },
      onClick: (idx) => { S.query = S.query === idx ? null : idx; S.hover = idx; overlayHost.focus(); update(); },
    });
    title.textContent = m.title;
    caption.textContent = m.caption;
    cbMin.textContent = fmtValue(range.min);
    cbMax.textContent = `${range.clipped ? "\u2265 " : ""}${fmtValue(range.max)}`;
    drawColorbar(cb.getContext("2d"), S.colormap, 0, 0, cb.width, cb.height);
    const q = S.view === "rollout" ? null : S.query ?? S.hover;
    queryText.textContent = S.view === "rollout" ? "Query: [CLS] (rollout)"
      : q === null || !probeIndex.has(S.layer) ? `Query: ${clsWhat}${probeIndex.has(S.layer) ? " \u00b7 hover a patch to probe it" : ""}`
        : `Query: ${patchName(q)}${S.query !== null ? " (pinned)" : ""}`;
    back.classList.toggle("hidden", S.query === null || S.view === "rollout");
    root.dataset.layer = S.layer; root.dataset.head = S.view === "mean" ? "mean" : S.head;
    root.dataset.view = S.view; root.dataset.query = S.view === "rollout" || q === null ? "cls" : q;
  }

  wireKeys(root, overlayHost, S, g, (l) => probeIndex.has(l), update);
  update();
  // One Tab stop for the photo: the overlay's canvas when it takes the focus itself, else its host.
  if (overlayHost.querySelector("canvas").tabIndex >= 0) overlayHost.removeAttribute("tabindex");
}
