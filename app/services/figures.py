"""Paper-1 figures (positional encoding, Section 3.5; 1/sqrt(d_k), Section 3.2.1; learned positions) and
the shared helper that runs every derived view in the CPU pool and caches it (framework-free).

Every number comes from :mod:`models.figures.positional`, :mod:`models.figures.scaling` and
:mod:`models.text.positions`; this module only assembles the response schemas. Each figure is computed in
the CPU pool (503 + Retry-After when it is full) and cached in ``state.views`` per parameter set, so a
class of 40 students moving sliders never stalls the event loop (``/api/health`` stays fast).
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple, TypeVar

import numpy as np

from app.schemas.paper1 import (
    FarCheck,
    Heatmap,
    LearnedPositionsResponse,
    Linearity,
    PositionalResponse,
    RowStats,
    ScalingAt,
    ScalingResponse,
    ScalingRow,
    Similarity,
    SoftmaxCurves,
    SoftmaxPoint,
)
from app.serialization import typed_array
from app.services.errors import ServiceError
from app.services.views import cached_json, cached_view, compute_view  # noqa: F401 (re-exported)
from app.state import AppState
from models.figures.positional import (
    CHUNK_ELEMENTS,
    DEFAULT_BASE,
    cosine_similarity_matrix,
    default_dims,
    dot_similarity_theory_range,
    frequencies,
    heatmap_sample,
    linearity_check,
    linearity_over_range,
    relative_rotation,
    sinusoidal_encoding,
    table_pass,
)
from models.figures.scaling import (
    SoftmaxStats,
    dot_product_variance,
    log_spaced_d_k,
    row_statistics,
    single_row_example,
    softmax_saturation,
)
from models.text.positions import learned_position_embeddings, mean_similarity_by_offset

T = TypeVar("T")

MAX_LENGTH = 10_000
MAX_D_MODEL = 2048
MAX_DIMS = 8
MAX_FAR = 1_000_000_000
HEAT_ROWS = 512  # the heatmap shows at most this many positions ...
HEAT_PAIRS = 256  # ... and this many (sin, cos) column pairs; the strides are reported
M_K_CORNER = 12
FAR_POSITIONS = (10_000, 1_000_000)
CHUNK = CHUNK_ELEMENTS  # float64 elements per chunk of the position table (8 MB)

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


class FigureError(ServiceError):
    """Parameters the figure cannot take (422), or data it needs that is missing (``status`` 503)."""

    status = 422


# --- positional encoding (Section 3.5) --------------------------------------------------------------


def parse_dims(dims: str | None, d_model: int) -> list[int]:
    """ "0,1,32" -> sorted unique dimensions of d_model (default: `default_dims`); FigureError otherwise."""
    if dims is None or dims == "":
        return default_dims(d_model)
    out = sorted({int(x) for x in dims.split(",")})
    if len(out) > MAX_DIMS:
        raise FigureError(f"dims: at most {MAX_DIMS} dimensions at a time, got {len(out)}")
    bad = [d for d in out if d >= d_model]
    if bad:
        raise FigureError(
            f"dims: {bad[0]} is not a dimension of d_model={d_model} (valid: 0 .. {d_model - 1})"
        )
    return out


def _heatmap(length: int, d_model: int) -> Heatmap:
    values, positions, cols, pos_stride, pair_stride = heatmap_sample(length, d_model, HEAT_ROWS, HEAT_PAIRS)
    return Heatmap(
        values=typed_array(values),
        positions=typed_array(positions, "i4"),
        dims=typed_array(cols, "i4"),
        position_stride=pos_stride,
        pair_stride=pair_stride,
    )


def _linearity(length: int, d_model: int, k: int, far: int) -> Linearity:
    """linearity_check over every position 0 .. length-1 (chunked), far positions and a log sweep."""
    residual, scale, ortho = linearity_over_range(k, d_model, length, CHUNK)
    far_res = linearity_check(k, d_model, sorted({*FAR_POSITIONS, far}))
    sweep = np.geomspace(1, MAX_FAR, 73)  # (73,) 8 points per decade
    sweep_res = linearity_check(k, d_model, sweep)
    n = min(d_model, M_K_CORNER)
    m_k = relative_rotation(k, d_model)[:n, :n]  # (n, n)
    return Linearity(
        k=k,
        max_residual=float(residual.max()),
        argmax_pos=int(residual.argmax()),
        orthogonality_error=ortho,
        residual=typed_array(residual, "f8"),
        rounding_scale=typed_array(scale, "f8"),
        m_k=typed_array(m_k, "f8"),
        m_k_size=n,
        phi=typed_array(k * frequencies(d_model), "f8"),
        far=[
            FarCheck(pos=p, residual=r, rounding_scale=s, ratio=r / s)
            for p, r, s in zip(far_res.positions, far_res.residual, far_res.rounding_scale, strict=True)
        ],
        sweep_positions=typed_array(sweep, "f8"),
        sweep_residual=typed_array(sweep_res.residual, "f8"),
        sweep_rounding_scale=typed_array(sweep_res.rounding_scale, "f8"),
    )


def build_positional(length: int, d_model: int, k: int, dims: list[int], far: int) -> PositionalResponse:
    """CPU-pool job: PE table (heatmap), chosen columns, PE(pos) . PE(pos+k) and M_k (Section 3.5).

    Memory: the table is walked in chunks of CHUNK float64 elements (8 MB), whatever length and d_model.
    """
    w = frequencies(d_model)
    theory = dot_similarity_theory_range(length, d_model, CHUNK)
    starts = sorted({0, length // 2, length - 1})
    walk = table_pass(length, d_model, dims, starts, theory, CHUNK)
    return PositionalResponse(
        length=length,
        d_model=d_model,
        k=k,
        base=DEFAULT_BASE,
        heatmap=_heatmap(length, d_model),
        dims=dims,
        wavelengths=[float(2 * np.pi / w[d // 2]) for d in dims],
        curves=typed_array(walk.curves),
        similarity=Similarity(
            theory=typed_array(theory, "f8"),
            empirical=typed_array(walk.empirical, "f8"),
            starts=starts,
            max_deviation=walk.max_deviation,
        ),
        linearity=_linearity(length, d_model, k, far),
    )


async def positional(state: AppState, length: int, d_model: int, k: int, dims: str | None, far: int) -> bytes:
    """The positional-encoding figure (PositionalResponse JSON), from the view cache or the CPU pool."""
    if d_model % 2:
        raise FigureError(
            f"d_model must be even, got {d_model}: with an odd width the last sin column has no cos "
            "partner, so PE(pos+k) is not a linear function of PE(pos)"
        )
    chosen = parse_dims(dims, d_model)
    key = f"fig-positional|{length}|{d_model}|{k}|{','.join(map(str, chosen))}|{far}"
    return await cached_json(state, key, build_positional, length, d_model, k, chosen, far)


@lru_cache(maxsize=1)
def _learned_table() -> np.ndarray:
    return learned_position_embeddings()  # (512, 384), 786 KB, read once per process


def build_learned(n: int) -> LearnedPositionsResponse:
    """CPU-pool job: cosine similarity of BERT's learned position vectors beside the sinusoids."""
    try:
        table = _learned_table()
    except (FileNotFoundError, KeyError) as e:
        raise FigureError(f"The learned position embeddings are not available: {e}", status=503) from e
    n = min(n, table.shape[0])
    hidden = table.shape[1]
    learned = cosine_similarity_matrix(table[:n])  # (n, n)
    sinusoidal = cosine_similarity_matrix(sinusoidal_encoding(n, hidden))  # (n, n)
    return LearnedPositionsResponse(
        n=n,
        hidden=hidden,
        max_positions=table.shape[0],
        source="all-MiniLM-L6-v2 (6-layer BERT): embeddings.position_embeddings.weight",
        learned=typed_array(learned),
        sinusoidal=typed_array(sinusoidal),
        offset_learned=typed_array(mean_similarity_by_offset(learned), "f8"),
        offset_sinusoidal=typed_array(mean_similarity_by_offset(sinusoidal), "f8"),
        norms=typed_array(np.linalg.norm(table[:n], axis=1)),
    )


