"""Paper 1 figures: sinusoidal positional encoding (Section 3.5), 1/sqrt(d_k) (Section 3.2.1), the tour.

API routes return typed arrays; every number comes from `models.figures.positional`, `models.figures.scaling` and
`models.text.positions`. The helpers here only walk long position ranges in chunks so that memory stays
at a few MB whatever the (bounded) length and d_model, and cache the slow, pure parts.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Query

from app.schemas.common import ErrorResponse
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
from app.services.figures import (
    CHUNK,
    D_K_GRID,
    FAR_POSITIONS,
    HEAT_PAIRS,
    HEAT_ROWS,
    M_K_CORNER,
    MAX_D_K,
    MAX_D_MODEL,
    MAX_DIMS,
    MAX_FAR,
    MAX_LENGTH,
    MAX_ROWS_X_KEYS,
)
from models.figures.positional import (
    DEFAULT_BASE,
    cosine_similarity_matrix,
    dot_similarity_theory,
    encode_positions,
    frequencies,
    linearity_check,
    relative_rotation,
    sinusoidal_encoding,
)
from models.figures.scaling import (
    SoftmaxStats,
    dot_product_variance,
    row_statistics,
    single_row_example,
    softmax_saturation,
)
from models.text.positions import learned_position_embeddings, mean_similarity_by_offset

router = APIRouter(tags=["paper 1"])
ERRORS = {422: {"model": ErrorResponse}, 503: {"model": ErrorResponse}}


def _bad(message: str) -> HTTPException:
    return HTTPException(422, message)


# --- positional encoding (Section 3.5) --------------------------------------------------------------


def default_dims(d_model: int) -> list[int]:
    """Fastest sin and cos, then one sin at a quarter and one at half of d_model (slower and slower)."""
    return sorted({0, 1, 2 * (d_model // 8), 2 * (d_model // 4)} & set(range(d_model)))


def _parse_dims(dims: str | None, d_model: int) -> list[int]:
    if dims is None or dims == "":
        return default_dims(d_model)
    out = sorted({int(x) for x in dims.split(",")})
    if len(out) > MAX_DIMS:
        raise _bad(f"dims: at most {MAX_DIMS} dimensions at a time, got {len(out)}")
    bad = [d for d in out if d >= d_model]
    if bad:
        raise _bad(f"dims: {bad[0]} is not a dimension of d_model={d_model} (valid: 0 .. {d_model - 1})")
    return out


def _heatmap(length: int, d_model: int) -> Heatmap:
    pos_stride = math.ceil(length / HEAT_ROWS)
    pair_stride = math.ceil((d_model // 2) / HEAT_PAIRS)
    positions = np.arange(0, length, pos_stride)  # (R,)
    pairs = np.arange(0, d_model // 2, pair_stride)  # (C/2,) keep sin and cos of a frequency together
    cols = np.stack([2 * pairs, 2 * pairs + 1], axis=1).reshape(-1)  # (C,) 2i, 2i+1, 2j, 2j+1, ...
    values = encode_positions(positions, d_model)[:, cols]  # (R, C)
    return Heatmap(
        values=typed_array(values),
        positions=typed_array(positions, "i4"),
        dims=typed_array(cols, "i4"),
        position_stride=pos_stride,
        pair_stride=pair_stride,
    )


def _similarity_theory(length: int, d_model: int) -> np.ndarray:
    """sum_i cos(k w_i) for k = 0 .. length-1, in chunks: float64 (length,)."""
    ks = np.arange(length)
    step = max(1, CHUNK // max(1, d_model // 2))
    return np.concatenate([dot_similarity_theory(ks[a : a + step], d_model) for a in range(0, length, step)])


def _table_pass(
    length: int, d_model: int, dims: list[int], starts: list[int], theory: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """One chunked pass over the PE table: the chosen columns, PE(0) . PE(p), and the largest deviation
    of PE(s) . PE(p) from the closed form sum_i cos((p - s) w_i) for every start s and position p."""
    curves = np.empty((len(dims), length), dtype=np.float64)  # (D, L)
    empirical = np.empty(length, dtype=np.float64)  # (L,)
    anchors = encode_positions(starts, d_model)  # (S, d)
    step = max(1, CHUNK // d_model)
    max_dev = 0.0
    for a in range(0, length, step):
        p = np.arange(a, min(length, a + step))  # (c,)
        table = encode_positions(p, d_model)  # (c, d)
        curves[:, p] = table[:, dims].T  # (D, c)
        dots = table @ anchors.T  # (c, S): PE(p) . PE(s)
        empirical[p] = dots[:, 0]  # starts[0] == 0
        expected = theory[np.abs(p[:, None] - np.asarray(starts)[None, :])]  # (c, S) symmetric in k
        max_dev = max(max_dev, float(np.abs(dots - expected).max()))
    return curves, empirical, max_dev


@lru_cache(maxsize=16)
def _linearity(length: int, d_model: int, k: int, far: int) -> Linearity:
    """linearity_check over every position 0 .. length-1 (chunked), far positions and a log sweep."""
    residual = np.empty(length, dtype=np.float64)  # (L,)
    scale = np.empty(length, dtype=np.float64)  # (L,)
    step = max(256, (2 * CHUNK) // d_model)
    ortho = 0.0
    for a in range(0, length, step):
        res = linearity_check(k, d_model, np.arange(a, min(length, a + step)))
        residual[a : a + step], scale[a : a + step] = res.residual, res.rounding_scale
        ortho = res.orthogonality_error
    far_pos = sorted({*FAR_POSITIONS, far})
    far_res = linearity_check(k, d_model, far_pos)
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


@router.get("/api/figures/positional", response_model=PositionalResponse, responses=ERRORS)
def positional(
    length: Annotated[int, Query(ge=2, le=MAX_LENGTH, description="positions 0 .. length-1")] = 128,
    d_model: Annotated[int, Query(ge=2, le=MAX_D_MODEL, description="even model width")] = 128,
    k: Annotated[int, Query(ge=-MAX_LENGTH, le=MAX_LENGTH, description="offset for M_k")] = 8,
    dims: Annotated[
        str | None,
        Query(pattern=r"^\d{1,4}(,\d{1,4}){0,15}$", description="comma-separated dimensions, e.g. 0,1,32"),
    ] = None,
    far: Annotated[int, Query(ge=1, le=MAX_FAR, description="an extra far position to check")] = 1_000_000,
) -> PositionalResponse:
    """PE table (heatmap), chosen columns, PE(pos) . PE(pos+k), and the linear map M_k (Section 3.5)."""
    if d_model % 2:
        raise _bad(
            f"d_model must be even, got {d_model}: with an odd width the last sin column has no cos "
            "partner, so PE(pos+k) is not a linear function of PE(pos)"
        )
    chosen = _parse_dims(dims, d_model)
    w = frequencies(d_model)
    theory = _similarity_theory(length, d_model)
    starts = sorted({0, length // 2, length - 1})
    curves, empirical, max_dev = _table_pass(length, d_model, chosen, starts, theory)
    return PositionalResponse(
        length=length,
        d_model=d_model,
        k=k,
        base=DEFAULT_BASE,
        heatmap=_heatmap(length, d_model),
        dims=chosen,
        wavelengths=[float(2 * np.pi / w[d // 2]) for d in chosen],
        curves=typed_array(curves),
        similarity=Similarity(
            theory=typed_array(theory, "f8"),
            empirical=typed_array(empirical, "f8"),
            starts=starts,
            max_deviation=max_dev,
        ),
        linearity=_linearity(length, d_model, k, far),
    )


@lru_cache(maxsize=1)
def _learned_table() -> np.ndarray:
    return learned_position_embeddings()  # (512, 384)


@router.get("/api/figures/positional/learned", response_model=LearnedPositionsResponse, responses=ERRORS)
def learned_positions(
    n: Annotated[int, Query(ge=2, le=512, description="first n positions")] = 512,
) -> LearnedPositionsResponse:
    """Cosine similarity of BERT's learned position vectors (all-MiniLM-L6-v2) beside the sinusoids."""
    try:
        table = _learned_table()
    except (FileNotFoundError, KeyError) as e:
        raise HTTPException(503, f"The learned position embeddings are not available: {e}") from e
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


