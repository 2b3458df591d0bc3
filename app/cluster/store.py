"""Analyses shared between ingress replicas through the Ray object store (``ingress_replicas`` > 1).

A follow-up GET (patch query, layer, head, rollout, distance) names an analysis id; with several ingress
replicas it may land on one that did not run the analysis. Each ingress keeps its own byte-bounded caches
as in ``make run``, and :class:`SharedCache` adds a second level behind them:

- ``put``: the analysis is stored locally, copied once into the object store (``ray.put``) and its
  ObjectRef recorded in :class:`AnalysisIndex`, one named actor per application: id -> ObjectRef, an LRU
  bounded in bytes (``shared_cache_mb``), so the store never holds more than that on its behalf;
- ``get`` on a local miss asks the index and fetches the object (zero-copy on the same node), then keeps
  it locally. An id the index no longer has, or whose object was lost with the replica that owned it,
  is a miss: the usual 404 "analyse the image again".

We chose the object store over re-running the forward on a miss: the other replica has neither the upload
nor the decoded image, and the maps are already computed once.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, Generic, TypeVar

import ray
from fastapi import FastAPI

from app.cache import BoundedCache
from app.settings import Settings

V = TypeVar("V")
log = logging.getLogger("atlas.cluster")
MB = 1024 * 1024
FETCH_TIMEOUT_S = 5.0


@ray.remote(num_cpus=0)
class AnalysisIndex:
    """Named actor: key -> ObjectRef, least recently used dropped past ``max_bytes`` (declared sizes)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._refs: OrderedDict[str, tuple[list[ray.ObjectRef], int]] = OrderedDict()
        self._bytes = 0

    def put(self, key: str, refs: list[ray.ObjectRef], nbytes: int) -> None:
        # refs arrive in a list, so Ray hands over the ObjectRef itself rather than its value
        if key in self._refs:
            self._bytes -= self._refs.pop(key)[1]
        if nbytes > self.max_bytes:
            return
        self._refs[key] = (refs, nbytes)
        self._bytes += nbytes
        while self._bytes > self.max_bytes and len(self._refs) > 1:
            _, (_, old) = self._refs.popitem(last=False)
            self._bytes -= old

    def get(self, key: str) -> list[ray.ObjectRef] | None:
        item = self._refs.get(key)
        if item is None:
            return None
        self._refs.move_to_end(key)
        return item[0]

    def nbytes(self) -> int:
        return self._bytes


def index_actor(settings: Settings) -> Any:
    """The application's index (created by the first ingress replica that asks, found by the others)."""
    return AnalysisIndex.options(
        name=f"{settings.cluster.serve_app_name}-analyses",
        namespace="atlas",
        get_if_exists=True,
        lifetime="detached",
    ).remote(settings.caches.shared_mb * MB)


class SharedCache(BoundedCache[V], Generic[V]):
    """A :class:`BoundedCache` whose misses are looked up in the cluster-wide :class:`AnalysisIndex`."""

    def __init__(self, local: BoundedCache[V], index: Any, prefix: str) -> None:
        super().__init__(local.max_bytes, local.ttl_s, local._size_of, local._clock)
        self._index, self._prefix = index, prefix

    def put(self, key: str, value: V) -> bool:
        stored = super().put(key, value)
        if stored:
            self._index.put.remote(self._prefix + key, [ray.put(value)], int(self._size_of(value)))
        return stored

    def get(self, key: str) -> V | None:
        value = super().get(key)
        if value is not None:
            return value
        try:
            refs = ray.get(self._index.get.remote(self._prefix + key), timeout=FETCH_TIMEOUT_S)
            if refs is None:
                return None
            value = ray.get(refs[0], timeout=FETCH_TIMEOUT_S)
        except (ray.exceptions.RayError, TimeoutError) as e:  # lost with its owner, or the index is gone
            log.info("shared analysis %s unavailable: %s", key, e)
            return None
        super().put(key, value)  # local only: it is in the store already
        return value


def share_analyses(app: FastAPI, settings: Settings) -> None:
    """Swap the ingress's vision and text analysis caches for :class:`SharedCache` once the lifespan has
    built its state (wraps the app's lifespan; ``app.main`` stays unaware of Ray)."""
    inner = app.router.lifespan_context

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(a: FastAPI):  # noqa: ANN202 - an async context manager
        async with inner(a):
            state = a.state.atlas
            index = index_actor(settings)
            state.analyses = SharedCache(state.analyses, index, "vision:")
            state.text_analyses = SharedCache(state.text_analyses, index, "text:")
            yield

    app.router.lifespan_context = lifespan
