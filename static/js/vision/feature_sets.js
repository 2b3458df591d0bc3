// The "over a set of photos" panel of the Features tab: one PCA and one K-means fitted over the eight sample
// photos, or the user's images or zip, as a dataset job (POST /api/vision/feature-sets/jobs; progress by polling, Cancel stops it), so a colour
// or a part means the same feature direction in every photo. Each photo is drawn as its patch grid of colours.
import { apiGet, apiPost, showError } from "../lib/api.js";
import { $, el } from "../lib/dom.js";
import { decodeTyped } from "../lib/typed.js";
import { PART_COLORS } from "./feature_draw.js";

const POLL_MS = 400;

function gridCanvas(rows, cols, cell, label) {
  const c = el("canvas", { class: "fs-thumb", width: cols, height: rows, role: "img", "aria-label": label });
  const ctx = c.getContext("2d"), img = ctx.createImageData(cols, rows);
  for (let i = 0; i < rows * cols; i++) img.data.set(cell(i), i * 4);
  ctx.putImageData(img, 0, 0);
  return c;
}

function hexRGB(hex) { const n = parseInt(hex.slice(1), 16); return [(n >> 16) & 255, (n >> 8) & 255, n & 255, 255]; }

export function mountFeatureSet({ current }) {
  let job = null, token = 0;
  const status = $("fs-status"), errBox = $("vz-error");

  function draw(res) {
    const parts = PART_COLORS.map(hexRGB);
    $("fs-results").replaceChildren(...res.images.map((im) => {
      const rgb = decodeTyped(im.rgb).data, fg = decodeTyped(im.foreground).data, lab = decodeTyped(im.parts).data;
      const nFg = fg.reduce((s, v) => s + v, 0), name = im.name.replace(/_/g, " ");
      return el("figure", { class: "fs-item" },
        gridCanvas(res.rows, res.cols, (i) => (fg[i] ? [rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2], 255] : [0, 0, 0, 255]),
          `${name}: shared PCA colours, ${nFg} of ${res.rows * res.cols} patches foreground`),
        gridCanvas(res.rows, res.cols, (i) => parts[lab[i] % parts.length], `${name}: shared K-means parts, k = ${res.k}`),
        el("figcaption", { class: "small" }, name));
    }));
    $("fs-panel").dataset.state = "done";
    status.textContent = `${res.images.length} photos, ${res.model} at ${res.resolution} px: one PCA (RGB components explain `
      + `${res.explained.map((x) => `${(100 * x).toFixed(1)}%`).join(", ")} of the pooled foreground variance) and one K-means `
      + `(k = ${res.k}, seed ${res.seed}, ${res.iterations} iterations${res.converged ? "" : ", stopped at the bound"}).`;
  }

  async function poll(my) {
    while (job && my === token) {
      const r = await apiGet(job.job_url);
      if (my !== token) return;
      if (r.status === "done") { job = null; $("fs-cancel").disabled = true; draw(r.result); return; }
      if (r.status === "failed" || r.status === "cancelled") {
        job = null; $("fs-cancel").disabled = true;
        status.textContent = r.status === "cancelled" ? "Cancelled." : `Failed: ${r.error}`;
        $("fs-panel").dataset.state = r.status;
        return;
      }
      status.textContent = `Running the model on the photos: ${r.done} of ${r.total ?? "?"} done\u2026`;
      await new Promise((ok) => setTimeout(ok, POLL_MS));
    }
  }

  async function start(files) {
    const { model, res, k, seed } = current(), my = ++token;
    const fd = new FormData();
    fd.append("model", model); fd.append("k", String(k)); fd.append("seed", String(seed));
    if (res) fd.append("resolution", String(res));
    if (files) { fd.append("source", "upload"); for (const f of files) fd.append("files", f, f.name); }
    try {
      $("fs-panel").dataset.state = "running";
      status.textContent = "Starting\u2026";
      job = await apiPost("/api/vision/feature-sets/jobs", fd);
      $("fs-cancel").disabled = false;
      await poll(my);
    } catch (e) { job = null; showError(errBox, e); status.textContent = ""; $("fs-panel").dataset.state = "failed"; }
  }
  $("fs-run").addEventListener("click", () => start(null));
  $("fs-files").addEventListener("change", (e) => { $("fs-run-files").disabled = !e.target.files.length; });
  $("fs-run-files").addEventListener("click", () => { const f = $("fs-files").files; if (f.length) start([...f]); });
  $("fs-cancel").addEventListener("click", async () => {
    if (!job) return;
    const j = job; job = null; token++;
    $("fs-cancel").disabled = true;
    try { await apiPost(j.cancel_url, new FormData()); status.textContent = "Cancelled."; $("fs-panel").dataset.state = "cancelled"; }
    catch (e) { showError(errBox, e); }
  });
}
