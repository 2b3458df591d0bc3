// /tour Q12, "Is attention an explanation?": on demand, analyse a sample photo with the default vision model and
// draw the deletion curves of relevancy, rollout and last-layer attention (/api/influence, see docs/influence.md).
import { apiGet, apiPost, showError } from "../lib/api.js";
import { $ } from "../lib/dom.js";
import { CONFIG, fmt, layout } from "../lib/plot.js";

const NAMES = { relevancy: "Relevancy (Chefer)", rollout: "Attention rollout", attention: "Last-layer attention" };
const COLORS = { relevancy: "#d1495b", rollout: "#2b59c3", attention: "#8d99ae" };

async function run(button) {
  button.disabled = true;
  const caption = $("tour-expl-caption");
  caption.textContent = "Analysing the photo, then computing relevancy and the curves…";
  try {
    const fd = new FormData();
    fd.append("sample", "astronaut");
    const a = await apiPost("/api/vision/analyze", fd);
    const r = await apiGet(`/api/influence/vision/${a.analysis_id}/curves?steps=8`);
    const x = r.fractions.map((f) => 100 * f);
    await Plotly.react($("tour-expl"), r.curves.map((c) => ({ type: "scatter", mode: "lines+markers", name: NAMES[c.ranking], x, y: c.deletion, line: { color: COLORS[c.ranking] } })),
      layout({ xaxis: { title: { text: "% of patches deleted, most relevant first" } }, yaxis: { title: { text: "cos to [CLS] feature" } }, legend: { orientation: "h", y: 1.3 }, margin: { l: 50, r: 8, t: 44, b: 40 } }), CONFIG);
    caption.textContent = `${a.model.label}, the astronaut photo, ${r.units} patches; output: ${r.output}; a deleted patch is ${r.removal.replace(/^the patch token is /, "")}. ` +
      `Area under the deletion curve (lower: the ranking found what the output depends on): ${r.curves.map((c) => `${NAMES[c.ranking]} ${fmt(c.deletion_auc, 3)}`).join(", ")}.`;
    $("tour-expl").dataset.state = "ready";
  } catch (e) {
    caption.textContent = "";
    showError($("tour-error"), e);
  } finally {
    button.disabled = false;
  }
}

const button = $("tour-expl-run");
if (button) button.addEventListener("click", () => run(button));
