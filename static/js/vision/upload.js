// Image input: drop zone + file picker + paste (Ctrl+V), and the gallery of sample photos.
import { el } from "../lib/dom.js";

// Wire the drop zone, file input and document-level paste. onFile(file) gets every image the user gives;
// onReject(message) gets what cannot be sent (too large, clipboard without an image).
export function renderUpload({ drop, input, hint, maxUploadMB, onFile, onReject }) {
  const maxBytes = maxUploadMB * 1024 * 1024;
  if (hint) hint.textContent = `PNG, JPEG, GIF, WebP, BMP or TIFF, up to ${maxUploadMB} MB`;
  const take = (file) => {
    if (!file) return;
    if (file.size > maxBytes) {
      onReject(`"${file.name}" is ${(file.size / 1048576).toFixed(1)} MB; the limit is ${maxUploadMB} MB.`);
      return;
    }
    onFile(file);
  };
  drop.addEventListener("click", (e) => { if (e.target !== input) input.click(); });
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); }
  });
  input.addEventListener("change", () => { take(input.files[0]); input.value = ""; });

  // Dropping anywhere on the page works; the browser must not navigate away to the dropped file.
  let depth = 0;
  document.addEventListener("dragenter", (e) => { if (hasFiles(e)) { depth++; drop.classList.add("over"); } });
  document.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) drop.classList.remove("over"); });
  document.addEventListener("dragover", (e) => { if (hasFiles(e)) e.preventDefault(); });
  document.addEventListener("drop", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth = 0; drop.classList.remove("over");
    take(e.dataTransfer.files[0]);
  });

  document.addEventListener("paste", (e) => {
    const t = e.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA") && t.type !== "file") return;
    const items = [...(e.clipboardData?.items || [])];
    const item = items.find((it) => it.kind === "file" && it.type.startsWith("image/"));
    if (item) { e.preventDefault(); take(item.getAsFile()); }
    else if (items.some((it) => it.kind === "file")) onReject("The clipboard holds a file that is not an image.");
  });
}

function hasFiles(e) { return [...(e.dataTransfer?.types || [])].includes("Files"); }

// The sample photos as buttons with thumbnails. Returns setActive(name|null) to mark the current one.
export function renderSamples(host, samples, onPick) {
  host.replaceChildren();
  const buttons = new Map();
  for (const s of samples) {
    const b = el("button", { type: "button", class: "vz-sample", "data-sample": s.name, title: `Analyse "${s.title}"`,
      onclick: () => onPick(s.name) },
    el("img", { src: s.url, alt: "", loading: "lazy", width: 40, height: 40 }),
    el("span", {}, s.title));
    buttons.set(s.name, b);
    host.append(b);
  }
  return (name) => {
    for (const [n, b] of buttons) b.setAttribute("aria-pressed", String(n === name));
  };
}
