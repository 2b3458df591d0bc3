"""The model deployments' replica classes: each replica holds one model family and runs its forwards.

A replica builds its own :class:`app.state.AppState` from the operator's settings, so it loads exactly the
allowlisted models, on the device and in the dtype the settings name (``num_gpus_per_replica`` > 0 gives
it a GPU), through the same code as ``make run``. Forwards run one at a time per replica on a worker
thread (the replica's event loop stays free for Serve's health checks); Serve admits at most
``max_ongoing_requests`` per replica and queues at most ``max_queued_requests`` in each caller.

Errors meant for the user (a text over the model's token limit, an image the model cannot take) come
back as a :class:`Failure` value rather than an exception, so the ingress can answer them with their
status instead of a wrapped Ray error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from PIL import Image

from app.images import ImageError
from app.services.errors import ServiceError
from app.services.text import preload, text_model
from app.settings import Settings
from app.state import AppState, InvalidOption, UnknownModel
from models.text.analysis import TextAnalysis, TextInputError
from models.vision.analysis import VisionAnalysis, analyze_image

T = TypeVar("T")


@dataclass(frozen=True)
class Failure:
    """A user-facing error raised in a replica: the ingress re-raises it as ``ServiceError(status, message)``."""

    status: int
    message: str


def _failure(e: Exception) -> Failure:
    if isinstance(e, ServiceError | ImageError):
        return Failure(e.status, str(e))
    if isinstance(e, TextInputError):
        return Failure(422, str(e))
    return Failure(400, str(e))  # UnknownModel, InvalidOption (anything else is a 500, as locally)


class ModelReplica:
    """Shared by both families: the replica's own AppState and its single forward thread."""

    def __init__(self, settings: Settings) -> None:
        self.state = AppState.create(settings)
        self._forward = ThreadPoolExecutor(max_workers=1, thread_name_prefix="atlas-forward")

    async def _run(self, fn: Callable[..., T], *args: Any) -> T | Failure:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._forward, fn, *args)
        except (ServiceError, ImageError, TextInputError, UnknownModel, InvalidOption) as e:
            return _failure(e)

    async def device(self) -> str:
        return f"{self.state.device} {self.state.dtype}".replace("torch.", "")

    def __del__(self) -> None:
        self._forward.shutdown(wait=False, cancel_futures=True)


class VisionModels(ModelReplica):
    """Vision forwards (ViT / DINOv2 attention capture) for the ingress's ``/api/vision/analyze``."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        if settings.preload:
            self.state.vision_model(settings.default_vision_model)

    async def forward(
        self, model_id: str, image: Image.Image, resolution: int
    ) -> tuple[VisionAnalysis, float] | Failure:
        """(analysis, forward ms) of one image at ``resolution``."""
        return await self._run(self._analyze, model_id, image, resolution)

    def _analyze(self, model_id: str, image: Image.Image, resolution: int) -> tuple[VisionAnalysis, float]:
        vm, res = self.state.vision_model_at(model_id, resolution)
        t0 = time.perf_counter()
        analysis = analyze_image(vm, image, res)
        return analysis, max((time.perf_counter() - t0) * 1000, 1e-3)


class TextModels(ModelReplica):
    """Text forwards (encoder, causal and encoder-decoder attention capture) for ``/api/text/analyze``."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        if settings.preload:
            preload(self.state)

    async def forward(self, model_id: str, text: str, target: str | None) -> TextAnalysis | Failure:
        return await self._run(self._analyze, model_id, text, target)

    def _analyze(self, model_id: str, text: str, target: str | None) -> TextAnalysis:
        return text_model(self.state, model_id).analyze(text, target)
