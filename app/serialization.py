"""Arrays for the browser in plotly's typed-array spec: {"dtype": "f4", "bdata": base64, "shape": "12, 6"}.

plotly.js (v2.28+) reads this natively; our own JS decodes it with ``static/js/typed.js``. Never nested
JSON number lists: a 197 x 197 float32 map is 155 KB as bytes and several times that as JSON text.
"""

from __future__ import annotations

import base64

import numpy as np

DTYPES = {"f4": np.float32, "f8": np.float64, "u1": np.uint8, "i2": np.int16, "i4": np.int32, "u2": np.uint16}


def typed_array(values: np.ndarray, dtype: str = "f4") -> dict[str, str]:
    """Encode an array (C order, little endian) as plotly's typed-array spec."""
    if dtype not in DTYPES:
        raise ValueError(f"unsupported dtype {dtype!r}")
    arr = np.ascontiguousarray(np.asarray(values), dtype=np.dtype(DTYPES[dtype]).newbyteorder("<"))
    return {
        "dtype": dtype,
        "bdata": base64.b64encode(arr.tobytes()).decode("ascii"),
        "shape": ", ".join(str(s) for s in arr.shape),
    }


def decode_typed_array(spec: dict[str, str]) -> np.ndarray:
    """Inverse of :func:`typed_array` (tests and notebooks)."""
    dt = np.dtype(DTYPES[spec["dtype"]]).newbyteorder("<")
    arr = np.frombuffer(base64.b64decode(spec["bdata"]), dtype=dt)
    shape = tuple(int(s) for s in str(spec["shape"]).split(",") if s.strip())
    return arr.reshape(shape)
