"""Every derived view runs once: in the CPU pool, merged while in flight, then cached in ``state.views``.

A derived view (rollout with options, a distance, a text overview, a figure) is a pure function of its
key (analysis id or parameters, plus options), small, and deterministic, so it is computed once and shared:
identical keys in flight share one computation (the pool merges them), and later requests read the cache.
A full pool raises :class:`app.compute.PoolFull` (503 + Retry-After) before anything is allocated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from app.state import AppState

T = TypeVar("T")


def view_name(key: str | tuple[Any, ...]) -> str:
    return key if isinstance(key, str) else "|".join(str(k) for k in key)


def compute_view(state: AppState, name: str, fn: Callable[..., T], args: tuple) -> T:
    """``fn(*args)`` from ``state.views``, else computed here (in the calling worker) and cached."""
    hit = state.views.get(name)  # a twin that finished while this job waited
    if hit is None:
        hit = fn(*args)
        state.views.put(name, hit)
    return hit


async def cached_view(state: AppState, key: str | tuple[Any, ...], fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` from ``state.views`` under ``key``, else computed once in the CPU pool and cached.
    ``fn`` must be deterministic in ``key``."""
    name = view_name(key)
    hit = state.views.get(name)
    if hit is not None:
        return hit
    return await state.cpu.run(compute_view, state, name, fn, args, key=f"view:{name}")


def _json(fn: Callable[..., Any], args: tuple) -> bytes:
    return fn(*args).model_dump_json().encode()


async def cached_json(
    state: AppState, key: str | tuple[Any, ...], fn: Callable[..., Any], *args: Any
) -> bytes:
    """Like :func:`cached_view` for a function that returns a response schema: the JSON bytes are made in
    the pool and cached, so the event loop neither validates nor serialises a large response, and every
    request for the same view shares one bytes object (routes return them as a plain ``Response``)."""
    return await cached_view(state, key, _json, fn, args)
