"""ViT embeddings page and API: position-embedding similarity and patch-embedding PCA (ViT paper Fig. 7).

Numbers come from :mod:`models.vision.vit_embeddings`; this module only picks the model, caches the (P, P)
similarity per model (it depends on the weights alone) and encodes arrays for the browser.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Query

from app.deps import StateDep
from app.schemas.common import ErrorResponse
from app.schemas.vit_figures import PatchFiltersResponse, PositionSimilarityResponse
from app.serialization import typed_array
from app.state import AppState
from models.vision.vit_embeddings import (
    patch_embed_weight,
    patch_embedding_pca,
    patch_pos_embed,
    position_similarity_tiles,
)

router = APIRouter(tags=["vit-embeddings"])
ERRORS = {400: {"model": ErrorResponse}, 422: {"model": ErrorResponse}, 503: {"model": ErrorResponse}}
MAX_COMPONENTS = 64
SIM_CACHE_KEY = "vit_embeddings.similarity"


def _similarity(state: AppState, model_id: str | None) -> tuple[str, np.ndarray, tuple[int, int], int, int]:
    """(model id, (R, C, R, C) cosine tiles, grid, embed dim, prefix tokens), cached per model."""
    vm = state.vision_model(model_id)
    key = f"{SIM_CACHE_KEY}|{vm.info.id}"
    hit = state.views.get(key)
    if hit is not None:
        return hit
    try:
        emb, grid = patch_pos_embed(vm.model)  # (R*C, D), prefix rows already dropped
    except ValueError as e:
        raise HTTPException(400, f"Model {vm.info.id!r}: {e}.") from e
    tiles = state.queue.run_sync(position_similarity_tiles, emb, grid, 0)  # (R, C, R, C)
    value = (vm.info.id, tiles, grid, int(emb.shape[1]), vm.info.num_prefix_tokens)
    state.views.put(key, value)
    return value


@router.get(
    "/api/vit-embeddings/position-similarity", response_model=PositionSimilarityResponse, responses=ERRORS
)
def position_similarity(
    state: StateDep,
    model: Annotated[str | None, Query(description="an id from /api/models")] = None,
    stride: Annotated[int, Query(ge=1, le=64, description="show every stride-th row and column")] = 1,
    dtype: Annotated[Literal["u1", "f4"], Query(description="u1: quantised for display; f4: exact")] = "u1",
) -> PositionSimilarityResponse:
    """ViT Fig. 7 centre: cosine similarity between the learned position embeddings of all patch positions.

    One (R, C) tile per shown position; prefix tokens are left out. The grid is the one the embeddings
    are stored at (37 x 37 for DINOv2), not the grid of any particular input.
    """
    model_id, tiles, (rows, cols), dim, prefix = _similarity(state, model)
    tile_rows, tile_cols = list(range(0, rows, stride)), list(range(0, cols, stride))
    shown = tiles[np.ix_(tile_rows, tile_cols)]  # (R', C', R, C)
    flat = tiles.reshape(rows * cols, rows * cols)  # (P, P)
    off = flat[~np.eye(rows * cols, dtype=bool)] if rows * cols > 1 else flat.ravel()
    if dtype == "u1":
        q = np.clip(np.round((shown + 1.0) * 127.5), 0, 255).astype(np.uint8)  # cos in [-1, 1] -> 0..255
        encoded = typed_array(q, "u1")
    else:
        encoded = typed_array(shown, "f4")
    return PositionSimilarityResponse(
        model=model_id,
        rows=rows,
        cols=cols,
        embed_dim=dim,
        prefix_tokens_left_out=prefix,
        stride=stride,
        tile_rows=tile_rows,
        tile_cols=tile_cols,
        tiles=encoded,
        scale_min=-1.0,
        scale_max=1.0,
        min_off_diagonal=float(off.min()),
        max_off_diagonal=float(off.max()),
    )


@router.get("/api/vit-embeddings/patch-filters", response_model=PatchFiltersResponse, responses=ERRORS)
def patch_filters(
    state: StateDep,
    model: Annotated[str | None, Query(description="an id from /api/models")] = None,
    n_components: Annotated[int, Query(ge=1, le=MAX_COMPONENTS, description="principal components")] = 28,
) -> PatchFiltersResponse:
    """ViT Fig. 7 left: the top principal components of the patch-embedding filters, as RGB tiles."""
    vm = state.vision_model(model)
    try:
        weight = patch_embed_weight(vm.model)  # (D, 3, p, p)
        pca = state.queue.run_sync(patch_embedding_pca, weight, n_components)
    except ValueError as e:
        raise HTTPException(400, f"Model {vm.info.id!r}: {e}.") from e
    return PatchFiltersResponse(
        model=vm.info.id,
        patch_size=int(weight.shape[-1]),
        embed_dim=int(weight.shape[0]),
        n_components=n_components,
        rgb_tiles=typed_array(pca.rgb_tiles, "u1"),
        components=typed_array(pca.components, "f4"),
        explained_variance_ratio=typed_array(pca.explained_variance_ratio, "f8"),
    )
