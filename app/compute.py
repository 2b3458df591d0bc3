"""Bounded executors: every heavy piece of work runs under one of two named budgets.

- :class:`ComputeQueue` (model work: forward passes, dataset batches) has one worker thread, so forwards
  run one at a time, in order.
- :class:`CpuPool` (CPU-heavy views: rollout, distance, text views, figures, image decoding, zip parsing)
  has ``workers`` threads, one per core by default.

Admission happens at submission and never blocks: when the executor already holds ``max_pending`` jobs
(waiting or running), or when the job's declared ``cost`` in bytes would take the waiting work past
``max_cost``, :class:`Busy` is raised at once and the API answers 503 with ``Retry-After``. A request that
cannot be served soon is refused cheaply, before it allocates anything big.

Each client has a fair share: with ``max_per_owner`` set, one ``owner`` (a client address, by default the
request's :data:`app.context.client_id`) may hold at most that many of the jobs waiting or running; past
that its own submissions get :class:`Busy` while other clients are still admitted. Jobs without an owner
(worker threads of dataset jobs, which wait for room themselves) are not capped per client.

Identical in-flight work is merged (:class:`app.inflight.InFlight`): jobs submitted with the same ``key``
while one is waiting or running share its future and take no extra slot (two students clicking the same
sample get one forward pass).

Async routes ``await executor.run(...)``: no request thread is held while the job waits, so the event
loop (and ``/api/health``) stays free. Worker threads (dataset jobs) call :meth:`BoundedExecutor.run_sync`.

Worker threads run at a lower OS priority (``nice``, Linux threads have their own): when the cores are
saturated, the scheduler still runs the event-loop thread first, so health checks and 503s stay prompt.
Threads a worker starts (torch's OpenMP team) inherit its priority.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from app.context import client_id
from app.inflight import InFlight
from app.services.errors import Busy  # the error family's 503; re-exported here

T = TypeVar("T")


class QueueFull(Busy):
    """The model queue is full."""


class PoolFull(Busy):
    """The CPU pool is full."""


def lower_priority(nice: int) -> None:
    """Thread initializer: raise this thread's nice value by ``nice`` (no privilege needed; no-op elsewhere)."""
    if nice > 0 and hasattr(os, "setpriority"):
        with contextlib.suppress(OSError):
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)


