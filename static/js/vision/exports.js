// Downloads for the vision page: each chart as PNG and SVG (a figure with title and colour bar), and the
// numbers behind it as CSV and JSON. Layers, heads, patches, rows and columns count from 1 in every file, as on
// screen (lib/export.js states the convention); only the API counts from 0.
import { fmtValue } from "../lib/colormap.js";
import { $ } from "../lib/dom.js";
import { downloadCanvas, downloadCSV, downloadJSON, exportButtons } from "../lib/export.js";
import { fromApi, PATCH_NUMBERING as INDEXING, patchRowCol } from "../lib/numbering.js";
import { figureCanvas } from "./overlay.js";

function baseName(S) {
  const img = S.sample || (S.A ? S.A.hash.slice(0, 10) : "image");
  return `${img}-${S.model}-${S.res}`;
}

function mapName(S) {
  if (S.view === "rollout") return `${baseName(S)}-rollout-${S.fusion}-d${S.discard}`;
  const h = S.view === "mean" ? "mean" : `H${fromApi(S.head)}`;
  const q = (S.query ?? S.hover) !== null ? `-q${fromApi(S.query ?? S.hover)}` : "-cls";
  return `${baseName(S)}-L${fromApi(S.layer)}${h}${q}`;
}

function mapMeta(S, m) {
  const A = S.A;
  return {
    model: A.model.id, image: S.sample ? { sample: S.sample } : { image_hash: A.hash }, resolution: A.grid.resolution,
    grid: [A.grid.rows, A.grid.cols], patch_size: A.grid.patch_size, cls_query: A.clsQuery,
    indexing: INDEXING, view: m.meta.view, layer: fromApi(m.meta.layer),
    head: fromApi(m.meta.head), query: m.meta.query === null ? null : fromApi(m.meta.query),
    ...(S.view === "rollout" ? { head_fusion: S.fusion, discard_ratio: S.discard } : {}), title: m.title,
  };
}

function gridRows(A) {
  const rows = [];
  for (let l = 0; l < A.L; l++) {
    for (let h = 0; h <= A.H; h++) {
      for (let p = 0; p < A.P; p++) {
        const v = h < A.H ? A.cls[(l * A.H + h) * A.P + p] : A.means[l * A.P + p];
        const { row, col } = patchRowCol(p, A.grid.cols);
        rows.push([fromApi(l), h < A.H ? fromApi(h) : "mean", fromApi(p), row, col, v]);
      }
    }
  }
  return rows;
}

// state() is the page state S (S.A = the current analysis); shown() is what the big view draws now:
// {values, range, canvas, title, meta}. Handlers read them at click time.
export function renderExports(state, shown) {
  const overlayFigure = () => {
    const S = state(), m = shown();
    return figureCanvas({ title: m.title, source: m.canvas, colormap: S.colormap,
      labels: { min: fmtValue(m.range.min), max: `${m.range.clipped ? "\u2265 " : ""}${fmtValue(m.range.max)}` },
      note: `${S.A.model.label} \u00b7 ${S.sample || S.A.hash.slice(0, 10)} \u00b7 opacity ${S.opacity}` });
  };
  $("vz-overlay-export").replaceChildren(exportButtons({
    png: () => downloadCanvas(mapName(state()), overlayFigure(), "png"),
    svg: () => downloadCanvas(mapName(state()), overlayFigure(), "svg"),
    csv: () => {
      const S = state(), c = S.A.grid.cols;
      downloadCSV(`${mapName(S)}.csv`, ["patch", "row", "col", "value"],
        Array.from(shown().values, (v, i) => { const { row, col } = patchRowCol(i, c); return [fromApi(i), row, col, v]; }));
    },
    json: () => {
      const S = state(), m = shown();
      downloadJSON(`${mapName(S)}.json`, { meta: mapMeta(S, m), values: Array.from(m.values) });
    },
  }, "Export the selected map"));

  const gridFigure = () => {
    const S = state(), A = S.A;
    return figureCanvas({ title: `${A.clsQuery === "cls" ? "[CLS]" : "Mean patch-query"} attention, all layers \u00d7 heads`,
      source: $("vz-grid").querySelector("canvas"), colormap: S.colormap,
      labels: { min: "low", max: "high (each map to its own range)" },
      note: `${A.model.label} \u00b7 ${S.sample || A.hash.slice(0, 10)} \u00b7 ${A.grid.resolution} px` });
  };
  $("vz-grid-export").replaceChildren(exportButtons({
    png: () => downloadCanvas(`${baseName(state())}-model-view`, gridFigure(), "png"),
    svg: () => downloadCanvas(`${baseName(state())}-model-view`, gridFigure(), "svg"),
    csv: () => downloadCSV(`${baseName(state())}-model-view.csv`, ["layer", "head", "patch", "row", "col", "value"],
      gridRows(state().A)),
    json: () => {
      const S = state(), A = S.A, nested = [];
      for (let l = 0; l < A.L; l++) {
        nested.push([]);
        for (let h = 0; h < A.H; h++) nested[l].push(Array.from(A.cls.subarray((l * A.H + h) * A.P, (l * A.H + h + 1) * A.P)));
      }
      downloadJSON(`${baseName(S)}-model-view.json`, {
        meta: { model: A.model.id, resolution: A.grid.resolution, grid: [A.grid.rows, A.grid.cols], cls_query: A.clsQuery,
          shape: [A.L, A.H, A.P], indexing: INDEXING },
        cls_attention: nested,
      });
    },
  }, "Export the model view"));

  $("vz-preds-export").replaceChildren(exportButtons({
    csv: () => {
      const S = state();
      downloadCSV(`${baseName(S)}-predictions.csv`, ["rank", "label", "probability"],
        (S.A.predictions || []).map((p, i) => [i + 1, p.label, p.probability]));
    },
    json: () => {
      const S = state();
      downloadJSON(`${baseName(S)}-predictions.json`, { model: S.A.model.id, predictions: S.A.predictions });
    },
  }, "Export the predictions"));
}
