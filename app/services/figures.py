"""Paper-1 figures: bounds of the positional-encoding and 1/sqrt(d_k) demos."""

from __future__ import annotations

from models.figures.scaling import log_spaced_d_k

MAX_LENGTH = 10_000
MAX_D_MODEL = 2048
MAX_DIMS = 8
MAX_FAR = 1_000_000_000
HEAT_ROWS = 512  # the heatmap shows at most this many positions ...
HEAT_PAIRS = 256  # ... and this many (sin, cos) column pairs; the strides are reported
M_K_CORNER = 12
FAR_POSITIONS = (10_000, 1_000_000)
CHUNK = 1 << 20  # float64 elements per chunk of the position table (8 MB)

MAX_D_K = 1024
MAX_ROWS_X_KEYS = 1 << 18
D_K_GRID = log_spaced_d_k(30, MAX_D_K)  # (27,) log-spaced 1 .. 1024

BOUNDS = {
    "length": [2, MAX_LENGTH],
    "d_model": [2, MAX_D_MODEL],
    "k": [-MAX_LENGTH, MAX_LENGTH],
    "far": [1, MAX_FAR],
    "max_dims": MAX_DIMS,
    "d_k": [1, MAX_D_K],
    "n_keys": [2, 1024],
    "n_samples": [16, 4096],
    "var_samples": [100, 10_000],
    "row_keys": [2, 64],
    "rows_x_keys": MAX_ROWS_X_KEYS,
}
