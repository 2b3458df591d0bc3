// fetch wrappers: JSON in/out, server errors surface as ApiError with the server's human message.
//
// A 503 with Retry-After means "queued, not failed" (the server's compute queue or CPU pool is full, see the
// README's resource model): the call waits Retry-After seconds (plus up to 25 % jitter, so a class of
// browsers does not come back in lockstep) and tries again by itself, for at most RETRY.maxWaitS seconds in
// all. While it waits, `apiEvents` reports it (lib/queue.js shows "queued, retrying in N s" with a Cancel
// button). Cancel, or the caller's own AbortSignal, ends the call with a Cancelled error, which showError()
// treats as "nothing to report".
export const RETRY = { maxWaitS: 120, maxAttempts: 40, jitter: 0.25 };

export class ApiError extends Error {
  constructor(message, status, { requestId = null, retryAfterS = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.requestId = requestId;
    this.retryAfterS = retryAfterS;
  }
}

// The user (or the page) cancelled the call: not an error to show.
export class Cancelled extends Error {
  constructor(message = "Cancelled.") { super(message); this.name = "Cancelled"; }
}
export const isCancelled = (err) => err instanceof Cancelled || (err && err.name === "AbortError");

// Events: "retry" {id, url, attempt, seconds, until, detail, cancel}, "settled" {id, outcome: "ok" | "error" |
// "cancelled" (by the user, through cancel()) | "aborted" (by the caller's signal, e.g. a newer request
// replaced it)}. Only calls that waited at least once emit them.
export const apiEvents = new EventTarget();
let nextId = 0;

// Retry-After is delta-seconds or an HTTP date (RFC 9110, 10.2.3); the JSON body may carry retry_after_s.
function retryAfterSeconds(res, body) {
  const raw = res.headers.get("Retry-After");
  if (raw !== null) {
    const n = Number(raw.trim());
    if (Number.isFinite(n) && n >= 0) return n;
    const t = Date.parse(raw);
    if (!Number.isNaN(t)) return Math.max(0, (t - Date.now()) / 1000);
  }
  if (body && Number.isFinite(body.retry_after_s)) return Math.max(0, body.retry_after_s);
  return null;
}

async function readBody(res) {
  try { return await res.json(); } catch { return null; } // not JSON
}

function errorFrom(res, body, retryAfterS) {
  const requestId = (body && typeof body.request_id === "string" && body.request_id) || res.headers.get("X-Request-ID");
  let msg = body && typeof body.detail === "string" ? body.detail : `The server answered ${res.status} ${res.statusText}.`;
  if (res.status >= 500 && requestId && !msg.includes(requestId)) msg += ` (request id ${requestId})`;
  return new ApiError(msg, res.status, { requestId, retryAfterS });
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal.aborted) { reject(new Cancelled()); return; }
    const t = setTimeout(() => { signal.removeEventListener("abort", stop); resolve(); }, ms);
    const stop = () => { clearTimeout(t); reject(new Cancelled()); };
    signal.addEventListener("abort", stop, { once: true });
  });
}

function emit(type, detail) { apiEvents.dispatchEvent(new CustomEvent(type, { detail })); }

// One call with the retry loop. `init` is fetch's (method, headers, body); `signal` is the caller's.
async function request(url, init, { signal } = {}) {
  const ctl = new AbortController(); // the queue widget's Cancel aborts this one
  const follow = () => ctl.abort();
  if (signal) { if (signal.aborted) ctl.abort(); else signal.addEventListener("abort", follow, { once: true }); }
  const id = ++nextId, started = Date.now();
  let waited = false, outcome = "error", byUser = false;
  const cancel = () => { byUser = true; ctl.abort(); };
  try {
    for (let attempt = 1; ; attempt++) {
      let res;
      try {
        res = await fetch(url, { ...init, signal: ctl.signal });
      } catch (e) {
        if (ctl.signal.aborted) throw new Cancelled();
        throw e;
      }
      const body = await readBody(res);
      if (res.ok) { outcome = "ok"; return body; }
      const after = res.status === 503 ? retryAfterSeconds(res, body) : null;
      const spent = (Date.now() - started) / 1000;
      if (after === null || attempt >= RETRY.maxAttempts || spent + after > RETRY.maxWaitS) {
        const err = errorFrom(res, body, after);
        if (after !== null) { // gave up queueing: say so in words, not as a bare 503
          err.message = `The server is still busy after ${Math.round(spent)} s of waiting (${attempt} tries): ${err.message}`
            .replace(/; try again in a few seconds\.?$/, ".") + " Please try again in a minute.";
        }
        throw err;
      }
      const seconds = after * (1 + RETRY.jitter * Math.random());
      waited = true;
      emit("retry", { id, url, attempt, seconds, until: Date.now() + seconds * 1000,
        detail: body && typeof body.detail === "string" ? body.detail : "", cancel });
      await sleep(seconds * 1000, ctl.signal);
    }
  } catch (e) {
    if (isCancelled(e) || ctl.signal.aborted) {
      outcome = byUser ? "cancelled" : "aborted";
      throw e instanceof Cancelled ? e : new Cancelled();
    }
    throw e;
  } finally {
    if (signal) signal.removeEventListener("abort", follow);
    if (waited) emit("settled", { id, outcome });
  }
}

// opts: {signal} (an AbortSignal: cancels the call, including its waits) and any other fetch option.
export function apiGet(url, { signal, ...opts } = {}) {
  return request(url, { headers: { Accept: "application/json" }, ...opts }, { signal });
}

export function apiPost(url, body, { signal, ...opts } = {}) {
  const isForm = body instanceof FormData; // FormData can be sent again on a retry; so can the JSON string
  return request(url, {
    method: "POST",
    headers: isForm ? { Accept: "application/json" } : { "Content-Type": "application/json", Accept: "application/json" },
    body: isForm ? body : JSON.stringify(body),
    ...opts,
  }, { signal });
}

// Show an error message inline, as text (never HTML). A cancelled call clears the box: the queue widget
// already says "cancelled", and that is not an error.
export function showError(el, err) {
  el.textContent = err && !isCancelled(err) ? (err.message || String(err)) : "";
}

export function pageData() {
  const node = document.getElementById("page-data");
  return node ? JSON.parse(node.textContent) : {};
}
