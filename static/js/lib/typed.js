// plotly's typed-array spec {dtype, bdata (base64), shape: "12, 6"} -> {data: TypedArray, shape: [12, 6]}.
const CTORS = { f4: Float32Array, f8: Float64Array, u1: Uint8Array, u2: Uint16Array, i2: Int16Array, i4: Int32Array };

export function decodeTyped(spec) {
  const Ctor = CTORS[spec.dtype];
  if (!Ctor) throw new Error(`unsupported dtype ${spec.dtype}`);
  const bin = atob(spec.bdata);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  const shape = String(spec.shape).split(",").map((s) => parseInt(s, 10)).filter((n) => !Number.isNaN(n));
  return { data: new Ctor(bytes.buffer), shape };
}

// A (rows x cols) slice of a row-major array starting at `offset`, as an array of rows (for plotly z).
export function toRows(data, rows, cols, offset = 0) {
  const out = new Array(rows);
  for (let r = 0; r < rows; r++) out[r] = Array.from(data.subarray(offset + r * cols, offset + (r + 1) * cols));
  return out;
}

// A typed-array spec as a plain Array (for plotly x/y and for arithmetic with map/reduce).
export const toArray = (spec) => Array.from(decodeTyped(spec).data);
