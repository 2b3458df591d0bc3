"""The model deployments' replica classes: each replica holds one model family and runs its forwards.

A replica builds its own model store (:mod:`app.store`) from the operator's settings, so it loads exactly
the allowlisted models, on the device and in the dtype the settings name (``num_gpus_per_replica`` > 0
gives it a GPU), through the same code as ``make run``. Forwards run one at a time per replica on a worker
thread (the replica's event loop stays free for Serve's health checks); Serve admits at most
``max_ongoing_requests`` per replica and queues at most ``max_queued_requests`` in each caller.

Errors meant for the user (the :mod:`app.services.errors` family: a text over the model's token limit, an
unknown model, a resolution the model cannot take) come back as a :class:`Failure` value holding the
exception itself rather than as a raised one (which Ray would wrap), and the ingress re-raises it unchanged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from PIL import Image
from ray import serve

from app.batching import batching_enabled, forward_group
from app.compute import lower_priority
from app.services.errors import ServiceError, TextError
from app.settings import Settings
from app.store import text_store, vision_store
from models.devices import resolve_device, resolve_dtype
from models.text.analysis import TextAnalysis, TextInputError
from models.vision.analysis import VisionAnalysis

T = TypeVar("T")
TENSOR_FIELDS = (
    "attentions",
    "hidden",
    "embed",
    "features",
)  # VisionAnalysis's tensors (its weights are interned)


def analysis_to_wire(analysis: VisionAnalysis) -> dict[str, Any]:
    """A vision analysis as Ray sends it from a replica: its fields, the (L, H, N, N) maps as a numpy array.
    Ray hands numpy buffers over out of band, through the object store, without a pickled copy; a torch
    tensor is pickled into bytes and copied again when unpickled (152 MB at 448 px; measured in
    docs/cluster.md "Where the time goes": 518-967 ms per call as a tensor, 114 ms as numpy)."""
    fields = {f.name: getattr(analysis, f.name) for f in dataclasses.fields(analysis)}
    for name in TENSOR_FIELDS:  # torch tensors travel as numpy buffers (None at 448/518 px: no full maps)
        if fields[name] is not None:
            fields[name] = fields[name].numpy()
    return fields


def analysis_from_wire(fields: dict[str, Any]) -> VisionAnalysis:
    """The analysis again, its maps a tensor over the received buffer (no copy). The buffer is read-only
    (the object store's); nothing writes into an analysis's maps."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        tensors = {n: torch.from_numpy(fields[n]) for n in TENSOR_FIELDS if fields.get(n) is not None}
    return VisionAnalysis(**{**fields, **tensors})


def send_analyses_zero_copy() -> None:
    """In a replica (or the ingress, for the shared analysis index): serialise every VisionAnalysis this
    process sends through Ray with :func:`analysis_to_wire`. The receiver needs no registration: Ray ships
    :func:`analysis_from_wire` by reference with each object."""
    import ray.util

    ray.util.register_serializer(VisionAnalysis, serializer=analysis_to_wire, deserializer=analysis_from_wire)


@dataclass(frozen=True)
class Failure:
    """A user-facing error raised in a replica; the ingress re-raises ``error`` (same class and status)."""

    error: ServiceError


class ModelReplica:
    """Shared by both families: the replica's device and dtype, and its single forward thread.

    The forward thread runs ``settings.limits.worker_nice`` below normal priority, as the local compute
    queue's worker does: on a machine the replicas share with Serve's proxy and the ingress, a forward then
    yields the cores to the event loops that answer health checks and cached views."""

    def __init__(self, settings: Settings) -> None:
        self.device = resolve_device(settings.server.device)
        self.dtype = resolve_dtype(settings.server.dtype, self.device)
        self._forward = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="atlas-forward",
            initializer=lower_priority,
            initargs=(settings.limits.worker_nice,),
        )

    async def _run(self, fn: Callable[..., T], *args: Any) -> T | Failure:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._forward, fn, *args)
        except ServiceError as e:  # anything else is a 500, as locally
            return Failure(e)

    async def device(self) -> str:
        return f"{self.device} {self.dtype}".replace("torch.", "")

    def __del__(self) -> None:
        self._forward.shutdown(wait=False, cancel_futures=True)


class VisionModels(ModelReplica):
    """Vision forwards (ViT / DINOv2 attention capture) for the ingress's ``/api/vision/analyze``.

    With batching on for the replica's device (``settings.batching.mode``: ``auto`` = CUDA only), concurrent
    single-image forwards are collected by Serve's own ``@serve.batch`` (at most ``batch_max_size`` images,
    waiting at most ``batch_wait_ms`` for company) and run as one batched forward per (model, resolution),
    the cluster counterpart of the local :class:`app.batching.MicroBatcher`; both run the same batched
    forward, :func:`app.batching.forward_group`."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.store = vision_store(settings, self.device, self.dtype)
        self.batching = batching_enabled(settings.batching.mode, self.device)
        self.batches: list[int] = []  # sizes of the batched forwards run (tests, bench)
        if self.batching:
            self._batched.set_max_batch_size(settings.batching.max_size)
            self._batched.set_batch_wait_timeout_s(settings.batching.wait_ms / 1000)
        if settings.server.preload:
            self.store.preload([settings.models.default_vision_model])

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
                vm, res = self.store.get_at(model_id, resolution)
                prepared = [vm.preprocess(images[i], res) for i in idx]  # (1, 3, R, R) and the shown image
            except ServiceError as e:
                for i in idx:
                    out[i] = Failure(e)
                continue
            analyses, ms = forward_group(vm, [x for x, _ in prepared], [shown for _, shown in prepared])
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
        self.store = text_store(settings, self.device)
        if settings.server.preload:
            self.store.preload([settings.models.default_text_model, settings.models.default_seq2seq_model])

    async def forward(self, model_id: str, text: str, target: str | None) -> TextAnalysis | Failure:
        return await self._run(self._analyze, model_id, text, target)

    def _analyze(self, model_id: str, text: str, target: str | None) -> TextAnalysis:
        try:
            return self.store.get(model_id).analyze(text, target)
        except TextInputError as e:  # as the local backend answers it (app/services/text.py)
            raise TextError(str(e)) from e
