"""The one dataset loop: images in batches, each batch's forward handed to ``submit``, at most ``window`` in flight.

Every dataset view runs through :func:`run_batches` (mean attention distance in
:func:`models.vision.distance.dataset_mean_attention_distance`, set-level features in
:func:`models.vision.feature_sets.dataset_features`). ``submit(x) -> Future`` runs one batch: right here
(:func:`run_now`), in a server's compute queue (single-image requests interleave batch by batch), or as a Ray
task. ``progress(done, total)`` is called at the start and as batches finish (``total`` None when ``images`` has
no ``len``). ``cancel`` is checked before each image and each batch and while batches run; when set, the
batches in flight are cancelled and :class:`Cancelled` is raised.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sized
from concurrent.futures import FIRST_COMPLETED, Future, wait
from typing import Any, TypeVar

import torch

T = TypeVar("T")
ProgressFn = Callable[[int, "int | None"], None]
WAIT_S = 0.2  # while batches run, ``cancel`` is checked this often


class Cancelled(Exception):
    """Raised by the dataset loop (and the jobs built on it) when its ``cancel`` event is set."""


def run_now(fn: Callable[..., T], *args: Any) -> Future[T]:
    """``fn(*args)`` run now, on the calling thread, as a finished future (its error raised where it is read)."""
    future: Future[T] = Future()
    try:
        future.set_result(fn(*args))
    except Exception as e:  # noqa: BLE001 - raised where the loop collects it
        future.set_exception(e)
    return future


def run_batches(
    images: Iterable,
    prepare: Callable[[Any], torch.Tensor],
    submit: Callable[[torch.Tensor], Future[T]],
    count: Callable[[T], int],
    batch_size: int,
    window: int = 1,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> list[T]:
    """Each batch's result, in batch order. ``prepare(image)`` -> (1, 3, R, R) on the calling thread;
    ``count(result)`` is how many images a finished batch covered (the progress count)."""
    if batch_size < 1 or window < 1:
        raise ValueError(f"batch_size and window must be >= 1, not {batch_size} and {window}")
    total = len(images) if isinstance(images, Sized) else None
    futures: list[Future[T]] = []  # in batch order
    pending: set[Future[T]] = set()
    done_images = 0

    def check_cancel() -> None:
        if cancel is not None and cancel.is_set():
            for f in pending:
                f.cancel()
            raise Cancelled(f"cancelled after {done_images} images")

    def collect(most: int) -> None:
        """Wait until at most ``most`` batches are in flight, reporting progress as they finish."""
        nonlocal done_images
        while len(pending) > most:
            check_cancel()
            finished, _ = wait(pending, timeout=WAIT_S, return_when=FIRST_COMPLETED)
            for f in finished:
                pending.discard(f)
                done_images += count(f.result())
            if finished and progress is not None:
                progress(done_images, total)

    batch: list[torch.Tensor] = []

    def flush() -> None:
        check_cancel()
        x = torch.cat(batch, dim=0)  # (B, 3, R, R)
        batch.clear()
        collect(window - 1)
        futures.append(submit(x))
        pending.add(futures[-1])

    if progress is not None:
        progress(0, total)
    for image in images:
        check_cancel()
        batch.append(prepare(image))  # (1, 3, R, R)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    collect(0)
    if not futures:
        raise ValueError("no images were given")
    return [f.result() for f in futures]
