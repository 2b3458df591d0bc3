// Screen numbering <-> API numbering, in one place. Layers, heads, tokens, patches, rows and columns are numbered
// from 1 wherever a person reads them (controls, titles, page URLs, exports, screen-reader text); the JSON API and
// every array index in the modules count from 0. Convert with these, never with a bare +1 / -1.

// 0-based API index -> 1-based screen number ("mean" stays "mean").
export const fromApi = (index) => (index === "mean" ? "mean" : Number(index) + 1);
// 1-based (URL, <select> value) -> 0-based; anything below 1 or not a number (old links: layer=0) becomes 0.
export const toApi = (n) => (n === "mean" ? "mean" : Math.max(1, Math.round(Number(n)) || 1) - 1);
// A 1-based URL number -> 0-based, or `missing` when the URL has none (0, absent, not a number).
export const toApiOr = (n, missing) => (Number(n) >= 1 ? toApi(n) : missing);

// The convention, as exports state it in their metadata.
export const NUMBERING = "layers, heads and token indexes are 1-based, as on screen (the API counts from 0)";
export const PATCH_NUMBERING = "layer, head, query and patch count from 1, as on screen (the API counts from 0); patches row-major";

// A 0-based row-major patch index of a grid `cols` wide -> its 1-based {row, col}, and back.
export const patchRowCol = (index, cols) => ({ row: Math.floor(index / cols) + 1, col: (index % cols) + 1 });
export const patchIndex = (row, col, cols) => toApi(row) * cols + toApi(col);
// "row 3, col 5" and "patch row 3, col 5" for titles, captions and screen-reader text.
export const patchWhere = (index, cols) => { const p = patchRowCol(index, cols); return `row ${p.row}, col ${p.col}`; };
export const patchName = (index, cols) => `patch ${patchWhere(index, cols)}`;