def freeze_heap() -> int:
    """Move everything alive now (imported modules, loaded models, Ray's and Serve's objects) to the garbage
    collector's permanent generation (:func:`gc.freeze`, after one full collection), so that later full
    collections walk only what requests created. Called once a process has started and loaded its models.

    Why: a full collection holds the GIL for as long as it walks the tracked objects, and that grows with the
    heap. Measured under ``make load LOAD_TARGET=run-cluster`` (2026-12-06, gc.callbacks timing): the Ray
    driver's full collections took 14 ms to 260 ms during start-up and 524 ms once under load, in the
    event-loop thread (every health check waited). Serve's model replicas do the same themselves
    (``RAY_SERVE_FREEZE_GC_ON_STARTUP``).

    Returns the number of objects frozen. Objects frozen here that die later by reference count are freed as
    usual; only reference cycles among them are never collected (start-up objects live as long as the
    process)."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class BoundedExecutor:
    """A thread pool that admits at most ``max_pending`` jobs and ``max_cost`` bytes of declared cost."""

    full_error: type[Busy] = Busy
    what = "the server"
    thread_name = "atlas"  # worker threads' name prefix

    def __init__(
        self,
        max_pending: int,
        workers: int = 1,
        max_cost: int | None = None,
        retry_after_s: int = 2,
        nice: int = 0,
        max_per_owner: int | None = None,
    ) -> None:
        if max_pending < 1 or workers < 1:
            raise ValueError("max_pending and workers must be >= 1")
        if max_per_owner is not None and max_per_owner < 1:
            raise ValueError("max_per_owner must be >= 1")
        self.max_pending = max_pending
        self.max_per_owner = max_per_owner
        self._per_owner: dict[str, int] = {}
        self.workers = workers
        self.max_cost = max_cost
        self.retry_after_s = retry_after_s
        self._executor = ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix=self.thread_name,
            initializer=lower_priority,
            initargs=(nice,),
        )
        self._lock = threading.Lock()
        self._pending = 0
        self._cost = 0
        self._inflight: InFlight[Future] = InFlight()
        self.rejected = 0

    @property
    def merged(self) -> int:
        """Submissions answered by an identical in-flight job (for health and tests)."""
        return self._inflight.merged

    @property
    def pending(self) -> int:
        """Jobs waiting or running."""
        return self._pending

    @property
    def pending_cost(self) -> int:
        """Declared bytes of the jobs waiting or running."""
        return self._cost

    def owner_full(self, owner: str | None) -> bool:
        """Whether ``owner`` holds its whole share already (a new job of its own would be refused)."""
        if owner is None or self.max_per_owner is None:
            return False
        return self._per_owner.get(owner, 0) >= self.max_per_owner

    def check_owner(self, owner: str | None) -> None:
        """Raise :class:`Busy` now if ``owner`` holds its whole share (before reading an upload)."""
        with self._lock:
            if self.owner_full(owner):
                self.rejected += 1
                raise self.full_error(self._owner_message(), self.retry_after_s)

    def submit(
        self,
        fn: Callable[..., T],
        *args: Any,
        key: str | None = None,
        cost: int = 0,
        owner: str | None = None,
        **kwargs: Any,
    ) -> Future:
        """Admit ``fn(*args, **kwargs)`` or raise :class:`Busy` at once; identical ``key``s share a future.

        ``owner`` (default: the request's client) is held to ``max_per_owner`` jobs waiting or running."""
        with self._lock:
            merged = self._inflight.find(key)
            if merged is not None:
                return merged
            release = self._admit(cost, owner)
            future = self._inflight.add(key, self._executor.submit(fn, *args, **kwargs))
        future.add_done_callback(lambda _f: release())
        return future

    @contextlib.contextmanager
    def admitted(self, cost: int = 0, owner: str | None = None) -> Iterator[None]:
        """Count work that runs elsewhere (a forward in a Ray replica) against this executor's budget while
        the ``with`` block runs: the same refusals as :meth:`submit` (:class:`Busy` at once when full, or
        when ``owner`` holds its share), so both backends admit and refuse alike."""
        with self._lock:
            release = self._admit(cost, owner)
        try:
            yield
        finally:
            release()

    def _admit(self, cost: int, owner: str | None) -> Callable[[], None]:
        """Under ``self._lock``: take one slot and ``cost`` bytes for ``owner`` or raise :class:`Busy`;
        returns the function that gives them back."""
        owner = owner if owner is not None else client_id.get()
        if self.owner_full(owner):
            self.rejected += 1
            raise self.full_error(self._owner_message(), self.retry_after_s)
        over_cost = self.max_cost is not None and self._pending > 0 and self._cost + cost > self.max_cost
        if self._pending >= self.max_pending or over_cost:
            self.rejected += 1
            raise self.full_error(self._busy_message(), self.retry_after_s)
        self._pending += 1
        self._cost += cost
        counted = owner if self.max_per_owner is not None else None
        if counted is not None:
            self._per_owner[counted] = self._per_owner.get(counted, 0) + 1

        def release() -> None:
            with self._lock:
                self._pending -= 1
                self._cost -= cost
                if counted is not None:
                    left = self._per_owner[counted] - 1
                    if left:
                        self._per_owner[counted] = left
                    else:
                        del self._per_owner[counted]

        return release

    def _busy_message(self) -> str:
        return f"{self.what} is busy ({self._pending} requests waiting or running)"

    def _owner_message(self) -> str:
        return (
            f"{self.what} is busy with {self.max_per_owner} of your requests (at most "
            f"{self.max_per_owner} per client at once)"
        )

    def run_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Submit and wait (for worker threads, never for the event loop). Arguments as for :meth:`submit`
        (``key``, ``cost`` and ``owner`` included)."""
        return self.submit(fn, *args, **kwargs).result()

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Submit (arguments as for :meth:`submit`) and await without holding a thread. A client that goes
        away does not cancel the job (others may share it, and its result fills the cache)."""
        future = self.submit(fn, *args, **kwargs)
        return await asyncio.shield(asyncio.wrap_future(future))

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class ComputeQueue(BoundedExecutor):
    """Model work, one forward at a time. Bounded by count and by the bytes the waiting requests hold."""

    full_error = QueueFull
    what = "the model"
    thread_name = "atlas-compute"


class CpuPool(BoundedExecutor):
    """CPU-heavy views, decoding and parsing: ``workers`` at a time, at most ``max_pending`` admitted."""

    full_error = PoolFull
    what = "the server's CPU pool"
    thread_name = "atlas-cpu"

    def __init__(
        self,
        max_pending: int,
        workers: int = 2,
        retry_after_s: int = 2,
        nice: int = 0,
        max_per_owner: int | None = None,
    ) -> None:
        super().__init__(max_pending, workers, None, retry_after_s, nice, max_per_owner)
