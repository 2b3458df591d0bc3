"""Features and norms API: PCA colours, similarity, K-means parts, token norms and sinks of a cached analysis.

Thin routes: parse, then one call into :mod:`app.services.features` (CPU pool, cached per options).
Layers are 0-based; omit ``layer`` for the last layer after the final norm.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from app.deps import StateDep
from app.errors import errors_doc
from app.schemas.features import (
    FeaturesPCAResponse,
    NormsResponse,
    PartsResponse,
    SimilarityResponse,
    SinksResponse,
)
from app.services import features as svc
from models.vision.norms import MAD_K

router = APIRouter(prefix="/api/vision/analysis/{analysis_id}", tags=["vision features"])
ERRORS = errors_doc(400, 404, 409, 503)
LayerQ = Annotated[
    int | None, Query(ge=0, description="0-based block; omit for the last layer after the final norm")
]
KQ = Annotated[float, Query(gt=0, le=100, description="outliers: norm > median + k * MAD")]


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


@router.get("/features", response_model=FeaturesPCAResponse, responses=ERRORS)
async def features_pca(
    state: StateDep,
    analysis_id: str,
    threshold: Annotated[
        float, Query(allow_inf_nan=False, description="foreground: first component > threshold")
    ] = 0.0,
    foreground_only: Annotated[bool, Query(description="fit the RGB PCA on the foreground only")] = True,
    flip: Annotated[bool, Query(description="flip the first component's sign")] = False,
) -> Response:
    """DINOv2 Fig. 1: the first PCA components of the last layer's patch features, as RGB."""
    a = state.vision_analysis(analysis_id)
    return _json(await svc.pca_view(state, analysis_id, a, threshold, foreground_only, flip))


@router.get("/similarity", response_model=SimilarityResponse, responses=ERRORS)
async def similarity(
    state: StateDep,
    analysis_id: str,
    patch: Annotated[int, Query(ge=0, description="0-based patch index, row-major")],
    layer: LayerQ = None,
) -> Response:
    """Cosine similarity of one patch's features to every patch's."""
    a = state.vision_analysis(analysis_id)
    return _json(await svc.similarity_view(state, analysis_id, a, patch, layer))


@router.get("/parts", response_model=PartsResponse, responses=ERRORS)
async def parts(
    state: StateDep,
    analysis_id: str,
    k: Annotated[int, Query(ge=2, le=svc.MAX_K)] = 4,
    seed: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    layer: LayerQ = None,
) -> Response:
    """K-means parts of the patch features (L2-normalised, k-means++ seeded, at most 100 iterations)."""
    a = state.vision_analysis(analysis_id)
    return _json(await svc.parts_view(state, analysis_id, a, k, seed, layer))


@router.get("/norms", response_model=NormsResponse, responses=ERRORS)
async def norms(state: StateDep, analysis_id: str, k: KQ = MAD_K) -> Response:
    """Per-layer token norms of the residual stream, with median + k * MAD outliers."""
    a = state.vision_analysis(analysis_id)
    return _json(await svc.norms_view(state, analysis_id, a, k))


@router.get("/sinks", response_model=SinksResponse, responses=ERRORS)
async def sinks(state: StateDep, analysis_id: str, k: KQ = MAD_K) -> Response:
    """Each head's attention to [CLS], registers and outlier patches; rollout and distance without them."""
    a = state.vision_analysis(analysis_id)
    vm = state.vision_store.get(a.model_id)
    return _json(await svc.sinks_view(state, analysis_id, a, vm.info.patch_size, k))