# --- 1/sqrt(d_k) (Section 3.2.1) -------------------------------------------------------------------


def _curves(s: SoftmaxStats) -> SoftmaxCurves:
    keys = SoftmaxCurves.model_fields
    return SoftmaxCurves(**{key: typed_array(getattr(s, key), "f8") for key in keys})


def _point(s: SoftmaxStats) -> SoftmaxPoint:
    return SoftmaxPoint(**{key: float(getattr(s, key)[0]) for key in SoftmaxPoint.model_fields})


def _row_stats(logits: np.ndarray) -> RowStats:
    st = row_statistics(logits)
    return RowStats(
        max_prob=float(st["max_prob"]), entropy=float(st["entropy"]), jacobian_fro=float(st["jacobian_fro"])
    )


@lru_cache(maxsize=16)
def _grid_stats(n_keys: int, n_samples: int, var_samples: int, seed: int, distribution: str):
    var = dot_product_variance(D_K_GRID, var_samples, seed, distribution)
    sat = softmax_saturation(D_K_GRID, n_keys, n_samples, seed)
    return var, sat


@router.get("/api/figures/scaling", response_model=ScalingResponse, responses=ERRORS)
def scaling(
    d_k: Annotated[int, Query(ge=1, le=MAX_D_K, description="the slider's d_k")] = 64,
    n_keys: Annotated[int, Query(ge=2, le=1024, description="keys per attention row")] = 64,
    n_samples: Annotated[int, Query(ge=16, le=4096, description="random rows per d_k")] = 512,
    var_samples: Annotated[int, Query(ge=100, le=10_000, description="(q, k) pairs per d_k")] = 2000,
    seed: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    distribution: Literal["normal", "rademacher", "uniform"] = "normal",
    row_keys: Annotated[int, Query(ge=2, le=64, description="keys in the single example row")] = 16,
) -> ScalingResponse:
    """Variance of q . k versus d_k, softmax saturation with and without 1/sqrt(d_k), one example row."""
    if n_keys * n_samples > MAX_ROWS_X_KEYS:
        raise _bad(
            f"n_keys x n_samples must be at most {MAX_ROWS_X_KEYS:,} (got {n_keys} x {n_samples} = "
            f"{n_keys * n_samples:,}); lower one of them"
        )
    var, sat = _grid_stats(n_keys, n_samples, var_samples, seed, distribution)
    # Each d_k has its own random stream, so these equal the grid values wherever d_k is on the grid.
    var_at = dot_product_variance([d_k], var_samples, seed, distribution)
    sat_at = softmax_saturation([d_k], n_keys, n_samples, seed)
    row = single_row_example(d_k, row_keys, seed)
    return ScalingResponse(
        d_k=d_k,
        n_keys=n_keys,
        n_samples=n_samples,
        var_samples=var_samples,
        seed=seed,
        distribution=distribution,
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
            logits_unscaled=typed_array(row.logits_unscaled, "f8"),
            p_unscaled=typed_array(row.p_unscaled, "f8"),
            logits_scaled=typed_array(row.logits_scaled, "f8"),
            p_scaled=typed_array(row.p_scaled, "f8"),
            unscaled=_row_stats(row.logits_unscaled),
            scaled=_row_stats(row.logits_scaled),
        ),
    )
