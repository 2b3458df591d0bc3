"""Paper 1 figures: sinusoidal positional encoding (Section 3.5), 1/sqrt(d_k) (Section 3.2.1), the tour.

Routes parse and validate, then call :mod:`app.services.figures`, which computes each figure in the CPU
pool (503 + Retry-After when it is full) and caches its JSON per parameter set; the routes return those
bytes as they are (``response_model`` documents them).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from app.deps import StateDep
from app.errors import errors_doc
from app.schemas.paper1 import LearnedPositionsResponse, PositionalResponse, ScalingResponse
from app.services import figures
from app.services.figures import MAX_D_K, MAX_D_MODEL, MAX_FAR, MAX_LENGTH

router = APIRouter(tags=["paper 1"])
ERRORS = errors_doc(422, 503)


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


@router.get("/api/figures/positional", response_model=PositionalResponse, responses=ERRORS)
async def positional(
    state: StateDep,
    length: Annotated[int, Query(ge=2, le=MAX_LENGTH, description="positions 0 .. length-1")] = 128,
    d_model: Annotated[int, Query(ge=2, le=MAX_D_MODEL, description="even model width")] = 128,
    k: Annotated[int, Query(ge=-MAX_LENGTH, le=MAX_LENGTH, description="offset for M_k")] = 8,
    dims: Annotated[
        str | None,
        Query(pattern=r"^\d{1,4}(,\d{1,4}){0,15}$", description="comma-separated dimensions, e.g. 0,1,32"),
    ] = None,
    far: Annotated[int, Query(ge=1, le=MAX_FAR, description="an extra far position to check")] = 1_000_000,
) -> Response:
    """PE table (heatmap), chosen columns, PE(pos) . PE(pos+k), and the linear map M_k (Section 3.5)."""
    return _json(await figures.positional(state, length, d_model, k, dims, far))


@router.get("/api/figures/positional/learned", response_model=LearnedPositionsResponse, responses=ERRORS)
async def learned_positions(
    state: StateDep,
    n: Annotated[int, Query(ge=2, le=512, description="first n positions")] = 512,
) -> Response:
    """Cosine similarity of BERT's learned position vectors (all-MiniLM-L6-v2) beside the sinusoids."""
    return _json(await figures.learned_positions(state, n))


@router.get("/api/figures/scaling", response_model=ScalingResponse, responses=ERRORS)
async def scaling(
    state: StateDep,
    d_k: Annotated[int, Query(ge=1, le=MAX_D_K, description="the slider's d_k")] = 64,
    n_keys: Annotated[int, Query(ge=2, le=1024, description="keys per attention row")] = 64,
    n_samples: Annotated[int, Query(ge=16, le=4096, description="random rows per d_k")] = 512,
    var_samples: Annotated[int, Query(ge=100, le=10_000, description="(q, k) pairs per d_k")] = 2000,
    seed: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    distribution: Literal["normal", "rademacher", "uniform"] = "normal",
    row_keys: Annotated[int, Query(ge=2, le=64, description="keys in the single example row")] = 16,
) -> Response:
    """Variance of q . k versus d_k, softmax saturation with and without 1/sqrt(d_k), one example row."""
    return _json(
        await figures.scaling(state, d_k, n_keys, n_samples, var_samples, seed, distribution, row_keys)
    )
