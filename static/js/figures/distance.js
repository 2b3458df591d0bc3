// /distance: mean attention distance versus depth (ViT paper Fig. 7 right, App. D.7), up to three runs overlaid.
// Image sets run as server jobs (POST /api/distance/jobs, polled for progress, cancellable); the vision page's
// current image comes from its cached maps (/api/distance/analysis/{id}). Units are converted by the server.
// URL: runs (model~source~renorm, comma-separated), analysis (a vision analysis id), unit, rf.
import { ApiError, apiGet, apiPost, pageData, showError } from "../lib/api.js";
import { $, el, escapeHTML } from "../lib/dom.js";
import { exportButtons, plotlyExports } from "../lib/export.js";
import { CONFIG, layout } from "../lib/plot.js";
import { decodeTyped } from "../lib/typed.js";
import { comparableUnit, unitNote } from "./distance_units.js";
import { readState, writeState } from "../lib/urlstate.js";

const PD = pageData();
const MODELS = PD.models || [];
const MAX_RUNS = 3, POLL_MS = 300;
const COLOURS = ["#2456c7", "#d1495b", "#2f8f46"], SYMBOLS = ["circle", "diamond", "square"];
const UNITS = { pixels: ["px", "pixels"], patches: ["patches", "patches"], diagonal: ["× diag.", "fraction of the image diagonal"] };

const url = readState({ runs: "", analysis: "", unit: "pixels", rf: false });
const S = {
  unit: UNITS[url.unit] ? url.unit : "pixels",
  rf: url.rf,
  unitChosen: new URLSearchParams(location.search).has("unit"), // the user's own unit (the URL or the select) is kept even for mixed runs
  unitSwitched: false,
  analysis: /^[0-9a-f]{8,64}$/.test(url.analysis) ? url.analysis : "",
  series: [], // {uid, model, source, renorm, jobId, files, result, state: "running" | "done"}
  job: null, // the job being polled: {id, cancel}
  rfData: null,
};
let uid = 0;

const specOf = (s) => `${s.model}~${s.source}~${s.renorm ? 1 : 0}`;
const modelLabel = (id) => (MODELS.find((m) => m.id === id) || { label: id }).label;

function syncURL() {
  writeState({
    runs: S.series.map(specOf).join(","), analysis: S.analysis,
    unit: S.unit !== "pixels" ? S.unit : "", rf: S.rf ? true : "",
  });
}

