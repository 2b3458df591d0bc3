"""Dynamic batching: concurrent single-image vision forwards of one (model, resolution) run as one batch.

On a GPU one forward of a small ViT is bound by kernel launches, not arithmetic: 16 images in one batch cost
little more than one. :class:`MicroBatcher` collects the requests that arrive within ``wait_ms`` of the
first one (at most ``max_size``) and runs them as one batched forward in the compute queue's worker, then
hands each request its own result (``models.vision.analysis.analyze_batch`` splits them).

It keeps the compute queue's budget (``app/compute.py``) as it is, because every request still goes through
``queue.submit`` itself:

- admission: each request takes its own queue slot and declares its own cost, so a full queue still answers
  :class:`app.compute.Busy` (503 + Retry-After) at once, before anything is batched;
- merging: the queue key is the analysis id, so identical in-flight requests share one future (one item);
- order and cancellation: the first request of a group whose queue job runs takes the oldest waiting items
  of its group (itself first) into one batch; the later items' own queue jobs then find their result ready
  and return at once. A request whose queue future is cancelled before it ran (``future.cancel()``, or
  ``shutdown(cancel_futures=True)``) leaves its group and is never computed: its caller sees
  ``CancelledError``. An exception in a batched forward reaches every request of that batch. No request
  ever waits on another request's queue job, so a cancelled or failed one cannot strand the others.

The wait window is measured from the first waiting item's arrival, so when the worker was busy (the queue
is long) a batch starts at once, and when it is idle a lone request waits at most ``wait_ms``.

``batching`` (settings): ``auto`` = on for CUDA, off on the CPU. On the CPU a batch of B costs about B
single forwards (the cores are busy either way), so batching would only add the wait; tests turn it on to
prove the machinery on the CPU.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

import torch
from PIL import Image

from app.compute import BoundedExecutor
from app.settings import BatchingMode as Batching
from models.vision.analysis import VisionAnalysis, VisionModel, analyze_batch

if TYPE_CHECKING:
    from app.state import AppState

P = TypeVar("P")
R = TypeVar("R")


def batching_enabled(mode: Batching, device: torch.device) -> bool:
    """``auto`` -> on for CUDA, off on the CPU; ``on`` / ``off`` as given."""
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"batching must be auto, on or off, not {mode!r}")
    return mode == "on" or (mode == "auto" and device.type == "cuda")


@dataclass(eq=False)
class _Item(Generic[P, R]):
    """One request: its payload, its group, and (once computed) its result or exception."""

    group: Hashable
    payload: P
    arrived: float
    future: Future | None = None
    state: Literal["waiting", "running", "done"] = "waiting"
    result: R | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


def _live(item: _Item) -> bool:
    """Waiting for a batch and not cancelled."""
    return item.state == "waiting" and not (item.future is not None and item.future.cancelled())


class MicroBatcher(Generic[P, R]):
    """Batch concurrent requests of the same group through a :class:`BoundedExecutor`.

    ``run_batch(group, payloads) -> results`` runs in the executor's worker, one result per payload, in
    order. ``max_size`` caps a batch; ``wait_ms`` is how long the first request of a group waits for
    company when the worker is free."""

    def __init__(
        self,
        queue: BoundedExecutor,
        run_batch: Callable[[Hashable, Sequence[P]], Sequence[R]],
        max_size: int = 16,
        wait_ms: float = 2.0,
    ) -> None:
        if max_size < 1 or wait_ms < 0:
            raise ValueError("max_size must be >= 1 and wait_ms >= 0")
        self.queue = queue
        self.run_batch = run_batch
        self.max_size = max_size
        self.wait_s = wait_ms / 1000.0
        self._cond = threading.Condition()
        self._groups: dict[Hashable, deque[_Item[P, R]]] = {}
        self.batch_sizes: deque[int] = deque(maxlen=4096)  # the latest batches' sizes (tests, benchmarks)
        self.batches = 0  # batched forwards run

    @property
    def waiting(self) -> int:
        """Requests admitted, not cancelled, and not yet taken into a batch."""
        with self._cond:
            return sum(_live(it) for g in self._groups.values() for it in g)

    def submit(self, group: Hashable, payload: P, *, key: str | None = None, cost: int = 0) -> Future:
        """Admit one request (or raise :class:`app.compute.Busy`); its future gives its own result."""
        item: _Item[P, R] = _Item(group, payload, time.monotonic())
        with self._cond:
            self._purge()
            future = self.queue.submit(self._serve, item, key=key, cost=cost)
            if getattr(future, "batch_item", None) is not None:
                return future  # merged with an identical in-flight request: no new item
            future.batch_item = item  # type: ignore[attr-defined]
            item.future = future
            self._groups.setdefault(group, deque()).append(item)
            self._cond.notify_all()
        return future

    async def run(self, group: Hashable, payload: P, *, key: str | None = None, cost: int = 0) -> R:
        """Submit and await without holding a thread; a client that goes away does not cancel the forward
        (as :meth:`BoundedExecutor.run`)."""
        future = self.submit(group, payload, key=key, cost=cost)
        return await asyncio.shield(asyncio.wrap_future(future))

    def _purge(self) -> None:
        """Under the lock: drop cancelled items. (Not from a done callback: ThreadPoolExecutor.shutdown
        cancels futures while holding its own lock, and a callback taking ours could deadlock a submit.)"""
        for name in list(self._groups):
            live = deque(it for it in self._groups[name] if _live(it))
            if live:
                self._groups[name] = live
            else:
                del self._groups[name]

    def _take(self, item: _Item[P, R]) -> list[_Item[P, R]]:
        """Under the lock: wait for the window, then take ``item`` and the oldest waiting items of its group."""
        deadline = item.arrived + self.wait_s
        while True:
            self._purge()
            group = self._groups.get(item.group, deque())
            remaining = deadline - time.monotonic()
            if len(group) >= self.max_size or remaining <= 0:
                break
            self._cond.wait(remaining)
        batch = [item, *[it for it in group if it is not item][: self.max_size - 1]]
        for it in batch:
            it.state = "running"
        rest = deque(it for it in group if it.state == "waiting")
        if rest:
            self._groups[item.group] = rest
        else:
            self._groups.pop(item.group, None)
        return batch

    def _serve(self, item: _Item[P, R]) -> R:
        """The queue job of one request: its result if a batch already computed it, else run a batch."""
        with self._cond:
            batch = self._take(item) if item.state == "waiting" else []
        if batch:
            try:
                results = list(self.run_batch(item.group, [it.payload for it in batch]))
                if len(results) != len(batch):
                    raise RuntimeError(f"run_batch gave {len(results)} results for {len(batch)} requests")
            except BaseException as e:  # noqa: BLE001 - handed to every request of the batch
                for it in batch:
                    it.error = e
            else:
                for it, result in zip(batch, results, strict=True):
                    it.result = result
            with self._cond:
                self.batch_sizes.append(len(batch))
                self.batches += 1
                for it in batch:
                    it.state = "done"
                    it.done.set()
        item.done.wait()  # set already, unless another worker runs its batch (a queue with several workers)
        if item.error is not None:
            raise item.error
        return item.result  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------------------
# The vision analysis glue: one batcher per app, grouping by (model, resolution)


@dataclass(frozen=True)
class VisionRequest:
    """One analysis to compute: preprocessed on the CPU pool, so the worker only stacks and runs."""

    vm: VisionModel
    aid: str
    x: torch.Tensor  # (1, 3, R, R) float32 on the CPU
    shown: Image.Image  # the R x R image the model sees


_create_lock = threading.Lock()


def vision_batcher(state: AppState) -> MicroBatcher[VisionRequest, tuple[VisionAnalysis, float]] | None:
    """The app's vision batcher when batching is on for its device (created on first use), else None."""
    settings = state.settings
    if not batching_enabled(settings.batching.mode, state.device):
        return None
    with _create_lock:
        if state.vision_batcher is None:
            state.vision_batcher = MicroBatcher(
                state.queue,
                lambda _group, reqs: forward_batch(state, reqs),
                max_size=settings.batching.max_size,
                wait_ms=settings.batching.wait_ms,
            )
        return state.vision_batcher


