// Home page: the two starts draw live thumbnails from the real models (one cached analysis each: a second
// visitor gets the server's cached result), and the vision start links to the photo its thumbnail shows.
import { apiGet, apiPost, pageData } from "./lib/api.js";
import { $, el } from "./lib/dom.js";
import { paintGrid, valueRange } from "./lib/colormap.js";
import { decodeTyped } from "./lib/typed.js";

const SENTENCE = "The animal didn't cross the street because it was too tired.";
const SIZE = 168; // CSS px of a thumbnail (static/css/first.css)
const pd = pageData();

function canvas() {
  const c = el("canvas", { width: SIZE * 2, height: SIZE * 2 }); // 2x for sharp thumbnails on HiDPI screens
  return [c, c.getContext("2d")];
}

// The mean over heads of one layer of a (layers, heads, n) block, starting at `layer`.
function meanOfHeads(data, heads, n, layer) {
  const out = new Float32Array(n);
  for (let h = 0; h < heads; h++) for (let i = 0; i < n; i++) out[i] += data[(layer * heads + h) * n + i] / heads;
  return out;
}

async function textThumb() {
  // special tokens hidden (rows renormalised): otherwise [CLS] and [SEP] columns take most of the picture
  const r = await apiPost("/api/text/analyze", { text: SENTENCE, model: pd.text_model, hide_special: true, layer: 1 });
  const b = r.blocks[0];
  if (!b.data) return; // a long input would not be inline; the sentence is short
  const layer = Math.min(1, b.layers - 1), n = b.n_query * b.n_key; // layer 2: mostly local, near the diagonal
  const values = meanOfHeads(decodeTyped(b.data).data, b.heads, n, layer);
  const [c, ctx] = canvas();
  const { min, max } = valueRange(values);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(paintGrid(values, b.n_query, b.n_key, { min, max }), 0, 0, c.width, c.height);
  $("thumb-text").replaceChildren(c);
  $("thumb-text-caption").textContent = `Live: ${r.model.label}, layer ${layer + 1}, mean of ${b.heads} heads, ` +
    `special tokens hidden, on “${SENTENCE}” (row i: where word i looks).`;
}

async function visionThumb() {
  const { samples } = await apiGet("/api/vision/samples");
  const sample = (samples.find((s) => s.name === "chelsea") || samples[0]).name;
  const form = new FormData();
  form.set("sample", sample);
  if (pd.vision_model) form.set("model", pd.vision_model);
  const r = await apiPost("/api/vision/analyze", form);
  const cls = decodeTyped(r.cls_attention).data, L = r.model.num_layers, H = r.model.num_heads;
  const P = r.grid.rows * r.grid.cols, layer = Math.max(0, L - 3); // a late layer, before the last two
  const values = meanOfHeads(cls, H, P, layer);
  const img = new Image();
  img.src = r.image_url;
  await img.decode();
  const [c, ctx] = canvas();
  ctx.drawImage(img, 0, 0, c.width, c.height);
  const { min, max } = valueRange(values, { clip: true });
  ctx.drawImage(paintGrid(values, r.grid.rows, r.grid.cols, { min, max, fade: true, colormap: "inferno" }), 0, 0, c.width, c.height);
  $("thumb-vision").replaceChildren(c);
  const href = `/vision?sample=${encodeURIComponent(sample)}`;
  $("start-vision").href = href; $("path-vision").href = href;
  $("thumb-vision-caption").textContent = `Live: ${r.model.label}, [CLS] attention, layer ${layer + 1}, mean of ` +
    `${H} heads, on the “${sample}” sample photo.`;
}

if (pd.seq2seq_model) $("path-cross").href = `/text?model=${encodeURIComponent(pd.seq2seq_model)}&view=matrix&kind=cross`;
// A thumbnail that cannot be drawn leaves its start as a plain link (the pages themselves report errors).
const failed = (id) => (e) => { $(id).textContent = `(No live thumbnail: ${e.message})`; };
textThumb().catch(failed("thumb-text-caption"));
visionThumb().catch(failed("thumb-vision-caption"));
