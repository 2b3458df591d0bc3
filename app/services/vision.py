"""Vision service: analyse an image once, then serve views of the cached analysis.

Budgets (README "Resource model"):

- hashing big uploads and decoding run in the CPU pool (``state.cpu``), decodes under
  ``state.decode_slots``; an analysis that is cached already needs no decode at all;
- the forward pass runs on the backend (``state.backend``, app/backend: the compute queue, batched when
  batching is on, or a Ray deployment) with ``key`` = the analysis id, so identical in-flight requests
  (same image + model + resolution) share one forward;
- derived views (rollout with options, patch queries, the analysis image) run in the CPU pool and are cached
  in ``state.views`` per (analysis id, options); identical in-flight views are merged by their key.

Ids are keyed hashes (``state.keyed_id``) of the content: ``image_hash`` of the upload's sha256, the
analysis id of (image_hash, model, resolution). The same image gives the same ids on this server
(dedup, permalinks), and nobody can compute someone else's id offline.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from PIL import Image

from app.images import ImageError, content_hash
from app.schemas.vision_views import entropy_response
from app.services.images import decode_bounded, sample_bytes, sample_hashes
from app.services.views import cached_json, cached_view, compute_view  # noqa: F401 (re-exported)
from app.state import AppState
from models.vision import views
from models.vision.analysis import VisionAnalysis, VisionModel
from models.vision.rollout import HeadFusion

T = TypeVar("T")
HASH_INLINE_BYTES = 256 * 1024  # bigger uploads are hashed in the CPU pool, not on the event loop


@dataclass(frozen=True)
class Analyzed:
    """What ``/api/vision/analyze`` answers with."""

    analysis_id: str
    image_hash: str
    analysis: VisionAnalysis
    rollout: np.ndarray  # (P,) float32 with the requested options
    forward_ms: float
    cached: bool  # internal only: public responses never say whether someone else asked first


async def model_at(state: AppState, model: str | None, resolution: int | None) -> tuple[VisionModel, int]:
    """The allowlisted model and a resolution it takes (:class:`app.store.VisionStore`: a first load runs
    off the event loop, merged per id; unknown ids and resolutions fail at once)."""
    return await state.vision_store.get_at_async(model, resolution)


def image_id(state: AppState, sha256: str) -> str:
    """``image_hash``: the keyed id of an image's bytes."""
    return state.keyed_id("image", sha256)


def analysis_id(state: AppState, image_hash: str, model_id: str, resolution: int) -> str:
    return state.keyed_id("vision-analysis", image_hash, model_id, str(resolution))


async def analyze(
    state: AppState,
    vm: VisionModel,
    resolution: int,
    *,
    data: bytes | None = None,
    sample: str | None = None,
    image_hash: str | None = None,
    head_fusion: HeadFusion = "mean",
    discard_ratio: float = 0.0,
) -> Analyzed:
    """Analyse uploaded bytes, a sample photo or an earlier upload (exactly one of them).

    Raises :class:`ImageError` (400 unknown sample, 404 image no longer cached, or the decoder's 4xx) and
    :class:`app.compute.Busy` when the pool or the queue is full."""
    if sample is not None:
        if sample_bytes.cache_info().currsize == 0:  # first use: load and encode them off the event loop
            await state.cpu.run(sample_hashes, key="sample-images")
        data = sample_bytes().get(sample)
        if data is None:
            names = ", ".join(sample_bytes())
            raise ImageError(f"No sample image named {sample!r}. Available: {names}.")
        image_hash = image_id(state, sample_hashes()[sample])
    elif data is not None:
        digest = (
            content_hash(data) if len(data) <= HASH_INLINE_BYTES else await state.cpu.run(content_hash, data)
        )
        image_hash = image_id(state, digest)
    if image_hash is None:
        raise ValueError("give data, sample or image_hash")
    aid = analysis_id(state, image_hash, vm.info.id, resolution)
    analysis, cached, forward_ms = state.analyses.get(aid), True, 0.0
    if analysis is None:
        image = state.images.get(image_hash)
        if image is None:
            if data is None:
                raise ImageError("That image is no longer cached on the server; please upload it again.", 404)
            image = await state.cpu.run(
                _decode_and_cache, state, data, image_hash, key=f"decode:{image_hash}"
            )
        analysis, forward_ms = await state.backend.vision_forward(
            vm, image, resolution, key=aid, cache=state.analyses
        )
        cached = forward_ms == 0.0
    # responses carry the first forward's time, so they do not tell who asked first (issue 17)
    if forward_ms > 0.0:
        state.views.put(("forward-ms", aid), forward_ms)
    else:
        forward_ms = state.views.get(("forward-ms", aid)) or 0.0
    if head_fusion == "mean" and discard_ratio == 0.0:
        roll = analysis.rollout
    else:
        roll = await rollout_view(state, aid, analysis, head_fusion, discard_ratio)
    return Analyzed(aid, image_hash, analysis, roll, forward_ms, cached)


