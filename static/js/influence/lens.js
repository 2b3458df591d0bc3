// /influence section "lens" (contract: docs/influence.md): the date decoder's logit lens (POST
// /api/influence/logit-lens): the winning character after each decoder sublayer, and what each head writes.
import { apiPost } from "../lib/api.js";
import { el } from "../lib/dom.js";
import { decodeTyped } from "../lib/typed.js";
import { fmt, headsOf, warm } from "./heads.js";

const STAGE = { self: "after masked self-attention", cross: "after cross-attention", ffn: "after the FFN (layer output)" };
const show = (t) => (t === " " ? "␣" : t);

function stageTable(r) {
  const T = r.decoder_tokens.length;
  const top = decodeTyped(r.top_prob).data, fin = decodeTyped(r.final_prob).data;
  const rows = r.stages.map((s, i) => el("tr", {},
    el("th", { scope: "row" }, `Layer ${s.layer + 1}, ${STAGE[s.stage]}`),
    [...Array(T).keys()].map((t) => {
      const tok = r.top_tokens[i][t], hit = tok === r.final_tokens[t], p = fin[i * T + t];
      return el("td", { style: `background:${warm(p)}`, class: hit ? "inf-hit" : "",
        title: `winner ${show(tok)} (p = ${fmt(top[i * T + t])}); the model's output ${show(r.final_tokens[t])} has p = ${fmt(p)}` },
      `${show(tok)} ${fmt(top[i * T + t], 2)}`);
    })));
  return el("table", { class: "inf-table inf-lens", "data-role": "lens-table" },
    el("caption", {}, "Winning character and its probability after each decoder sublayer"),
    el("thead", {},
      el("tr", {}, el("th", { scope: "col" }, "Stage \\ input"), r.decoder_tokens.map((t) => el("th", { scope: "col" }, show(t)))),
      el("tr", {}, el("th", { scope: "row" }, "Model's output"), r.final_tokens.map((t) => el("td", {}, show(t))))),
    el("tbody", {}, rows));
}

function headTable(r, t) {
  const rows = [];
  for (const hd of r.heads) {
    const L = hd.promote.length;
    const up = decodeTyped(hd.promote_logit), down = decodeTyped(hd.suppress_logit);
    const [, H, T, k] = up.shape;
    for (let l = 0; l < L; l++) {
      for (let h = 0; h < H; h++) {
        const at = ((l * H + h) * T + t) * k;
        const pos = hd.promote[l][h][t].map((c, j) => `${show(c)} ${fmt(up.data[at + j], 2)}`).join(", ");
        const neg = hd.suppress[l][h][t].map((c, j) => `${show(c)} ${fmt(down.data[at + j], 2)}`).join(", ");
        rows.push(el("tr", {}, el("th", { scope: "row" }, `${hd.block === "cross" ? "Cross" : "Self"} L${l + 1} H${h + 1}`), el("td", {}, pos), el("td", {}, neg)));
      }
    }
  }
  return el("table", { class: "inf-table inf-lens-heads" },
    el("caption", {}, `What each head writes at position ${t + 1} (input ${show(r.decoder_tokens[t])} → output ${show(r.final_tokens[t])}): top characters and logit contributions`),
    el("thead", {}, el("tr", {}, ["Head", "Promotes", "Suppresses"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, rows));
}

export async function mount(root, ctx) {
  const body = root.querySelector('[data-role="body"]');
  const info = ctx.family === "text" ? await headsOf(ctx) : null;
  if (!info || info.kind !== "dates") {
    body.replaceChildren(el("p", { class: "muted small" }, "The logit lens here is for the date model's decoder (the paper Transformer): pick it above and analyse a date."));
    return;
  }
  const r = await apiPost("/api/influence/logit-lens", { model: ctx.model, text: ctx.text }, { signal: ctx.signal });
  const pos = el("select", { "aria-label": "Decoder position" },
    r.decoder_tokens.map((tok, t) => el("option", { value: t }, `${t + 1}: input ${show(tok)} → output ${show(r.final_tokens[t])}`)));
  const heads = el("div");
  const draw = () => heads.replaceChildren(headTable(r, Number(pos.value)));
  pos.addEventListener("change", draw);
  body.replaceChildren(
    el("p", { class: "small muted" }, `Columns: decoder positions, each reading the input character shown and predicting the next one. Shading: the probability of the model's final output at that stage; bold: the winner is already the final output. Norm: ${r.norm}.`),
    el("div", { class: "inf-scroll", tabindex: "0", role: "region", "aria-label": "Logit lens per stage (scrolls sideways)" }, stageTable(r)),
    el("div", { class: "inf-controls" }, el("label", {}, "Heads at position ", pos)),
    heads);
  draw();
}