function status(text, spinning = false) {
  $("dist-status").replaceChildren(...(text ? [spinning ? el("span", { class: "spinner", "aria-hidden": "true" }) : "", text] : []));
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- running one series ---------------------------------------------------------------------------------------
function progress(done, total) {
  const box = $("dist-progress");
  if (done === null) { box.classList.add("hidden"); return; }
  box.classList.remove("hidden");
  $("dist-bar").max = total || 1; $("dist-bar").value = done;
  $("dist-progress-text").textContent = `${done} / ${total ?? "?"} images`;
}

async function runJob(series) {
  const form = new FormData();
  form.append("model", series.model);
  form.append("source", series.source);
  form.append("renormalize", series.renorm ? "true" : "false");
  form.append("unit", S.unit);
  for (const f of series.files || []) form.append("files", f, f.name);
  let job = await apiPost("/api/distance/jobs", form);
  series.jobId = job.job_id;
  S.job = { id: job.job_id };
  $("dist-app").dataset.job = "running";
  try {
    while (job.status === "queued" || job.status === "running") {
      progress(job.done, job.total);
      status(`${modelLabel(series.model)}: ${job.status === "queued" ? "waiting for another run" : "computing"}…`, true);
      await sleep(POLL_MS);
      job = await apiGet(`${job.job_url}?unit=${S.unit}`);
    }
  } finally {
    S.job = null; progress(null);
    $("dist-app").dataset.job = job.status;
  }
  if (job.status === "cancelled") throw new Error(`Cancelled after ${job.done} of ${job.total} images.`);
  if (job.status === "failed") throw new Error(`The run failed: ${job.error}`);
  return job.result;
}

async function fetchResult(series) {
  if (series.source === "analysis") {
    const q = new URLSearchParams({ renormalize: series.renorm, unit: S.unit });
    return apiGet(`/api/distance/analysis/${encodeURIComponent(S.analysis)}?${q}`);
  }
  if (series.jobId) {
    try { return (await apiGet(`/api/distance/jobs/${series.jobId}?unit=${S.unit}`)).result; } catch (e) {
      if (!(e instanceof ApiError && e.status === 404) || series.source === "upload") throw e;
    }
  }
  return runJob(series); // samples: a dropped job is simply run again (the server reuses finished ones)
}

async function addRun(spec) {
  if (S.series.length >= MAX_RUNS) throw new Error(`At most ${MAX_RUNS} runs fit on the chart: remove one first (×).`);
  if (spec.source !== "upload" && S.series.some((s) => specOf(s) === specOf(spec) ||
      (spec.source === "analysis" && s.source === "analysis" && s.renorm === spec.renorm))) {
    throw new Error("That run is already on the chart.");
  }
  const colour = COLOURS.find((c) => !S.series.some((x) => x.colour === c));
  const series = { uid: ++uid, ...spec, result: null, state: "running", colour, symbol: SYMBOLS[COLOURS.indexOf(colour)] };
  S.series.push(series); drawSeriesList();
  try {
    series.result = await fetchResult(series);
    series.model = series.result.model;
    series.state = "done";
  } catch (e) {
    S.series = S.series.filter((s) => s !== series);
    throw e;
  } finally {
    drawSeriesList(); syncURL();
  }
  await comparable();
  await draw();
}

async function guarded(fn) {
  $("dist-run").disabled = true;
  try { showError($("dist-error"), null); await fn(); status(""); } catch (e) { status(""); showError($("dist-error"), e); } finally {
    $("dist-run").disabled = false;
  }
}

// ---- the chart ------------------------------------------------------------------------------------------------
function seriesName(s) {
  const r = s.result;
  const source = r ? r.source_label : s.source === "samples" ? "sample photos" : s.source === "analysis" ? "this image" : "uploads";
  return `${modelLabel(s.model)} · ${source}${s.renorm ? " · renormalised" : ""}`;
}

async function loadRF() {
  const done = S.series.filter((s) => s.result);
  if (!S.rf || !done.length) { S.rfData = null; return; }
  const g = done[0].result.geometry, L = Math.max(...done.map((s) => s.result.geometry.num_layers));
  const q = new URLSearchParams({ num_layers: L, unit: S.unit, patch_size: g.patch_size, rows: g.rows, cols: g.cols });
  const body = await apiGet(`/api/distance/receptive-field?${q}`);
  S.rfData = { ...body, xs: Array.from(decodeTyped(body.x).data, (x) => x + 1), widths: Array.from(decodeTyped(body.rf).data),
    ys: Array.from(decodeTyped(body.uniform_window).data) };
}

function chartTable() {
  const header = ["model", "images", "n_images", "renormalize", "unit", "layer", "head", "mean_distance"];
  const rows = [];
  for (const s of S.series.filter((x) => x.result)) {
    const r = s.result, { data, shape: [L, H] } = decodeTyped(r.mad), mean = decodeTyped(r.per_layer_mean).data;
    for (let l = 0; l < L; l++) {
      for (let h = 0; h < H; h++) rows.push([r.model, r.source_label, r.n_images, r.renormalize, r.unit, l + 1, h + 1, data[l * H + h]]);
      rows.push([r.model, r.source_label, r.n_images, r.renormalize, r.unit, l + 1, "mean", mean[l]]);
    }
  }
  if (S.rfData) {
    S.rfData.xs.forEach((x, i) => rows.push(["ResNet-50: uniform attention over its theoretical receptive field",
      `${S.rfData.names[i]} (receptive field ${S.rfData.rf_pixels[i]} px wide)`, "", "", S.unit, x, "", S.rfData.ys[i]]));
  }
  return { header, rows, meta: { definition: "mean over query patches of sum_j A[i,j] d(i,j), then mean over images; prefix tokens removed",
    counting: "layers and heads from 1, as on the chart (the API counts from 0); for the CNN reference, layer is its relative depth on the same axis",
    cnn_reference: "mean_distance of uniform attention over a k x k px window (k = the layer's theoretical receptive field) around each query patch, clipped to the image, on this ViT's patch grid: a mean distance, comparable to the heads' values; the receptive field itself is a width" } };
}

async function draw() {
  const div = $("dist-chart"), [short, long] = UNITS[S.unit];
  try { await loadRF(); } catch (e) { showError($("dist-error"), e); S.rfData = null; }
  const traces = [];
  S.series.forEach((s) => {
    if (!s.result) return;
    const r = s.result, { data, shape: [L, H] } = decodeTyped(r.mad), mean = Array.from(decodeTyped(r.per_layer_mean).data);
    const name = escapeHTML(seriesName(s)), colour = s.colour;
    const xs = [], ys = [], heads = [];
    for (let l = 0; l < L; l++) for (let h = 0; h < H; h++) { xs.push(l + 1); ys.push(data[l * H + h]); heads.push(h + 1); }
    traces.push({ type: "scatter", mode: "markers", x: xs, y: ys, customdata: heads, name, legendgroup: `s${s.uid}`,
      marker: { color: colour, symbol: s.symbol, size: 7, opacity: 0.75, line: { width: 0.5, color: "#fff" } },
      hovertemplate: `${name}<br>layer %{x}, head %{customdata}<br>%{y:.3f} ${short}<extra></extra>` });
    traces.push({ type: "scatter", mode: "lines", x: mean.map((_, l) => l + 1), y: mean, name: `${name} (mean over heads)`,
      legendgroup: `s${s.uid}`, showlegend: false, line: { color: colour, width: 2 },
      hovertemplate: `${name}<br>layer %{x}, mean over heads<br>%{y:.3f} ${short}<extra></extra>` });
  });
  const maxL = Math.max(1, ...S.series.filter((s) => s.result).map((s) => s.result.geometry.num_layers));
  if (S.rfData) {
    const rf = S.rfData, fmt = (v) => v.toFixed(3);
    traces.push({ type: "scatter", mode: "lines", x: rf.xs, y: rf.ys,
      customdata: rf.names.map((n, i) => [n, rf.rf_pixels[i], fmt(rf.widths[i])]),
      name: "ResNet-50: uniform attention over its receptive field", line: { color: "#666", width: 1.5, dash: "dash", shape: "hv" },
      hovertemplate: `ResNet-50 %{customdata[0]}: receptive field %{customdata[1]} px wide (%{customdata[2]} ${short})` +
        `<br>uniform attention over that window: mean distance %{y:.3f} ${short}<extra></extra>` });
    // two ceilings in the same unit: uniform attention over the whole image, and the most any head can reach
    traces.push({ type: "scatter", mode: "lines", x: [0.5, maxL + 0.5], y: [rf.uniform_image, rf.uniform_image],
      name: "uniform attention over the whole image", line: { color: "#999", width: 1, dash: "dot" },
      hovertemplate: `uniform attention over the whole image: ${fmt(rf.uniform_image)} ${short}<extra></extra>` });
    traces.push({ type: "scatter", mode: "lines", x: [0.5, maxL + 0.5], y: [rf.max_distance, rf.max_distance],
      name: "largest possible (each query on its farthest patch)", line: { color: "#bbb", width: 1, dash: "dashdot" },
      hovertemplate: `largest possible mean attention distance: ${fmt(rf.max_distance)} ${short}` +
        `<br>(image diagonal ${fmt(rf.image_diagonal)} ${short})<extra></extra>` });
  }
  Plotly.react(div, traces, layout({
    margin: { l: 62, r: 14, t: 10, b: 46 },
    xaxis: { title: { text: "Network depth (layer; 1 = nearest the pixels)" }, dtick: maxL > 16 ? 2 : 1, range: [0.5, maxL + 0.5], zeroline: false },
    yaxis: { title: { text: `Mean attention distance (${long})` }, rangemode: "tozero" },
    legend: { orientation: "h", x: 0, y: 1.0, yanchor: "bottom", font: { size: 11 } },
    hovermode: "closest",
  }), CONFIG);
  $("dist-export").replaceChildren(exportButtons(plotlyExports(div, `mean-attention-distance-${S.unit}`, chartTable)));
  const done = S.series.filter((s) => s.result);
  $("dist-caption").replaceChildren(...(done.length ? done.flatMap((s) => {
    const r = s.result, g = r.geometry;
    return [el("span", { class: "vf-swatch", style: `background:${s.colour}` }), el("span", {},
      `${seriesName(s)}: ${r.n_images} image${r.n_images === 1 ? "" : "s"}, ${g.num_layers} layers × ${g.num_heads} heads, ` +
      `${g.resolution} px input, ${g.rows}×${g.cols} patches of ${g.patch_size} px, ${g.num_prefix_tokens} prefix token${g.num_prefix_tokens === 1 ? "" : "s"} removed. `), el("br")];
  }) : ["No runs yet: choose a model and images above and press “Add to chart”."]));
  div.dataset.traces = String(traces.length);
  const note = unitNote(done.map((s) => s.result), S.unit, S.unitSwitched);
  $("dist-unit-note").textContent = note;
  $("dist-unit-note").classList.toggle("hidden", !note);
}

// Runs of different resolutions or grids: switch to the fraction of the image diagonal (the server converts).
async function comparable() {
  const done = S.series.filter((s) => s.result), unit = comparableUnit(done.map((s) => s.result), S.unit, S.unitChosen);
  if (unit === S.unit) return;
  S.unit = unit; S.unitSwitched = true; $("dist-unit").value = unit; syncURL();
  for (const s of done) s.result = await fetchResult(s);
}

function drawSeriesList() {
  $("dist-series").replaceChildren(...S.series.map((s) => el("span", { class: "vf-chip", dataset: { state: s.state } },
    el("span", { class: "vf-swatch", style: `background:${s.colour || "#bbb"}` }),
    seriesName(s) + (s.state === "running" ? " (running…)" : ""),
    el("button", { type: "button", title: "Remove from the chart", "aria-label": `Remove ${seriesName(s)}`, disabled: s.state === "running",
      onclick: () => { S.series = S.series.filter((x) => x !== s); drawSeriesList(); syncURL(); draw(); } }, "×"))));
}

// ---- wiring -----------------------------------------------------------------------------------------------------
function sourceChoice() { return document.querySelector("input[name=dist-source]:checked").value; }

function formSpec() {
  const source = sourceChoice(), renorm = $("dist-renorm").checked;
  if (source === "upload") {
    const files = Array.from($("dist-files").files || []);
    if (!files.length) throw new Error("Choose one or more images, or a zip of images, to upload.");
    if (files.length > PD.max_files) throw new Error(`Too many files (${files.length}): at most ${PD.max_files}, or one zip.`);
    const mb = files.reduce((a, f) => a + f.size, 0) / 1048576;
    if (mb > PD.max_upload_mb) throw new Error(`The files total ${mb.toFixed(1)} MB; the limit is ${PD.max_upload_mb} MB per run.`);
    return { model: $("dist-model").value, source, renorm, files };
  }
  return { model: $("dist-model").value, source, renorm };
}

function parseRuns(text) {
  return text.split(",").filter(Boolean).slice(0, MAX_RUNS).map((t) => {
    const [model, source, r] = t.split("~");
    return { model, source, renorm: r === "1" };
  }).filter((s) => ["samples", "upload", "analysis"].includes(s.source) && (s.source === "analysis" || MODELS.some((m) => m.id === s.model)));
}

async function init() {
  $("dist-model").replaceChildren(...MODELS.map((m) => el("option", { value: m.id }, m.label)));
  $("dist-model").value = PD.default_model;
  $("dist-samples-label").textContent = `${PD.n_samples} sample photos`;
  $("dist-unit").value = S.unit;
  $("dist-rf").checked = S.rf;
  if (S.analysis) {
    $("dist-analysis-choice").classList.remove("hidden");
  }
  for (const radio of document.querySelectorAll("input[name=dist-source]")) {
    radio.addEventListener("change", () => { $("dist-model").disabled = sourceChoice() === "analysis"; });
  }
  $("dist-files").addEventListener("change", () => { document.querySelector("input[name=dist-source][value=upload]").checked = true; });
  $("dist-run").addEventListener("click", () => guarded(async () => addRun(formSpec())));
  $("dist-cancel").addEventListener("click", async () => {
    if (!S.job) return;
    try { await apiPost(`/api/distance/jobs/${S.job.id}/cancel`, {}); status("Cancelling…", true); } catch (e) { showError($("dist-error"), e); }
  });
  $("dist-unit").addEventListener("change", (e) => guarded(async () => {
    S.unit = e.target.value; S.unitChosen = true; S.unitSwitched = false; syncURL();
    status("Converting…", true);
    for (const s of S.series.filter((x) => x.result)) s.result = await fetchResult(s);
    await draw();
  }));
  $("dist-rf").addEventListener("change", (e) => guarded(async () => { S.rf = e.target.checked; syncURL(); await draw(); }));

  let runs = parseRuns(url.runs);
  const skipped = runs.filter((s) => s.source === "upload" || (s.source === "analysis" && !S.analysis));
  runs = runs.filter((s) => !skipped.includes(s));
  if (!url.runs) {
    runs = [{ model: PD.default_model, source: "samples", renorm: false }];
    if (S.analysis) runs.unshift({ model: "", source: "analysis", renorm: false });
  }
  await draw();
  const notes = [];
  if (skipped.length) notes.push("Uploaded image sets are not kept in links: upload them again to add them.");
  $("dist-run").disabled = true;
  for (const spec of runs) {
    try { await addRun(spec); } catch (e) { notes.push(e.message); }
  }
  $("dist-run").disabled = false;
  if (notes.length) showError($("dist-error"), new Error(notes.join(" ")));
  status("");
}

init();
