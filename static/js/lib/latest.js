// The newest load of a figure page wins: each call aborts the one still in flight (only the newest parameters
// matter) and drops a stale answer. Meanwhile `status` shows a spinner and `app.dataset.loading` is set (the
// page tests wait on it); an error shows in `err`, a success clears it and calls `draw(body)`.
import { apiGet, showError } from "./api.js";
import { el } from "./dom.js";

export function newestLoad(app, status, err) {
  let seq = 0, inflight = null; // inflight: the AbortController of the newest load
  return async function load(url, draw) {
    const my = ++seq;
    if (inflight) inflight.abort();
    const ctl = inflight = new AbortController();
    status.replaceChildren(el("span", { class: "spinner" }), "computing…");
    app.dataset.loading = "1";
    try {
      const body = await apiGet(url, { signal: ctl.signal });
      if (my !== seq) return;
      showError(err, null);
      draw(body);
      status.textContent = "";
    } catch (e) {
      if (my !== seq) return;
      showError(err, e);
      status.textContent = "";
    } finally {
      if (my === seq) delete app.dataset.loading;
    }
  };
}
