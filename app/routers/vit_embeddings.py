"""ViT embeddings API: position-embedding similarity and patch-embedding PCA (ViT paper Fig. 7).

Routes parse and validate, then call :mod:`app.services.embeddings` (CPU pool, JSON cached per
model/options) and return its bytes as they are (``response_model`` documents them).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response

from app.deps import ModelQuery, StateDep
from app.errors import errors_doc
from app.schemas.vit_figures import PatchFiltersResponse, PositionSimilarityResponse
from app.services import embeddings
from app.services.embeddings import MAX_COMPONENTS

router = APIRouter(tags=["vit-embeddings"])
ERRORS = errors_doc(400, 422, 503)


@router.get(
    "/api/vit-embeddings/position-similarity", response_model=PositionSimilarityResponse, responses=ERRORS
)
async def position_similarity(
    state: StateDep,
    model: ModelQuery = None,
    stride: Annotated[int, Query(ge=1, le=64, description="show every stride-th row and column")] = 1,
    dtype: Annotated[Literal["u1", "f4"], Query(description="u1: quantised for display; f4: exact")] = "u1",
) -> Response:
    """ViT Fig. 7 centre: cosine similarity between the learned position embeddings of all patch positions.

    One (R, C) tile per shown position; prefix tokens are left out. The grid is the one the embeddings
    are stored at (37 x 37 for DINOv2), not the grid of any particular input.
    """
    body = await embeddings.position_similarity(state, model, stride, dtype)
    return Response(body, media_type="application/json")


@router.get("/api/vit-embeddings/patch-filters", response_model=PatchFiltersResponse, responses=ERRORS)
async def patch_filters(
    state: StateDep,
    model: ModelQuery = None,
    n_components: Annotated[int, Query(ge=1, le=MAX_COMPONENTS, description="principal components")] = 28,
) -> Response:
    """ViT Fig. 7 left: the top principal components of the patch-embedding filters, as RGB tiles."""
    body = await embeddings.patch_filters(state, model, n_components)
    return Response(body, media_type="application/json")
