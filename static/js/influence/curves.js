// Section 3: deletion and insertion curves of the three rankings (relevancy, rollout, attention) on this input,
// computed live by the server, with their areas. Follows the date model's chosen step (ctx.events "choice").
import { el } from "../lib/dom.js";
import { CONFIG, layout } from "../lib/plot.js";
import { fetchInfluence, fmt3 } from "./maps.js";

const NAMES = { relevancy: "Relevancy (Chefer)", rollout: "Attention rollout", attention: "Last-layer attention" };
const COLORS = { relevancy: "#d1495b", rollout: "#2b59c3", attention: "#8d99ae" };

export async function mount(root, ctx) {
  const body = root.querySelector('[data-role="body"]');
  const del = el("div", { class: "fig-plot", role: "figure", "aria-label": "Deletion curves: output against the share of units removed, most relevant first" });
  const ins = el("div", { class: "fig-plot", role: "figure", "aria-label": "Insertion curves: output against the share of units added back, most relevant first" });
  const caption = el("p", { class: "small muted" });
  const tableHost = el("div");
  body.replaceChildren(el("p", { class: "muted small" }, "Computing the curves…"));
  const draw = async () => {
    const params = ctx.family === "text" ? (ctx.target !== null ? { step: ctx.choice.step } : { pair: ctx.pair }) : {};
    const r = await fetchInfluence(ctx, "curves", params);
    const x = r.fractions.map((f) => 100 * f);
    const traces = (key) => r.curves.map((c) => ({ type: "scatter", mode: "lines+markers", name: NAMES[c.ranking], x, y: c[key], line: { color: COLORS[c.ranking] } }));
    const lay = (t) => layout({ xaxis: { title: `% of units ${t}` }, yaxis: { title: r.output.length > 40 ? "output" : r.output }, legend: { orientation: "h", y: 1.15 }, margin: { l: 58, r: 14, t: 30, b: 44 } });
    body.replaceChildren(el("div", { class: "inf-row" },
      el("div", { class: "inf-fig" }, el("h3", { class: "small" }, "Deletion (most relevant removed first: lower is more faithful)"), del),
      el("div", { class: "inf-fig" }, el("h3", { class: "small" }, "Insertion (most relevant added first: higher is more faithful)"), ins)), tableHost, caption);
    await Plotly.react(del, traces("deletion"), lay("removed"), CONFIG);
    await Plotly.react(ins, traces("insertion"), lay("added"), CONFIG);
    tableHost.replaceChildren(el("table", { class: "inf-table", id: "inf-auc" },
      el("caption", { class: "small" }, "Area under each curve (fraction axis 0–1)"),
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "ranking"), el("th", { scope: "col" }, "deletion AUC (lower is better)"), el("th", { scope: "col" }, "insertion AUC (higher is better)"))),
      el("tbody", {}, r.curves.map((c) => el("tr", {}, el("th", { scope: "row" }, NAMES[c.ranking]), el("td", {}, fmt3(c.deletion_auc)), el("td", {}, fmt3(c.insertion_auc)))))));
    const best = (key, sign) => {
      const top = Math.max(...r.curves.map((c) => sign * c[key]));
      const tied = r.curves.filter((c) => top - sign * c[key] < 5e-3).map((c) => `${NAMES[c.ranking]}'s`);
      return tied.length > 1 ? `${tied.join(" and ")} (tied within 0.005)` : tied[0];
    };
    caption.textContent = `${ctx.modelInfo.label}, this input only: output = ${r.output}; removing a unit means ${r.removal}. ${r.units} units, ` +
      `${r.fractions.length} points per curve, computed in ${Math.round(r.compute_ms)} ms. On this input the fastest deletion is ${best("deletion_auc", -1)} ` +
      `and the fastest insertion ${best("insertion_auc", 1)}. One input shows nothing general: Chefer et al. 2021 (Section 4) compare maps over whole datasets.`;
    body.dataset.auc = JSON.stringify(Object.fromEntries(r.curves.map((c) => [c.ranking, [c.deletion_auc, c.insertion_auc]])));
  };
  ctx.events.addEventListener("choice", () => { draw().catch((e) => ctx.fail(e)); });
  await draw();
}
