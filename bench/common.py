"""Small helpers for side-by-side benchmarks: interleaved repeats, medians, device sync."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(
    fns: dict[str, Callable[[], object]],
    repeats: int,
    device: torch.device,
    warmup: int = 2,
    reduce: Callable[[list[float]], float] = statistics.median,
) -> dict:
    """Run each function `repeats` times, alternating between them, and return the median seconds per name
    (``reduce=min``: the fastest run, which on a shared machine estimates a function's own cost)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
            sync(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return {k: reduce(v) for k, v in times.items()}


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, in milliseconds (no warm-up, no device sync)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def forward_pair(model: torch.nn.Module, x: torch.Tensor) -> dict[str, Callable[[], None]]:
    """The two vision forwards a capture benchmark times side by side: ``plain`` (the fused kernels, no maps)
    and ``capture`` (the same forward with :func:`models.vision.capture.capture_attention`)."""
    from models.vision.capture import capture_attention

    def plain() -> None:
        with torch.inference_mode():
            model.forward_features(x)

    def captured() -> None:
        with torch.inference_mode(), capture_attention(model) as rec:
            model.forward_features(x)
        rec.maps  # noqa: B018 - the maps exist (raises if not)

    return {"plain": plain, "capture": captured}
