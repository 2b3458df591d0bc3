// The URL is the permalink: views read their state from it and write it back with replaceState.
export function readState(defaults) {
  const p = new URLSearchParams(location.search);
  const out = { ...defaults };
  for (const [k, v] of Object.entries(defaults)) {
    if (!p.has(k)) continue;
    const raw = p.get(k);
    if (typeof v === "number") { const n = Number(raw); if (!Number.isNaN(n)) out[k] = n; }
    else if (typeof v === "boolean") out[k] = raw === "1" || raw === "true";
    else out[k] = raw;
  }
  for (const [k, v] of p.entries()) if (!(k in out)) out[k] = v;
  return out;
}

export function writeState(state) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(state)) {
    if (v === null || v === undefined || v === "") continue;
    p.set(k, typeof v === "boolean" ? (v ? "1" : "0") : String(v));
  }
  const url = `${location.pathname}?${p.toString()}`;
  if (url !== location.pathname + location.search) history.replaceState(null, "", url);
}
