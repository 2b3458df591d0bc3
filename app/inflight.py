"""Identical in-flight work shares one future: the one place where requests are merged.

Used by the bounded executors (:mod:`app.compute`: forwards, dataset batches and views submitted with the
same ``key`` while one is waiting or running) and by the Ray backend (:mod:`app.cluster.client`: identical
forwards in flight to a model deployment). A key is forgotten as soon as its future completes, so a later
request runs anew (or finds its result in a cache). Works with ``concurrent.futures.Future`` and
``asyncio.Future`` alike: both take ``add_done_callback(fn(future))``.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

F = TypeVar("F", bound=Any)  # a future with add_done_callback


class InFlight(Generic[F]):
    """key -> the future of the work in flight for it; ``merged`` counts requests that joined one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._futures: dict[Hashable, F] = {}
        self.merged = 0

    def find(self, key: Hashable | None) -> F | None:
        """The future in flight for ``key`` (counted as merged), or None."""
        if key is None:
            return None
        with self._lock:
            future = self._futures.get(key)
            if future is not None:
                self.merged += 1
            return future

    def add(self, key: Hashable | None, future: F) -> F:
        """Record ``future`` as the work for ``key`` until it completes; returns it."""
        if key is None:
            return future
        with self._lock:
            self._futures[key] = future

        def forget(f: F) -> None:
            with self._lock:
                if self._futures.get(key) is f:
                    del self._futures[key]

        future.add_done_callback(forget)
        return future

    def __len__(self) -> int:
        with self._lock:
            return len(self._futures)
