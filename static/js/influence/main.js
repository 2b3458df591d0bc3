// /influence: the top form analyses a sentence or a photo with the existing analyze endpoints, builds `ctx` and
// mounts every section listed in the page data (contract: docs/influence.md). Each section is an ES module
// ./<name>.js exporting mount(root, ctx); root is its <section data-section="<name>"> element.
//
// ctx = {family: "text" | "vision", model (id), modelInfo, analysisId, analysis (the analyze response),
//        tokens (text: source tokens), target (text: decoder tokens or null), pair (text: the second sentence),
//        grid (vision: {rows, cols, patch_size, num_prefix_tokens, resolution}), imageUrl (vision),
//        signal (AbortSignal: aborted when a newer analysis replaces this one), status(text),
//        choice {step, query} + setChoice(c) + events (EventTarget, "choice"): the output being explained,
//        shared between sections, fail(err): show an error from a later (event-driven) redraw}.
import { apiGet, apiPost, isCancelled, pageData, showError } from "../lib/api.js";
import { $, fillSelect } from "../lib/dom.js";

const data = pageData();
let family = "text";
let current = null; // AbortController of the mounted analysis
const modules = new Map(); // section name -> module (imported once)

const status = (text) => { $("inf-status").textContent = text; };

function setFamily(f) {
  family = f;
  for (const b of $("inf-family").querySelectorAll("button")) b.setAttribute("aria-pressed", String(b.dataset.family === f));
  for (const n of document.querySelectorAll(".inf-text")) n.classList.toggle("hidden", f !== "text");
  for (const n of document.querySelectorAll(".inf-vision")) n.classList.toggle("hidden", f !== "vision");
  const d = data[f];
  const models = f === "text" ? d.models.filter((m) => m.kind !== "causal") : d.models;
  fillSelect($("inf-model"), models.map((m) => [m.id, m.label]), d.default_model);
  pairVisibility();
}

function pairVisibility() {
  const m = data.text.models.find((x) => x.id === $("inf-model").value);
  $("inf-form").querySelector(".inf-pair").classList.toggle("hidden", family !== "text" || !m || m.kind !== "encoder");
}

async function loadModule(name) {
  if (!modules.has(name)) modules.set(name, await import(`./${name}.js`));
  return modules.get(name);
}

async function analyze() {
  current?.abort();
  const ctl = new AbortController();
  current = ctl;
  // every section is stale from here on (a ready section would otherwise show the previous input's result)
  for (const root of document.querySelectorAll("[data-section]")) root.dataset.state = "loading";
  showError($("inf-error"), null);
  const model = $("inf-model").value;
  status("Analysing…");
  try {
    let ctx;
    if (family === "text") {
      const text = $("inf-text").value;
      const r = await apiPost("/api/text/analyze", { text, model }, { signal: ctl.signal });
      ctx = {
        family, model, modelInfo: r.model, analysisId: r.analysis_id, analysis: r, text,
        tokens: r.source.tokens, target: r.target ? r.target.tokens : null, pair: $("inf-pair").value,
      };
      $("inf-summary").textContent = `${r.model.label}: ${r.source.tokens.length} source tokens` +
        (r.generated_text !== null && r.generated_text !== undefined ? `, decoded “${r.generated_text}”.` : ".");
    } else {
      const fd = new FormData();
      fd.append("sample", $("inf-sample").value);
      fd.append("model", model);
      const r = await apiPost("/api/vision/analyze", fd, { signal: ctl.signal });
      ctx = {
        family, model, modelInfo: r.model, analysisId: r.analysis_id, analysis: r,
        grid: r.grid, imageUrl: r.image_url,
      };
      $("inf-summary").textContent = `${r.model.label} at ${r.grid.resolution} px: ${r.grid.rows} × ${r.grid.cols} patches.`;
    }
    ctx.signal = ctl.signal;
    ctx.status = status;
    // the output explained: decoder row (date model), patch (ViT). The date model writes YYYY-MM-DD, so its first
    // character is nearly always "1" or "2"; start at the month's second digit (output position 7), which the input decides.
    const rows = ctx.target ? ctx.target.length : 0;
    ctx.choice = { step: rows >= 7 ? 6 : 0, query: null };
    ctx.events = new EventTarget(); // "choice" when a section changes ctx.choice
    ctx.setChoice = (c) => { Object.assign(ctx.choice, c); ctx.events.dispatchEvent(new Event("choice")); };
    ctx.fail = (err) => { if (!isCancelled(err)) showError($("inf-error"), err); };
    await Promise.all(data.sections.map(async (name) => {
      const root = document.querySelector(`[data-section="${name}"]`);
      root.dataset.state = "loading";
      try {
        await (await loadModule(name)).mount(root, ctx);
        if (!ctl.signal.aborted) root.dataset.state = "ready";
      } catch (err) {
        if (isCancelled(err)) return;
        root.dataset.state = "error";
        showError($("inf-error"), err);
      }
    }));
    if (current === ctl) status("");
  } catch (err) {
    if (isCancelled(err)) return;
    status("");
    showError($("inf-error"), err);
  }
}

async function init() {
  for (const b of $("inf-family").querySelectorAll("button")) b.addEventListener("click", () => setFamily(b.dataset.family));
  $("inf-model").addEventListener("change", pairVisibility);
  $("inf-form").addEventListener("submit", (e) => { e.preventDefault(); analyze(); });
  setFamily("text");
  try {
    const { samples } = await apiGet("/api/vision/samples");
    fillSelect($("inf-sample"), samples.map((s) => [s.name, s.title]), samples[0]?.name ?? "");
  } catch (err) {
    showError($("inf-error"), err);
  }
  document.body.dataset.ready = "1";
  // The page opens on something worth seeing: the default sentence on the default text model, analysed at once
  // (its sections are cached per analysis, so a class opening the page shares one computation).
  if (!new URLSearchParams(location.search).has("empty")) analyze();
}

init();
