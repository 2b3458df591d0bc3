"""One bounded queue for model work: forward passes run on a single worker thread, in order.

Sync routes call :meth:`ComputeQueue.run` from Starlette's thread pool, so the event loop never blocks.
When ``max_pending`` jobs are already waiting or running, :class:`QueueFull` is raised at once and the
API answers 503 with Retry-After instead of piling work up.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class QueueFull(RuntimeError):
    pass


class ComputeQueue:
    def __init__(self, max_pending: int, workers: int = 1) -> None:
        self.max_pending = max_pending
        self._slots = threading.BoundedSemaphore(max_pending)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="atlas-compute")
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def pending(self) -> int:
        return self._pending

    def run(self, fn: Callable[..., T], *args, **kwargs) -> T:
        if not self._slots.acquire(blocking=False):
            raise QueueFull(f"the model is busy ({self.max_pending} requests queued)")
        with self._lock:
            self._pending += 1
        try:
            return self._executor.submit(fn, *args, **kwargs).result()
        finally:
            with self._lock:
                self._pending -= 1
            self._slots.release()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
