"""Vision service: analyse an image once, then serve views of the cached analysis.

Budgets (README "Resource model"):

- hashing big uploads and decoding run in the CPU pool (``state.cpu``), decodes under
  ``state.decode_slots``; an analysis that is cached already needs no decode at all;
- the forward pass runs in the compute queue (``state.queue``) with ``key`` = the analysis id, so identical
  in-flight requests (same image + model + resolution) share one forward, and ``cost`` = the bytes of the
  decoded image it holds while waiting; with batching on (``settings.batching.mode``, app/batching.py) the image is
  preprocessed in the CPU pool and concurrent forwards of one (model, resolution) run as one batch, each
  request still admitted, merged and costed in the queue on its own;
- derived views (rollout with options, patch queries, the analysis image) run in the CPU pool and are cached
  in ``state.views`` per (analysis id, options); identical in-flight views are merged by their key.

Ids are keyed hashes (``state.keyed_id``) of the content: ``image_hash`` of the upload's sha256, the
analysis id of (image_hash, model, resolution). The same image gives the same ids on this server
(dedup, permalinks), and nobody can compute someone else's id offline.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from PIL import Image

from app.batching import analyze_batched, vision_batcher
from app.images import ImageError, content_hash
from app.services.backend import remote_models
from app.services.images import decode_bounded, sample_bytes, sample_hashes
from app.services.views import cached_json, cached_view, compute_view  # noqa: F401 (re-exported)
from app.state import AppState
from models.vision.analysis import VisionAnalysis, VisionModel, analyze_image
from models.vision.rollout import HeadFusion, attention_rollout

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
    cached: bool


async def model_at(state: AppState, model: str | None, resolution: int | None) -> tuple[VisionModel, int]:
    """The allowlisted model and a resolution it takes. A model not loaded yet loads in the CPU pool (once:
    concurrent first requests share the load), so the event loop never blocks on it and a long queue of
    forwards does not delay it; unknown ids fail at once."""
    model_id = model or state.settings.models.default_vision_model
    if model_id in state.loaded_vision_models() or model_id not in state.settings.models.vision_specs():
        return state.vision_model_at(model_id, resolution)  # raises UnknownModel / InvalidOption
    return await state.cpu.run(
        state.vision_model_at, model_id, resolution, key=f"load-vision:{model_id}:{resolution}"
    )


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
        remote = remote_models(state)
        batcher = vision_batcher(state) if remote is None else None  # app/batching.py: same queue budget
        if remote is not None:  # ray backend: the forward runs in a VisionModels replica
            analysis, forward_ms = await remote.vision_forward(vm.info.id, image, resolution, f"vision:{aid}")
            state.analyses.put(aid, analysis)
        elif batcher is not None:
            analysis, forward_ms = await analyze_batched(state, batcher, vm, image, resolution, aid)
        else:
            analysis, forward_ms = await state.queue.run(
                _forward_and_cache,
                state,
                vm,
                image,
                resolution,
                aid,
                key=f"vision:{aid}",
                cost=3 * image.width * image.height,
            )
        cached = forward_ms == 0.0
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


def _forward_and_cache(
    state: AppState, vm: VisionModel, image: Image.Image, resolution: int, aid: str
) -> tuple[VisionAnalysis, float]:
    """(analysis, forward ms; 0 when another request had just cached it)."""
    analysis = state.analyses.get(aid)
    if analysis is not None:
        return analysis, 0.0
    t0 = time.perf_counter()
    analysis = analyze_image(vm, image, resolution)
    forward_ms = max((time.perf_counter() - t0) * 1000, 1e-3)
    state.analyses.put(aid, analysis)
    return analysis, forward_ms


# ----------------------------------------------------------------------------------------------------------
# Derived views: CPU pool, cached per (analysis id, options)


def rollout_map(analysis: VisionAnalysis, head_fusion: HeadFusion, discard_ratio: float) -> np.ndarray:
    """(P,) float32 rollout from the cached (L, H, N, N) float16 maps, one layer at a time in float32."""
    with torch.inference_mode():
        r = attention_rollout(
            analysis.attentions, head_fusion, discard_ratio, analysis.num_prefix_tokens, analysis.has_cls
        )
    return r.numpy()


async def rollout_view(
    state: AppState, aid: str, analysis: VisionAnalysis, head_fusion: HeadFusion, discard_ratio: float
) -> np.ndarray:
    if head_fusion == "mean" and discard_ratio == 0.0:
        return analysis.rollout
    key = ("rollout", aid, head_fusion, repr(float(discard_ratio)))
    return await cached_view(state, key, rollout_map, analysis, head_fusion, discard_ratio)


def patch_map(analysis: VisionAnalysis, layer: int, head: int | None, query: int) -> np.ndarray:
    """(rows, cols) float32: where patch ``query`` attends; IndexError for an index out of range."""
    return analysis.patch_attention(layer, head, query).reshape(analysis.grid)  # (P,) -> (R, C)


async def patch_view(
    state: AppState, aid: str, analysis: VisionAnalysis, layer: int, head: int | None, query: int
) -> np.ndarray:
    return await cached_view(
        state, ("patch", aid, layer, head, query), patch_map, analysis, layer, head, query
    )


def image_png(analysis: VisionAnalysis) -> bytes:
    """The R x R image the model saw, as PNG bytes."""
    buf = io.BytesIO()
    analysis.image.save(buf, format="PNG")
    return buf.getvalue()


async def image_view(state: AppState, aid: str, analysis: VisionAnalysis) -> bytes:
    return await cached_view(state, ("image.png", aid), image_png, analysis)
