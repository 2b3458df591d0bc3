"""A thread-safe LRU cache bounded by bytes and age (analyses, uploaded images)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class BoundedCache(Generic[V]):
    def __init__(
        self, max_bytes: int, ttl_s: float, size_of: Callable[[V], int], clock=time.monotonic
    ) -> None:
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._size_of = size_of
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, int, V]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            stamp, size, value = item
            if self._clock() - stamp > self.ttl_s:
                del self._items[key]
                self._bytes -= size
                return None
            self._items.move_to_end(key)
            return value

    def put(self, key: str, value: V) -> bool:
        """Store ``value``; False (nothing stored) when it alone is larger than the whole cache, so one big
        item can never break the byte bound. Older items are evicted, least recently used first."""
        size = int(self._size_of(value))
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[1]
            if size > self.max_bytes:
                return False
            self._items[key] = (self._clock(), size, value)
            self._bytes += size
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, (_, old_size, _) = self._items.popitem(last=False)
                self._bytes -= old_size
            return True

    def discard(self, key: str) -> None:
        """Forget ``key`` (nothing happens when it is not cached)."""
        with self._lock:
            item = self._items.pop(key, None)
            if item is not None:
                self._bytes -= item[1]

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes
