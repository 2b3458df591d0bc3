// /influence section "importance" (contract: docs/influence.md): the layers × heads map of one-head ablations
// over the model's bundled evaluation set. GET /api/influence/importance reads a cached map; the button starts
// the job (POST), whose progress is polled, and which can be cancelled.
import { apiGet, apiPost, isCancelled, showError } from "../lib/api.js";
import { el } from "../lib/dom.js";
import { decodeTyped } from "../lib/typed.js";
import { blockName, fmt, headsOrWhyNot, signed, warm } from "./heads.js";

const METRICS = {
  exact_match: "exact match",
  mean_logp: "mean log p(right answer)",
  mean_abs_delta_cos: "mean |change| of the pair cosine",
  mean_cos: "mean pair cosine",
  cls_cos: "mean [CLS]-feature cosine to the intact run",
  patch_cos: "mean patch-feature cosine to the intact run",
};

function mapTable(res, metric, block) {
  const shape = res.blocks.find((b) => b.block === block);
  const { data } = decodeTyped(res.values[metric][block]);
  const base = res.base[metric];
  let most = 0;
  for (const v of data) most = Math.max(most, Math.abs(v - base));
  const rows = [];
  for (let l = 0; l < shape.layers; l++) {
    const cells = [];
    for (let h = 0; h < shape.heads; h++) {
      const d = data[l * shape.heads + h] - base;
      cells.push(el("td", { style: `background:${warm(most > 0 ? Math.abs(d) / most : 0)}`, title: `layer ${l + 1}, head ${h + 1}: ${fmt(data[l * shape.heads + h], 4)}` }, signed(d, 3)));
    }
    rows.push(el("tr", {}, el("th", { scope: "row" }, `Layer ${l + 1}`), cells));
  }
  return el("table", { class: "inf-table inf-imap", "data-block": block },
    el("caption", {}, `${blockName(block, res.kind)}: ${METRICS[metric] || metric} with one head cut, minus the intact ${fmt(base, 4)}`),
    el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Layer"), [...Array(shape.heads).keys()].map((h) => el("th", { scope: "col" }, `H${h + 1}`)))),
    el("tbody", {}, rows));
}

function topList(res, metric) {
  const base = res.base[metric];
  const all = [];
  for (const b of res.blocks) {
    const { data } = decodeTyped(res.values[metric][b.block]);
    data.forEach((v, i) => all.push({ b: b.block, l: Math.floor(i / b.heads), h: i % b.heads, d: v - base }));
  }
  const moved = all.filter((x) => Math.abs(x.d) > 0).sort((x, y) => Math.abs(y.d) - Math.abs(x.d));
  if (!moved.length) return el("p", { class: "small" }, "No head changes this metric when it is cut alone.");
  return el("p", { class: "small" }, `Largest changes (${moved.length} of ${all.length} heads change it at all): `,
    moved.slice(0, 5).map((x) => `${blockName(x.b, res.kind)} L${x.l + 1} H${x.h + 1} (${signed(x.d, 3)})`).join("; "), ".");
}

function render(host, res, kind) {
  res.kind = kind;
  const pick = el("select", { "aria-label": "Metric" }, res.metrics.map((m) => el("option", { value: m }, METRICS[m] || m)));
  pick.value = res.headline;
  const maps = el("div", { class: "inf-row" });
  const top = el("div");
  const draw = () => {
    maps.replaceChildren(...res.blocks.map((b) => mapTable(res, pick.value, b.block)));
    top.replaceChildren(topList(res, pick.value));
  };
  pick.addEventListener("change", draw);
  host.replaceChildren(
    el("div", { class: "inf-controls" }, el("label", {}, "Metric ", pick),
      el("span", { class: "small muted" }, `${res.mode}-ablation of ${res.model} over ${res.eval_set} (${res.n_examples} examples).`)),
    maps, top);
  host.dataset.state = "ready";
  draw();
}

export async function mount(root, ctx) {
  const info = await headsOrWhyNot(root, ctx);
  if (!info) return;
  const body = root.querySelector('[data-role="body"]');
  const mode = el("select", { "aria-label": "Ablation mode of the map" },
    el("option", { value: "zero" }, "zero-ablation"), el("option", { value: "mean" }, "mean-ablation"));
  const go = el("button", { type: "button", class: "primary" }, `Compute the map (${info.ablations} runs over ${info.eval_set})`);
  const cancel = el("button", { type: "button", class: "hidden" }, "Cancel");
  const bar = el("progress", { max: info.ablations, value: 0, class: "hidden", "aria-label": "Importance map progress" });
  const note = el("span", { class: "small muted", role: "status" });
  const error = el("div", { class: "error", role: "alert" });
  const result = el("div", { "data-role": "importance-map" });
  let job = null;
  const q = () => `family=${encodeURIComponent(ctx.family)}&model=${encodeURIComponent(ctx.model)}&mode=${mode.value}`;

  async function lookup() {
    showError(error, null);
    result.replaceChildren();
    delete result.dataset.state;
    const r = await apiGet(`/api/influence/importance?${q()}`, { signal: ctx.signal });
    if (r.result) render(result, r.result, info.kind);
    go.classList.toggle("hidden", !!r.result);
    note.textContent = r.result ? "From the cache." : "Not computed yet for this model and mode.";
  }
  async function poll(j) {
    const token = {};
    job = { token, cancel_url: j.cancel_url };
    cancel.classList.remove("hidden");
    bar.classList.remove("hidden");
    go.disabled = true;
    try {
      while (job?.token === token && !ctx.signal.aborted) {
        bar.value = j.done;
        note.textContent = `${j.status}: ${j.done} of ${j.total} runs, ${fmt(j.elapsed_s, 1)} s`;
        if (["done", "failed", "cancelled"].includes(j.status)) break;
        await new Promise((res) => setTimeout(res, 500));
        j = await apiGet(j.job_url, { signal: ctx.signal });
      }
      if (j.status === "done") { render(result, j.result, info.kind); go.classList.add("hidden"); note.textContent = `Done in ${fmt(j.elapsed_s, 1)} s.`; }
      else if (j.status === "failed") showError(error, new Error(j.error));
    } finally {
      cancel.classList.add("hidden");
      bar.classList.add("hidden");
      go.disabled = false;
      if (job?.token === token) job = null;
    }
  }
  go.addEventListener("click", async () => {
    showError(error, null);
    try {
      const j = await apiPost("/api/influence/importance", { family: ctx.family, model: ctx.model, mode: mode.value }, { signal: ctx.signal });
      if (j.job_id === null) { render(result, j.result, info.kind); go.classList.add("hidden"); note.textContent = "From the cache."; }
      else await poll(j);
    } catch (err) {
      if (!isCancelled(err)) showError(error, err);
    }
  });
  cancel.addEventListener("click", async () => {
    if (!job) return;
    try { await apiPost(job.cancel_url, {}); } catch (err) { showError(error, err); }
  });
  mode.addEventListener("change", () => lookup().catch((err) => isCancelled(err) || showError(error, err)));
  body.replaceChildren(el("div", { class: "inf-controls" }, el("label", {}, "Mode ", mode), go, cancel, bar, note), error, result);
  await lookup();
}
