"""Dataset jobs on a Ray cluster: mean attention distance over an image set, its batches as Ray tasks.

The job thread (in the ingress) preprocesses each image with the model's own transform (``vm.prepare``,
as the local job does) and submits every batch of ``batch_size`` images as one :func:`distance_batch` task,
at most ``window`` tasks in flight. Tasks are placed with the ``SPREAD`` strategy, so consecutive batches
land on different nodes; each worker process loads the model once (:func:`_worker_model`) and reduces the
batch's attention maps on its device with :class:`models.vision.distance.DistanceAccumulator` (ViT paper,
Appendix D.7), returning only the (L, H) per-batch mean and its image count.

The driver combines the batches in batch order: MAD over the set = sum_b n_b * MAD_b / sum_b n_b, equal to
the local single-process run up to float64 rounding of that weighted sum (and to whatever the forwards'
float32 matmuls give on a different thread count).

Faults: a task whose worker process or node dies is re-run by Ray (``max_retries``), and an object lost
with its node is rebuilt from its lineage, so a job survives a lost worker with the same result. Cancel is
checked before every submission and while waiting; pending tasks are cancelled with ``ray.cancel``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import ray
import torch
from PIL import Image

from app.store import VisionStore
from models.devices import resolve_device, resolve_dtype
from models.vision.analysis import VisionModel, load_vision_model
from models.vision.capture import capture_attention
from models.vision.distance import Cancelled, DistanceAccumulator, DistanceResult
from models.vision.registry import VisionModelSpec

WAIT_S = 0.2  # the driver checks cancel this often while batches run

_stores: dict[tuple[str, str, str], VisionStore] = {}  # per worker process: (device, dtype, cache) -> store
_stores_lock = threading.Lock()


@dataclass(frozen=True)
class BatchMad:
    """One batch's result: the (L, H) mean over its images, in pixels, and where it ran."""

    mad: np.ndarray  # (L, H) float64
    n_images: int
    node_id: str


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
            load = partial(load_vision_model, device=dev, dtype=resolve_dtype(dtype, dev), cache_dir=Path(cache_dir))
            store = _stores[key] = VisionStore("vision", dict, load)
    return store.get(spec)


def batch_mad(vm: VisionModel, x: torch.Tensor, resolution: int, renormalize: bool) -> np.ndarray:
    """(B, 3, R, R) preprocessed images -> (L, H) float64 mean attention distance in pixels over the batch."""
    info = vm.info
    acc = DistanceAccumulator(
        info.grid(resolution, resolution), info.num_prefix_tokens, info.patch_size, renormalize
    )
    with torch.inference_mode(), capture_attention(vm.model, reduce=acc.update):
        vm.model.forward_features(x.to(vm.device, vm.dtype))
    return acc.result()  # (L, H)


@ray.remote
def distance_batch(
    spec: VisionModelSpec, options: TaskOptions, x: np.ndarray, resolution: int, renormalize: bool
) -> BatchMad:
    """Ray task: one batch's mean attention distance (x: (B, 3, R, R) float32)."""
    vm = _worker_model(spec, options.device, options.dtype, options.cache_dir)
    mad = batch_mad(vm, torch.from_numpy(x), resolution, renormalize)  # (L, H)
    return BatchMad(mad, int(x.shape[0]), ray.get_runtime_context().get_node_id())


@dataclass(frozen=True)
class ClusterRun:
    """A finished distributed run: the result, and the node each batch ran on (last attempt)."""

    result: DistanceResult
    node_ids: list[str]


def distributed_distance(
    vm: VisionModel,
    images: Sequence[Image.Image],
    batch_size: int,
    resolution: int,
    renormalize: bool,
    options: TaskOptions,
    progress: Callable[[int, int | None], None] | None = None,
    cancel: threading.Event | None = None,
    window: int | None = None,
) -> ClusterRun:
    """Mean attention distance (pixels) of ``vm`` over ``images``, one Ray task per batch (module docstring).

    ``vm`` is the caller's copy, used for metadata and preprocessing only; the forwards run in the
    tasks on ``vm.spec``. ``window``: tasks in flight at once (default: 2 per alive node)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    res = vm.check_resolution(resolution)
    total = len(images)
    window = window or 2 * max(1, sum(n["Alive"] for n in ray.nodes()))
    task = distance_batch.options(
        num_cpus=options.num_cpus,
        num_gpus=options.num_gpus,
        max_retries=options.max_retries,
        scheduling_strategy="SPREAD",
    )
    refs: list[ray.ObjectRef] = []  # in batch order
    pending: list[ray.ObjectRef] = []
    done_images = 0

    def check_cancel() -> None:
        if cancel is not None and cancel.is_set():
            for ref in pending:
                ray.cancel(ref)
            raise Cancelled(f"cancelled after {done_images} images")

    def collect(block_until: int) -> None:
        """Wait until at most ``block_until`` tasks are pending, reporting progress as batches finish."""
        nonlocal pending, done_images
        while len(pending) > block_until:
            check_cancel()
            ready, pending = ray.wait(pending, num_returns=1, timeout=WAIT_S)
            for ref in ready:
                done_images += ray.get(ref).n_images
            if ready and progress is not None:
                progress(done_images, total)

    if progress is not None:
        progress(0, total)
    batch: list[torch.Tensor] = []
    for start in range(0, total, batch_size):
        for i in range(start, min(start + batch_size, total)):
            check_cancel()
            batch.append(vm.prepare(images[i], res)[0].float().cpu())  # (1, 3, R, R)
        x = torch.cat(batch).numpy()  # (B, 3, R, R) float32
        batch.clear()
        collect(window - 1)
        ref = task.remote(vm.spec, options, x, res, renormalize)
        refs.append(ref)
        pending.append(ref)
    collect(0)
    if not refs:
        raise ValueError("no images were given")
    batches: list[BatchMad] = ray.get(refs)
    n = sum(b.n_images for b in batches)
    mad = sum(b.mad * b.n_images for b in batches) / n  # (L, H) float64
    result = DistanceResult(
        mad=mad,
        n_images=n,
        model_id=vm.info.id,
        resolution=res,
        unit="pixels",
        renormalize=renormalize,
        per_layer_mean=mad.mean(axis=1),
    )
    return ClusterRun(result, [b.node_id for b in batches])
