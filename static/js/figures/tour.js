// /tour: small live charts beside the answers, from the same APIs as /scaling and /positional; the views of
// questions 2, 4, 6–10 and 11 are in tourlive.js. data-live on #tour-app counts the views drawn.
import { apiGet, showError } from "../lib/api.js";
import { $, el } from "../lib/dom.js";
import { CONFIG, fmt, layout } from "../lib/plot.js";
import { decodeTyped } from "../lib/typed.js";
import { readState, writeState } from "../lib/urlstate.js";
import { drawTable } from "./positional.js";
import { BLUE, drawRow, drawStat } from "./scaling.js";
import { liveDistance, liveFilters, liveKinds, liveLocal, liveNorms, livePositions, liveRollout, liveVariance } from "./tourlive.js";
import "./tour_influence.js"; // Q12, "Is attention an explanation?" (self-contained)

const app = $("tour-app");
const err = $("tour-error");
const num = (s) => el("span", { class: "num" }, s);
const state = readState({ dk: 64 });
let renders = 0;

function drawAttention(body) {
  // Q1: the weights of one query over 16 keys (scaled, as in the Transformer)
  const p = Array.from(decodeTyped(body.row.p_scaled).data), logits = Array.from(decodeTyped(body.row.logits_scaled).data);
  Plotly.react($("tour-attn"), [{ type: "bar", x: p.map((_, j) => j + 1), y: p, marker: { color: BLUE }, customdata: logits,
    hovertemplate: "key %{x}<br>weight %{y:.4f}<br>q·k/√d_k = %{customdata:.3f}<extra></extra>" }],
  layout({ xaxis: { title: { text: "key j" }, dtick: 1 }, yaxis: { title: { text: "weight" } }, margin: { l: 46, r: 8, t: 6, b: 38 } }), CONFIG);
  const sum = p.reduce((a, b) => a + b, 0);
  $("tour-attn-caption").replaceChildren(`softmax(q·kⱼ/√d_k) for one random query against ${p.length} keys at d_k = ${body.d_k}: `,
    `every weight ≥ 0, and they sum to ${sum.toFixed(6)}. The output would be Σⱼ pⱼ vⱼ.`);
}

async function loadScaling(dk) {
  const body = await apiGet(`/api/figures/scaling?d_k=${dk}&n_samples=256`);
  if (!app.dataset.attn) { drawAttention(body); liveVariance(body); app.dataset.attn = "1"; }
  drawRow($("tour-row"), body, { compact: true });
  drawStat($("tour-sat"), body, "max_prob", { title: "max-prob", uniform: body.uniform_max_prob, compact: true, medians: false });
  const u = body.at.unscaled, s = body.at.scaled;
  $("tour-sat-evidence").replaceChildren(`Red: unscaled, blue: scaled. At d_k = ${body.d_k} (${body.n_keys} keys, ${body.n_samples} rows): mean max-prob `,
    num(fmt(u.max_prob, 2)), " unscaled vs ", num(fmt(s.max_prob, 2)), " scaled; median ‖J‖_F ", num(fmt(u.jacobian_fro_median, 2)), " vs ", num(fmt(s.jacobian_fro_median, 2)), ".");
  for (const b of $("tour-dk").querySelectorAll("button")) b.setAttribute("aria-pressed", String(Number(b.dataset.dk) === body.d_k));
  app.dataset.dk = String(body.d_k);
  app.dataset.renders = String(++renders);
}

async function loadPositional() {
  const body = await apiGet("/api/figures/positional?length=64&d_model=64&k=4&dims=0,1");
  drawTable($("tour-pe"), body, { compact: true });
  const lin = body.linearity, far = lin.far.find((f) => f.pos === 1e6);
  $("tour-pe-evidence").replaceChildren("For k = 4: max over pos < 64 of |M₄PE(pos) − PE(pos+4)| = ", num(fmt(lin.max_residual)),
    "; at pos = 10⁶ it is ", num(fmt(far.residual)), ` = ${fmt(far.ratio, 2)} × ε·(pos+k): rounding of the angle (the product pos·wᵢ), not a failure of the map.`);
}

async function main() {
  for (const b of $("tour-dk").querySelectorAll("button")) {
    b.addEventListener("click", async () => {
      state.dk = Number(b.dataset.dk);
      writeState(state);
      try { await loadScaling(state.dk); showError(err, null); } catch (e) { showError(err, e); }
    });
  }
  const dk = [4, 64, 1024].includes(state.dk) ? state.dk : 64;
  const live = [liveKinds, liveLocal, liveDistance, liveRollout, livePositions, liveFilters, liveNorms];
  const results = await Promise.allSettled([loadScaling(dk), loadPositional(), ...live.map((f) => f())]);
  const failed = results.filter((r) => r.status === "rejected");
  app.dataset.live = String(results.length - failed.length);
  if (failed.length) showError(err, failed[0].reason);
}

main();