async def learned_positions(state: AppState, n: int) -> bytes:
    """LearnedPositionsResponse JSON, from the view cache or the CPU pool."""
    return await cached_json(state, f"fig-learned|{n}", build_learned, n)


# --- 1/sqrt(d_k) (Section 3.2.1) -------------------------------------------------------------------


ROW_ARRAYS = ("logits_unscaled", "p_unscaled", "logits_scaled", "p_scaled")  # the example row, as float64


def _curves(s: SoftmaxStats) -> SoftmaxCurves:
    return SoftmaxCurves(**{key: typed_array(getattr(s, key), "f8") for key in SoftmaxCurves.model_fields})


def _point(s: SoftmaxStats) -> SoftmaxPoint:
    return SoftmaxPoint(**{key: float(getattr(s, key)[0]) for key in SoftmaxPoint.model_fields})


def _row_stats(logits: np.ndarray) -> RowStats:
    st = row_statistics(logits)
    return RowStats(
        max_prob=float(st["max_prob"]), entropy=float(st["entropy"]), jacobian_fro=float(st["jacobian_fro"])
    )


def _grid_stats(state: AppState, n_keys: int, n_samples: int, var_samples: int, seed: int, distribution: str):
    """The d_k grid's curves (the slow part), shared by every d_k of one parameter set."""
    key = f"fig-scaling-grid|{n_keys}|{n_samples}|{var_samples}|{seed}|{distribution}"
    return compute_view(
        state,
        key,
        lambda: (
            dot_product_variance(D_K_GRID, var_samples, seed, distribution),
            softmax_saturation(D_K_GRID, n_keys, n_samples, seed),
        ),
        (),
    )


