// /distance: which unit compares the runs on the chart. A mean attention distance in pixels (or patches) grows
// with the input resolution (or the patch grid), so runs of different resolutions or grids only compare as a
// fraction of the image diagonal; the page switches to it when they differ, and says so.

// "448 px, 32×32 patches of 14 px" for one run's geometry.
const geometryText = (g) => `${g.resolution} px, ${g.rows}\u00d7${g.cols} patches of ${g.patch_size} px`;

// The distinct geometries of the finished runs (results from the API), as text.
export function geometries(results) {
  return [...new Set(results.map((r) => geometryText(r.geometry)))];
}

// True when the runs differ in input resolution or patch grid (rows, columns, patch size).
export function mixedGeometry(results) {
  return geometries(results).length > 1;
}

// The unit the chart should use: "diagonal" when the runs differ and the unit was not chosen by the user.
export function comparableUnit(results, unit, chosen) {
  return mixedGeometry(results) && !chosen && unit !== "diagonal" ? "diagonal" : unit;
}

// The visible line under the chart's runs ("" when every run has the same geometry).
export function unitNote(results, unit, switched) {
  if (!mixedGeometry(results)) return "";
  const which = geometries(results).join(" vs ");
  if (unit === "diagonal") {
    return `The runs differ in input or patch grid (${which}), so distances are shown as a fraction of each image's diagonal: `
      + `in pixels or patches a larger input reads as more \u201cglobal\u201d for the same attention pattern.${switched ? " (Switched from pixels automatically.)" : ""}`;
  }
  return `The runs differ in input or patch grid (${which}): distances in ${unit} do not compare across them; `
    + "choose \u201c\u00d7 image diagonal\u201d to compare.";
}