def forward_batch(state: AppState, reqs: Sequence[VisionRequest]) -> list[tuple[VisionAnalysis, float]]:
    """(analysis, forward ms) per request: cached ones as they are (0 ms), the others from one batched
    forward (each reports the batch's ms: what it waited for), cached as they come out."""
    out: list[tuple[VisionAnalysis, float] | None] = []
    todo: list[int] = []
    for i, r in enumerate(reqs):
        cached = state.analyses.get(r.aid)
        out.append(None if cached is None else (cached, 0.0))
        if cached is None:
            todo.append(i)
    if todo:
        t0 = time.perf_counter()
        x = torch.cat([reqs[i].x for i in todo])  # (B, 3, R, R)
        analyses = analyze_batch(reqs[todo[0]].vm, x, [reqs[i].shown for i in todo])
        forward_ms = max((time.perf_counter() - t0) * 1000, 1e-3)
        for i, analysis in zip(todo, analyses, strict=True):
            state.analyses.put(reqs[i].aid, analysis)
            out[i] = (analysis, forward_ms)
    return out  # type: ignore[return-value]


async def analyze_batched(
    state: AppState,
    batcher: MicroBatcher[VisionRequest, tuple[VisionAnalysis, float]],
    vm: VisionModel,
    image: Image.Image,
    resolution: int,
    aid: str,
) -> tuple[VisionAnalysis, float]:
    """Preprocess in the CPU pool, then wait for the batch this analysis joins: (analysis, forward ms)."""
    x, shown = await state.cpu.run(vm.preprocess, image, resolution, key=f"preprocess:{aid}")
    req = VisionRequest(vm, aid, x, shown)
    cost = 3 * image.width * image.height + x.numel() * x.element_size()
    return await batcher.run((vm.info.id, resolution), req, key=f"vision:{aid}", cost=cost)
