"""Dataset jobs on a Ray cluster: mean attention distance over an image set, its batches as Ray tasks.

The job thread (in the ingress) runs the one dataset loop
(:func:`models.vision.distance.dataset_mean_attention_distance`, as the local job does): it preprocesses
each image with the model's own transform and submits every batch of ``batch_size`` images as one
:func:`distance_batch` task (:func:`ray_submit`), at most ``window`` tasks in flight. Tasks are placed
with the ``SPREAD`` strategy, so consecutive batches land on different nodes; each worker process loads the model once (:func:`_worker_model`) and reduces the
batch's attention maps on its device (:func:`models.vision.distance.batch_mad`, the function the local
queue runs; ViT paper, Appendix D.7), returning only the (L, H) per-batch mean and its image count.

The driver combines the batches in batch order: MAD over the set = sum_b n_b * MAD_b / sum_b n_b, equal to
the local single-process run up to float64 rounding of that weighted sum (and to whatever the forwards'
float32 matmuls give on a different thread count).

Faults: a task whose worker process or node dies is re-run by Ray (``max_retries``), and an object lost
with its node is rebuilt from its lineage, so a job survives a lost worker with the same result. Cancel is
checked before every submission and while waiting; pending tasks are cancelled with ``ray.cancel``
(:class:`RayFuture`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import ray
import torch
from PIL import Image

from app.store import VisionStore
from models.devices import resolve_device, resolve_dtype
from models.vision.analysis import VisionModel, load_vision_model
from models.vision.distance import (
    BatchMad,
    DistanceResult,
    SubmitFn,
    batch_mad,
    dataset_mean_attention_distance,
)
from models.vision.registry import VisionModelSpec

_stores: dict[tuple[str, str, str], VisionStore] = {}  # per worker process: (device, dtype, cache) -> store
_stores_lock = threading.Lock()


@dataclass(frozen=True)
class TaskOptions:
    """Ray resources and retries for each batch task (from the settings)."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_retries: int = 3
    device: str = "auto"
    dtype: str = "float32"
    cache_dir: str = ".cache"


def _worker_model(spec: VisionModelSpec, device: str, dtype: str, cache_dir: str) -> VisionModel:
    """The model in this worker process, loaded on its first batch (by the process's model store for
    these options; the spec comes from the ingress's allowlist, so the store takes it as given)."""
    key = (device, dtype, cache_dir)
    with _stores_lock:
        store = _stores.get(key)
        if store is None:
            dev = resolve_device(device)
            load = partial(
                load_vision_model, device=dev, dtype=resolve_dtype(dtype, dev), cache_dir=Path(cache_dir)
            )
            store = _stores[key] = VisionStore("vision", dict, load)
    return store.get(spec)


@ray.remote
def distance_batch(
    spec: VisionModelSpec, options: TaskOptions, x: np.ndarray, resolution: int, renormalize: bool
) -> BatchMad:
    """Ray task: one batch's mean attention distance (x: (B, 3, R, R) float32)."""
    vm = _worker_model(spec, options.device, options.dtype, options.cache_dir)
    out = batch_mad(vm, torch.from_numpy(x), resolution, renormalize)  # (L, H)
    return replace(out, where=ray.get_runtime_context().get_node_id())


class RayFuture(Future):
    """A batch task's result as a ``concurrent.futures.Future`` (what the dataset loop waits on); cancelling
    it cancels the task."""

    def __init__(self, ref: ray.ObjectRef) -> None:
        super().__init__()
        self.ref = ref
        ref.future().add_done_callback(self._copy)

    def _copy(self, done: Future) -> None:
        with contextlib.suppress(InvalidStateError):  # cancelled here meanwhile
            if done.exception() is not None:
                self.set_exception(done.exception())
            else:
                self.set_result(done.result())

    def cancel(self) -> bool:
        ray.cancel(self.ref)
        return super().cancel()


def ray_submit(vm: VisionModel, resolution: int, renormalize: bool, options: TaskOptions) -> SubmitFn:
    """``submit(x)`` for the dataset loop: each batch as one :func:`distance_batch` task, ``SPREAD`` over
    the nodes. ``vm`` is the caller's copy, for its spec; the forwards run in the tasks."""
    task = distance_batch.options(
        num_cpus=options.num_cpus,
        num_gpus=options.num_gpus,
        max_retries=options.max_retries,
        scheduling_strategy="SPREAD",
    )

    def submit(x: torch.Tensor) -> Future[BatchMad]:
        x32 = x.float().cpu().numpy()  # (B, 3, R, R) float32
        return RayFuture(task.remote(vm.spec, options, x32, resolution, renormalize))

    return submit


@dataclass(frozen=True)
class ClusterRun:
    """A finished distributed run: the result, and the node each batch ran on (last attempt)."""

    result: DistanceResult
    node_ids: list[str]


def distributed_distance(
    vm: VisionModel,
    images: Sequence[Image.Image],
    batch_size: int,
    resolution: int | None,
    renormalize: bool,
    options: TaskOptions,
    progress: Callable[[int, int | None], None] | None = None,
    cancel: threading.Event | None = None,
    window: int | None = None,
) -> ClusterRun:
    """Mean attention distance (pixels) of ``vm`` over ``images``, one Ray task per batch, through the one
    dataset loop (:func:`models.vision.distance.dataset_mean_attention_distance`). ``window``: tasks in
    flight at once (default: 2 per alive node)."""
    res = vm.check_resolution(resolution)
    submitted: list[Future[BatchMad]] = []
    submit = ray_submit(vm, res, renormalize, options)

    def recorded(x: torch.Tensor) -> Future[BatchMad]:
        submitted.append(submit(x))
        return submitted[-1]

    window = window or 2 * max(1, sum(n["Alive"] for n in ray.nodes()))
    result = dataset_mean_attention_distance(
        vm, images, batch_size, res, renormalize, "pixels", progress, cancel, recorded, window
    )
    return ClusterRun(result, [f.result().where for f in submitted])
