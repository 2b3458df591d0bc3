"""The model deployments' replica classes: each replica holds one model family and runs its forwards.

A replica builds its own :class:`app.state.AppState` from the operator's settings, so it loads exactly the
allowlisted models, on the device and in the dtype the settings name (``num_gpus_per_replica`` > 0 gives
it a GPU), through the same code as ``make run``. Forwards run one at a time per replica on a worker
thread (the replica's event loop stays free for Serve's health checks); Serve admits at most
``max_ongoing_requests`` per replica and queues at most ``max_queued_requests`` in each caller.

Errors meant for the user (the :mod:`app.services.errors` family: a text over the model's token limit, an
unknown model, a resolution the model cannot take) come back as a :class:`Failure` value holding the
exception itself rather than as a raised one (which Ray would wrap), and the ingress re-raises it unchanged.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from PIL import Image
from ray import serve

from app.batching import batching_enabled
from app.services.errors import ServiceError, TextError
from app.services.text import preload, text_model
from app.settings import Settings
from app.state import AppState
from models.text.analysis import TextAnalysis, TextInputError
from models.vision.analysis import VisionAnalysis, analyze_images

T = TypeVar("T")


@dataclass(frozen=True)
class Failure:
    """A user-facing error raised in a replica; the ingress re-raises ``error`` (same class and status)."""

    error: ServiceError


class ModelReplica:
    """Shared by both families: the replica's own AppState and its single forward thread."""

    def __init__(self, settings: Settings) -> None:
        self.state = AppState.create(settings)
        self._forward = ThreadPoolExecutor(max_workers=1, thread_name_prefix="atlas-forward")

    async def _run(self, fn: Callable[..., T], *args: Any) -> T | Failure:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._forward, fn, *args)
        except ServiceError as e:  # anything else is a 500, as locally
            return Failure(e)

    async def device(self) -> str:
        return f"{self.state.device} {self.state.dtype}".replace("torch.", "")

    def __del__(self) -> None:
        self._forward.shutdown(wait=False, cancel_futures=True)


class VisionModels(ModelReplica):
    """Vision forwards (ViT / DINOv2 attention capture) for the ingress's ``/api/vision/analyze``.

    With batching on for the replica's device (``settings.batching.mode``: ``auto`` = CUDA only), concurrent
    single-image forwards are collected by Serve's own ``@serve.batch`` (at most ``batch_max_size`` images,
    waiting at most ``batch_wait_ms`` for company) and run as one batched forward per (model, resolution),
    the cluster counterpart of the local :class:`app.batching.MicroBatcher`."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.batching = batching_enabled(settings.batching.mode, self.state.device)
        self.batches: list[int] = []  # sizes of the batched forwards run (tests, bench)
        if self.batching:
            self._batched.set_max_batch_size(settings.batching.max_size)
            self._batched.set_batch_wait_timeout_s(settings.batching.wait_ms / 1000)
        if settings.server.preload:
            self.state.vision_model(settings.models.default_vision_model)

    async def forward(
        self, model_id: str, image: Image.Image, resolution: int
    ) -> tuple[VisionAnalysis, float] | Failure:
        """(analysis, forward ms) of one image at ``resolution``."""
        if self.batching:
            return await self._batched(model_id, image, resolution)
        return (await self._in_thread(self._analyze, [model_id], [image], [resolution]))[0]

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.002)  # reset from the settings in __init__
    async def _batched(
        self, model_ids: list[str], images: list[Image.Image], resolutions: list[int]
    ) -> list[tuple[VisionAnalysis, float] | Failure]:
        return await self._in_thread(self._analyze, model_ids, images, resolutions)

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """On the forward thread; user errors are per request inside ``_analyze``, anything else (out of
        memory, a bug) reaches every caller of the batch as the exception it is."""
        return await asyncio.get_running_loop().run_in_executor(self._forward, fn, *args)

    def _analyze(
        self, model_ids: list[str], images: list[Image.Image], resolutions: list[int]
    ) -> list[tuple[VisionAnalysis, float] | Failure]:
        """One batched forward per (model, resolution) group; a request whose model or resolution is
        refused gets its own :class:`Failure` and the rest of the batch still runs."""
        out: list[tuple[VisionAnalysis, float] | Failure | None] = [None] * len(images)
        groups: dict[tuple[str, int], list[int]] = {}
        for i, (model_id, resolution) in enumerate(zip(model_ids, resolutions, strict=True)):
            groups.setdefault((model_id, resolution), []).append(i)
        for (model_id, resolution), idx in groups.items():
            try:
                vm, res = self.state.vision_model_at(model_id, resolution)
                t0 = time.perf_counter()
                analyses = analyze_images(vm, [images[i] for i in idx], res)
            except ServiceError as e:
                for i in idx:
                    out[i] = Failure(e)
                continue
            ms = max((time.perf_counter() - t0) * 1000, 1e-3)
            self.batches.append(len(idx))
            for i, analysis in zip(idx, analyses, strict=True):
                out[i] = (analysis, ms)
        return out  # type: ignore[return-value]

    async def batch_sizes(self) -> list[int]:
        return list(self.batches)


class TextModels(ModelReplica):
    """Text forwards (encoder, causal and encoder-decoder attention capture) for ``/api/text/analyze``."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        if settings.server.preload:
            preload(self.state)

    async def forward(self, model_id: str, text: str, target: str | None) -> TextAnalysis | Failure:
        return await self._run(self._analyze, model_id, text, target)

    def _analyze(self, model_id: str, text: str, target: str | None) -> TextAnalysis:
        try:
            return text_model(self.state, model_id).analyze(text, target)
        except TextInputError as e:  # as the local backend answers it (app/services/text.py)
            raise TextError(str(e)) from e
