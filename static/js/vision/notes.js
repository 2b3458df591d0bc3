// The single vision view's notes around the map: why the page opened where it did (firstlook.js), the
// always-visible line on bright background patches, and the crop the model saw as a small thumbnail.
import { $, el } from "../lib/dom.js";
import { firstLookCaption, specksNote } from "./firstlook.js";

// `look`: the opening selection (firstlook.js firstLook) or null when the URL named the image. The caption
// stays while the view still shows that selection on that analysis.
export function renderNotes(S, look) {
  const A = S.A;
  $("vz-specks").textContent = specksNote(A);
  const still = look && S.sample === look.sample && S.view === look.view && (look.layer === null || S.layer === look.layer)
    && S.query === null && (!look.res || A.grid.resolution === look.res) && A.model.id === look.model;
  $("vz-firstlook").classList.toggle("hidden", !still);
  $("vz-firstlook").textContent = still ? firstLookCaption(A, look) : "";
}

// The R x R image the model saw (before the mean/std normalisation), with how it was cut from the photo.
export function renderCrop(host, A) {
  const R = A.grid.resolution, pct = A.model.crop_pct ?? 1;
  const img = el("img", { src: A.image.src, width: 96, height: 96, class: "vz-crop-img",
    alt: `The ${R} by ${R} pixel square the model saw` });
  const resize = pct < 1 ? `short side resized to ${Math.round(R / pct)} px (crop ${pct})` : `short side resized to ${R} px`;
  host.replaceChildren(img, el("p", { class: "vz-caption" },
    `${R}\u00d7${R} px, centred: ${resize}, the longer side cut evenly at both ends, then ${A.grid.rows}\u00d7${A.grid.cols} `
    + `patches of ${A.grid.patch_size} px. Whatever lies outside this square the model never saw.`));
  // the predictions card is hidden for a model without a classifier: say so here instead
  if (!A.predictions) {
    host.append(el("p", { class: "vz-caption vz-noclassifier", "data-predictions": "none" }, el("b", {}, "No classifier head: "),
      `${A.model.label} outputs image features, not class scores, so there are no predictions to show.`));
  }
}
