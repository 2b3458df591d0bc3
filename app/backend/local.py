"""The local backend: model work in this process's compute queue (``app/compute.py``), through the
micro-batcher (``app/batching.py``) when batching is on for the device.

Every request still goes through ``queue.submit`` itself, so the queue's budget holds either way: its own
slot and declared cost (a full queue is :class:`app.compute.QueueFull`, 503 at once), and identical
in-flight keys merged into one future. With batching on, the image is preprocessed in the CPU pool first,
so the worker only stacks and runs (:func:`app.batching.forward_group`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import torch
from PIL import Image

from app.batching import MicroBatcher, batching_enabled, forward_group
from app.cache import BoundedCache
from app.compute import Busy, ComputeQueue, CpuPool
from app.services.errors import TextError
from app.settings import Settings
from models.text.analysis import TextAnalysis, TextInputError, TextModel
from models.vision.analysis import VisionAnalysis, VisionModel, analyze_image
from models.vision.distance import BatchMad, Cancelled, SubmitFn, batch_mad

VisionCache = BoundedCache[VisionAnalysis]  # analysis id -> analysis (state.analyses)
TextCache = BoundedCache[TextAnalysis]  # (state.text_analyses)
BUSY_POLL_S = 0.2  # a dataset job waiting for the queue retries this often (and checks cancel)


@dataclass(frozen=True)
class VisionRequest:
    """One analysis to compute: preprocessed on the CPU pool, so the worker only stacks and runs."""

    vm: VisionModel
    aid: str
    x: torch.Tensor  # (1, 3, R, R) float32 on the CPU
    shown: Image.Image  # the R x R image the model sees
    cache: BoundedCache[VisionAnalysis] | None = None


def run_vision_batch(_group: Hashable, reqs: Sequence[VisionRequest]) -> list[tuple[VisionAnalysis, float]]:
    """The batcher's job: (analysis, forward ms) per request; those cached meanwhile as they are (0 ms), the
    others from one batched forward (each reports the batch's ms: what it waited for), cached as they come
    out."""
    out: list[tuple[VisionAnalysis, float] | None] = []
    todo: list[int] = []
    for i, r in enumerate(reqs):
        cached = r.cache.get(r.aid) if r.cache is not None else None
        out.append(None if cached is None else (cached, 0.0))
        if cached is None:
            todo.append(i)
    if todo:
        analyses, ms = forward_group(
            reqs[todo[0]].vm, [reqs[i].x for i in todo], [reqs[i].shown for i in todo]
        )
        for i, analysis in zip(todo, analyses, strict=True):
            if reqs[i].cache is not None:
                reqs[i].cache.put(reqs[i].aid, analysis)
            out[i] = (analysis, ms)
    return out  # type: ignore[return-value]


def _forward_and_cache(
    vm: VisionModel, image: Image.Image, resolution: int, aid: str, cache: BoundedCache[VisionAnalysis]
) -> tuple[VisionAnalysis, float]:
    """Queue job: (analysis, forward ms; 0 when another request had just cached it)."""
    analysis = cache.get(aid)
    if analysis is not None:
        return analysis, 0.0
    t0 = time.perf_counter()
    analysis = analyze_image(vm, image, resolution)
    forward_ms = max((time.perf_counter() - t0) * 1000, 1e-3)
    cache.put(aid, analysis)
    return analysis, forward_ms


def _text_forward(
    model: TextModel, aid: str, text: str, target: str | None, cache: BoundedCache[TextAnalysis]
) -> TextAnalysis:
    """Queue job: one captured forward, stored before the merged waiters wake up."""
    a = cache.get(aid)  # a merged twin may have finished just before this job started
    if a is None:
        try:
            a = model.analyze(text, target)
        except TextInputError as e:  # checked before queueing; kept for models whose limits move
            raise TextError(str(e)) from e
        cache.put(aid, a)
    return a


def wait_for_room(fn: Callable[[], object], cancel: threading.Event, what: str) -> object:
    """Run ``fn`` (which submits to a bounded executor); while that is full, retry (cancellable)."""
    while True:
        if cancel.is_set():
            raise Cancelled(f"cancelled while waiting for {what}")
        try:
            return fn()
        except Busy:
            cancel.wait(BUSY_POLL_S)


def image_cost(image: Image.Image) -> int:
    """Bytes a waiting vision request holds: its decoded RGB image (the queue's ``cost``)."""
    return 3 * image.width * image.height


class LocalBackend:
    """:class:`app.backend.ModelBackend` over a compute queue (and a CPU pool for batch preprocessing)."""

    name = "local"
    dataset_window = 1  # one batch at a time, so single-image requests interleave batch by batch

    def __init__(
        self,
        queue: ComputeQueue,
        cpu: CpuPool,
        batching: bool = False,
        max_size: int = 16,
        wait_ms: float = 2.0,
    ) -> None:
        self.queue, self.cpu = queue, cpu
        self.batcher: MicroBatcher[VisionRequest, tuple[VisionAnalysis, float]] | None = (
            MicroBatcher(queue, run_vision_batch, max_size=max_size, wait_ms=wait_ms) if batching else None
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, queue: ComputeQueue, cpu: CpuPool, device: torch.device
    ) -> LocalBackend:
        on = batching_enabled(settings.batching.mode, device)  # auto: on for CUDA, off on the CPU
        return cls(queue, cpu, on, settings.batching.max_size, settings.batching.wait_ms)

    async def vision_forward(
        self, vm: VisionModel, image: Image.Image, resolution: int, *, key: str, cache: VisionCache
    ) -> tuple[VisionAnalysis, float]:
        cost = image_cost(image)
        if self.batcher is None:
            return await self.queue.run(
                _forward_and_cache, vm, image, resolution, key, cache, key=f"vision:{key}", cost=cost
            )
        x, shown = await self.cpu.run(vm.preprocess, image, resolution, key=f"preprocess:{key}")
        request = VisionRequest(vm, key, x, shown, cache)
        cost += x.numel() * x.element_size()
        return await self.batcher.run((vm.info.id, resolution), request, key=f"vision:{key}", cost=cost)

    async def text_forward(
        self, model: TextModel, text: str, target: str | None, *, key: str, cache: TextCache, cost: int = 0
    ) -> TextAnalysis:
        return await self.queue.run(_text_forward, model, key, text, target, cache, key=key, cost=cost)

    def dataset_submit(
        self, vm: VisionModel, resolution: int, renormalize: bool, cancel: threading.Event
    ) -> SubmitFn:
        def submit(x: torch.Tensor) -> Future[BatchMad]:
            return wait_for_room(  # type: ignore[return-value]
                lambda: self.queue.submit(batch_mad, vm, x, resolution, renormalize), cancel, "the model"
            )

        return submit

    async def replicas(self) -> None:
        return None

    def close(self) -> None:
        """Nothing of its own: the queue and the pool belong to the state."""
