// The "queued / retrying" banner every page shows while an API call waits out a 503 + Retry-After
// (lib/api.js does the waiting). One banner per page (#api-queue in base.html): it counts down to the
// soonest retry, and its Cancel button cancels every waiting call. After a cancel it says so, as a
// neutral note (not an error), until the next call waits or the user dismisses it.
// data-state on the banner: "idle" | "retrying" | "cancelled".
import { apiEvents } from "./api.js";
import { el } from "./dom.js";

let installed = false;

export function installQueueStatus(host = document.getElementById("api-queue")) {
  if (installed || !host) return;
  installed = true;
  const pending = new Map(); // call id -> {until, attempt, cancel}
  let timer = 0;
  host.dataset.state = "idle";

  const cancelAll = () => { for (const p of [...pending.values()]) p.cancel(); };

  function render() {
    if (!pending.size) { clearInterval(timer); timer = 0; return; }
    const soonest = Math.min(...[...pending.values()].map((p) => p.until));
    const tries = Math.max(...[...pending.values()].map((p) => p.attempt));
    const s = Math.max(0, Math.ceil((soonest - Date.now()) / 1000));
    host.dataset.state = "retrying";
    host.dataset.until = String(Math.round(soonest)); // when the next try goes out (ms since the epoch)
    host.classList.remove("hidden");
    host.replaceChildren(
      el("span", { class: "spinner", "aria-hidden": "true" }),
      el("span", { class: "queue-text" },
        el("b", {}, "Queued: "),
        `the server is busy with other requests. ${pending.size > 1 ? `${pending.size} requests are waiting. ` : ""}`,
        "Retrying in ", el("span", { class: "queue-seconds mono" }, String(s)), ` s (attempt ${tries + 1}).`),
      el("button", { type: "button", class: "queue-cancel", onclick: cancelAll }, "Cancel"));
  }

  function showCancelled() {
    host.dataset.state = "cancelled";
    host.classList.remove("hidden");
    host.replaceChildren(
      el("span", { class: "queue-text" }, el("b", {}, "Cancelled. "),
        "The request was withdrawn before the server ran it; nothing else changed. Try again whenever you like."),
      el("button", { type: "button", class: "queue-dismiss", title: "Dismiss", "aria-label": "Dismiss",
        onclick: () => hide() }, "\u00d7"));
  }

  function hide() {
    host.dataset.state = "idle";
    host.classList.add("hidden");
    host.replaceChildren();
  }

  apiEvents.addEventListener("retry", (e) => {
    const { id, until, attempt, cancel } = e.detail;
    pending.set(id, { until, attempt, cancel });
    render();
    if (!timer) timer = setInterval(render, 250);
  });
  apiEvents.addEventListener("settled", (e) => {
    const { id, outcome } = e.detail;
    if (!pending.delete(id)) return;
    if (pending.size) { render(); return; }
    clearInterval(timer); timer = 0;
    if (outcome === "cancelled") showCancelled(); else hide();
  });
}
