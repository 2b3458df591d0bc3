"""ViT embeddings (ViT paper Fig. 7 left and centre): position-embedding similarity and patch-filter PCA
(framework-free).

Numbers come from :mod:`models.vision.vit_embeddings`. Everything derived runs in the CPU pool and is
cached in ``state.views``: the (R, C, R, C) similarity per model (it depends on the weights alone), each
encoded response per (model, options), and each PCA per (model, n_components). A model that is not loaded
yet is loaded in the model queue.
"""

from __future__ import annotations

import numpy as np

from app.schemas.vit_figures import PatchFiltersResponse, PositionSimilarityResponse
from app.serialization import typed_array
from app.services.views import cached_json, compute_view
from app.state import AppState, InvalidOption
from models.vision.analysis import VisionModel
from models.vision.vit_embeddings import (
    patch_embed_weight,
    patch_embedding_pca,
    patch_pos_embed,
    position_similarity_tiles,
)

MAX_COMPONENTS = 64


async def _vision_model(state: AppState, model_id: str | None) -> VisionModel:
    """The allowlisted model; a first load runs in the model queue (merged per model id)."""
    model_id = model_id or state.settings.models.default_vision_model
    if model_id in state.loaded_vision_models():
        return state.vision_model(model_id)
    return await state.queue.run(state.vision_model, model_id, key=f"vision-model|{model_id}")


def similarity_tiles(vm: VisionModel) -> tuple[np.ndarray, tuple[int, int], int]:
    """((R, C, R, C) float32 cosine tiles, grid, embed dim) of the model's stored position embeddings."""
    try:
        emb, grid = patch_pos_embed(vm.model)  # (R*C, D), prefix rows already dropped
    except ValueError as e:
        raise InvalidOption(f"Model {vm.info.id!r}: {e}.") from e
    return position_similarity_tiles(emb, grid, 0), grid, int(emb.shape[1])  # (R, C, R, C)


def build_position_similarity(
    state: AppState, vm: VisionModel, stride: int, dtype: str
) -> PositionSimilarityResponse:
    """CPU-pool job: every stride-th tile, quantised (u1) or exact (f4); the tiles are cached per model."""
    tiles, (rows, cols), dim = compute_view(state, f"vit-sim-tiles|{vm.info.id}", similarity_tiles, (vm,))
    tile_rows, tile_cols = list(range(0, rows, stride)), list(range(0, cols, stride))
    shown = tiles[np.ix_(tile_rows, tile_cols)]  # (R', C', R, C)
    flat = tiles.reshape(rows * cols, rows * cols)  # (P, P)
    off = flat[~np.eye(rows * cols, dtype=bool)] if rows * cols > 1 else flat.ravel()  # (P * (P - 1),)
    if dtype == "u1":
        q = np.clip(np.round((shown + 1.0) * 127.5), 0, 255).astype(np.uint8)  # cos in [-1, 1] -> 0..255
        encoded = typed_array(q, "u1")
    else:
        encoded = typed_array(shown, "f4")
    return PositionSimilarityResponse(
        model=vm.info.id,
        rows=rows,
        cols=cols,
        embed_dim=dim,
        prefix_tokens_left_out=vm.info.num_prefix_tokens,
        stride=stride,
        tile_rows=tile_rows,
        tile_cols=tile_cols,
        tiles=encoded,
        scale_min=-1.0,
        scale_max=1.0,
        min_off_diagonal=float(off.min()),
        max_off_diagonal=float(off.max()),
    )


async def position_similarity(state: AppState, model_id: str | None, stride: int, dtype: str) -> bytes:
    """ViT Fig. 7 centre (PositionSimilarityResponse JSON), from the view cache or the CPU pool."""
    vm = await _vision_model(state, model_id)
    key = f"vit-sim|{vm.info.id}|{stride}|{dtype}"
    return await cached_json(state, key, build_position_similarity, state, vm, stride, dtype)


def build_patch_filters(vm: VisionModel, n_components: int) -> PatchFiltersResponse:
    """CPU-pool job: the top principal components of the patch-embedding filters, as RGB tiles."""
    try:
        weight = patch_embed_weight(vm.model)  # (D, 3, p, p)
        pca = patch_embedding_pca(weight, n_components)
    except ValueError as e:
        raise InvalidOption(f"Model {vm.info.id!r}: {e}.") from e
    return PatchFiltersResponse(
        model=vm.info.id,
        patch_size=int(weight.shape[-1]),
        embed_dim=int(weight.shape[0]),
        n_components=n_components,
        rgb_tiles=typed_array(pca.rgb_tiles, "u1"),
        components=typed_array(pca.components, "f4"),
        explained_variance_ratio=typed_array(pca.explained_variance_ratio, "f8"),
    )


async def patch_filters(state: AppState, model_id: str | None, n_components: int) -> bytes:
    """ViT Fig. 7 left (PatchFiltersResponse JSON), from the view cache or the CPU pool."""
    vm = await _vision_model(state, model_id)
    key = f"vit-pca|{vm.info.id}|{n_components}"
    return await cached_json(state, key, build_patch_filters, vm, n_components)