def _decode_and_cache(state: AppState, data: bytes, image_hash: str) -> Image.Image:
    image = state.images.get(image_hash)
    if image is None:
        image = decode_bounded(data, state.settings, state.decode_slots).image
        state.images.put(image_hash, image)
    return image


# ----------------------------------------------------------------------------------------------------------
# Derived views: CPU pool, cached per (analysis id, options)


def rollout_map(analysis: VisionAnalysis, head_fusion: HeadFusion, discard_ratio: float) -> np.ndarray:
    """CPU-pool job: (P,) float32 rollout from the cached maps (:func:`models.vision.views.rollout`)."""
    return views.rollout(analysis, head_fusion, discard_ratio)


async def rollout_view(
    state: AppState, aid: str, analysis: VisionAnalysis, head_fusion: HeadFusion, discard_ratio: float
) -> np.ndarray:
    if head_fusion == "mean" and discard_ratio == 0.0:
        return analysis.rollout
    key = ("rollout", aid, head_fusion, repr(float(discard_ratio)))
    return await cached_view(state, key, rollout_map, analysis, head_fusion, discard_ratio)


def patch_map(analysis: VisionAnalysis, layer: int, head: int | None, query: int) -> np.ndarray:
    """(rows, cols) float32: where patch ``query`` attends; IndexError for an index out of range."""
    return views.patch_map(analysis, layer, head, query)  # (R, C)


async def patch_view(
    state: AppState, aid: str, analysis: VisionAnalysis, layer: int, head: int | None, query: int
) -> np.ndarray:
    return await cached_view(
        state, ("patch", aid, layer, head, query), patch_map, analysis, layer, head, query
    )


def patch_rows_map(analysis: VisionAnalysis, query: int) -> np.ndarray:
    """(L, H, rows, cols) float32: a clicked patch's row in every layer and head (:func:`views.patch_rows`;
    recomputed from the residual stream at 448 and 518 px, a slice of the full maps at 224)."""
    return views.patch_rows(analysis, query)


async def patch_rows_view(state: AppState, aid: str, analysis: VisionAnalysis, query: int) -> np.ndarray:
    return await cached_view(state, ("patch-rows", aid, query), patch_rows_map, analysis, query)


def image_png(analysis: VisionAnalysis) -> bytes:
    """The R x R image the model saw, as PNG bytes."""
    buf = io.BytesIO()
    analysis.image.save(buf, format="PNG")
    return buf.getvalue()


async def image_view(state: AppState, aid: str, analysis: VisionAnalysis) -> bytes:
    return await cached_view(state, ("image.png", aid), image_png, analysis)


async def entropy_view(
    state: AppState, aid: str, vm: VisionModel, analysis: VisionAnalysis, layer: int, head: int | None
) -> bytes:
    """The entropy map of one layer and head (or the head mean) as EntropyResponse JSON. The (L, H, P)
    entropies of every layer and head (:func:`models.vision.views.patch_entropy`) are computed once per
    analysis in the CPU pool and cached; each (layer, head) response is cached as JSON bytes."""
    entropy = await cached_view(state, ("entropy", aid), views.patch_entropy, analysis)  # (L, H, P)
    key = ("entropy-map", aid, layer, "mean" if head is None else head)
    return await cached_json(state, key, entropy_response, aid, vm.info, analysis, entropy, layer, head)