class ScalingParams(NamedTuple):
    """The query of the 1/sqrt(d_k) figure (the route's parameters, in its order)."""

    d_k: int
    n_keys: int
    n_samples: int
    var_samples: int
    seed: int
    distribution: str
    row_keys: int


def build_scaling(state: AppState, p: ScalingParams) -> ScalingResponse:
    """CPU-pool job: variance of q . k versus d_k, softmax saturation with and without 1/sqrt(d_k), and
    one example row (Section 3.2.1, footnote 4)."""
    d_k, n_keys, n_samples, var_samples, seed, distribution, row_keys = p
    var, sat = _grid_stats(state, n_keys, n_samples, var_samples, seed, distribution)
    # Each d_k has its own random stream, so these equal the grid values wherever d_k is on the grid.
    var_at = dot_product_variance([d_k], var_samples, seed, distribution)
    sat_at = softmax_saturation([d_k], n_keys, n_samples, seed)
    row = single_row_example(d_k, row_keys, seed)
    return ScalingResponse(
        **{key: value for key, value in p._asdict().items() if key in ScalingResponse.model_fields},
        grid=typed_array(D_K_GRID, "i4"),
        variance=typed_array(var.variance, "f8"),
        variance_theory=typed_array(var.theory_variance, "f8"),
        variance_stderr=typed_array(var.variance_stderr, "f8"),
        scaled_variance=typed_array(var.scaled_variance, "f8"),
        unscaled=_curves(sat.unscaled),
        scaled=_curves(sat.scaled),
        uniform_max_prob=sat.uniform_max_prob,
        uniform_entropy=sat.uniform_entropy,
        uniform_jacobian_fro=sat.uniform_jacobian_fro,
        at=ScalingAt(
            d_k=d_k,
            variance=float(var_at.variance[0]),
            variance_theory=float(var_at.theory_variance[0]),
            variance_stderr=float(var_at.variance_stderr[0]),
            scaled_variance=float(var_at.scaled_variance[0]),
            unscaled=_point(sat_at.unscaled),
            scaled=_point(sat_at.scaled),
        ),
        row=ScalingRow(
            n_keys=row_keys,
            **{key: typed_array(getattr(row, key), "f8") for key in ROW_ARRAYS},
            unscaled=_row_stats(row.logits_unscaled),
            scaled=_row_stats(row.logits_scaled),
        ),
    )


async def scaling(
    state: AppState,
    d_k: int,
    n_keys: int,
    n_samples: int,
    var_samples: int,
    seed: int,
    distribution: str,
    row_keys: int,
) -> bytes:
    """The 1/sqrt(d_k) figure (ScalingResponse JSON), from the view cache or the CPU pool."""
    if n_keys * n_samples > MAX_ROWS_X_KEYS:
        raise FigureError(
            f"n_keys x n_samples must be at most {MAX_ROWS_X_KEYS:,} (got {n_keys} x {n_samples} = "
            f"{n_keys * n_samples:,}); lower one of them"
        )
    params = ScalingParams(d_k, n_keys, n_samples, var_samples, seed, distribution, row_keys)
    key = "fig-scaling|" + "|".join(map(str, params))
    return await cached_json(state, key, build_scaling, state, params)
