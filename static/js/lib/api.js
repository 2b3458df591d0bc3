// fetch wrappers: JSON in/out, server errors surface as ApiError with the server's human message.
export class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}

async function parse(res) {
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  if (!res.ok) {
    let msg = body && typeof body.detail === "string" ? body.detail : `The server answered ${res.status} ${res.statusText}.`;
    if (res.status === 503 && res.headers.get("Retry-After")) msg += ` (retry after ${res.headers.get("Retry-After")} s)`;
    throw new ApiError(msg, res.status);
  }
  return body;
}

export async function apiGet(url, opts = {}) {
  return parse(await fetch(url, { headers: { Accept: "application/json" }, ...opts }));
}

export async function apiPost(url, body, opts = {}) {
  const isForm = body instanceof FormData;
  return parse(await fetch(url, {
    method: "POST",
    headers: isForm ? { Accept: "application/json" } : { "Content-Type": "application/json", Accept: "application/json" },
    body: isForm ? body : JSON.stringify(body),
    ...opts,
  }));
}

// Show an error message inline, as text (never HTML).
export function showError(el, err) {
  el.textContent = err ? (err.message || String(err)) : "";
}

export function pageData() {
  const node = document.getElementById("page-data");
  return node ? JSON.parse(node.textContent) : {};
}
