"""Mean attention distance per layer and head: ViT paper (Dosovitskiy et al. 2021) Fig. 7 right, Appendix D.7.

Definition. Take one image, one layer, one head, its attention probabilities A (N x N, row i = query i),
drop the ``num_prefix_tokens`` prefix tokens ([CLS], distillation, registers) from both axes, leaving the
P = R x C patches of an R x C grid (row-major). Then

    MAD = (1 / P) * sum_i sum_j A[i, j] * d(i, j)

the attention-weighted distance from each query patch to the patches it attends to, averaged over query
patches; the dataset value is the mean of that over images. d(i, j) = patch_size * ||g_i - g_j||_2 with
g = (row, col) the patches' grid positions, i.e. pixels in the model's input, as in the paper ("analogous
to receptive field size in CNNs").

Prefix convention (see the shared anchors):
- default, ``renormalize=False`` (probing-vits): rows are NOT renormalised after dropping the prefix
  columns, so row i sums to 1 - A[i, prefix] and attention to [CLS] contributes distance 0;
- ``renormalize=True`` (Walmer et al., ``attention_metrics.py``): each row is divided by its patch mass,
  i.e. distance given that the query attends to a patch. A row with no patch mass gives 0.

Units: ``pixels`` (default, the paper's), ``patches`` (grid units, pixels / patch_size) and ``diagonal``
(fraction of the image diagonal, patch_size * sqrt(R^2 + C^2), so values compare across resolutions and
patch sizes). Walmer et al. put the patch centres on a [0, 1] square by dividing the grid positions by
(R - 1) and (C - 1), so on a square R x R grid their distance is ``patches`` / (R - 1)
= ``diagonal`` * sqrt(2) * R / (R - 1), a little more than ``diagonal`` * sqrt(2)).

Dataset statistics never keep the maps: :class:`DistanceAccumulator` is passed to
:func:`models.vision.capture.capture_attention` as ``reduce=acc.update`` and reduces each block's (B, H, N, N)
probabilities to per-(layer, head) sums on the device as they are produced. The arithmetic (units, patch
distances, the per-map reduction, the running sums) is :mod:`models.vision.mad`, re-exported here; this
module is the dataset run, its result and the CLI.

CLI::

    python -m models.vision.distance --model dinov2_vits14 --images DIR_OR_ZIP --out distance.csv

Layers are numbered from 0 (block index), as everywhere else in the app.
"""

from __future__ import annotations

import argparse
import csv
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.devices import DTYPES, resolve_device, resolve_dtype
from models.vision.analysis import VisionModel, load_vision_model
from models.vision.batches import Cancelled, ProgressFn, run_batches, run_now  # noqa: F401 (Cancelled: re-exported)
from models.vision.capture import capture_attention
from models.vision.mad import (  # noqa: F401 (the distance API, re-exported: one name per concept)
    CHUNK_BYTES,
    UNITS,
    DistanceAccumulator,
    HeadSums,
    Unit,
    convert_unit,
    grid_unit_scale,
    mean_attention_distance,
    patch_distances,
    pixels_per_unit,
)
from models.vision.registry import VisionModelSpec, builtin_specs
from models.vision.samples import ImageFiles, sample_images


@dataclass(frozen=True)
class DistanceResult:
    """Mean attention distance of a model over a set of images."""

    mad: np.ndarray  # (L, H) float64
    n_images: int
    model_id: str
    resolution: int
    unit: str
    renormalize: bool
    per_layer_mean: np.ndarray  # (L,) mean over heads

    def rows(self) -> list[dict[str, object]]:
        """One dict per (layer, head), the CSV's columns."""
        return [
            dict(
                layer=layer,
                head=head,
                mean_distance=float(self.mad[layer, head]),
                unit=self.unit,
                n_images=self.n_images,
                model=self.model_id,
                resolution=self.resolution,
            )
            for layer in range(self.mad.shape[0])
            for head in range(self.mad.shape[1])
        ]


CSV_COLUMNS = ("layer", "head", "mean_distance", "unit", "n_images", "model", "resolution")


def write_csv(result: DistanceResult, path: str | Path) -> None:
    """Write ``result.rows()`` with columns layer, head, mean_distance, unit, n_images, model, resolution."""
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(result.rows())


@dataclass(frozen=True)
class BatchMad:
    """One batch's mean attention distance: the (L, H) mean over its images, in pixels, and where it ran."""

    mad: np.ndarray  # (L, H) float64 pixels
    n_images: int
    where: str = ""  # a Ray node id, or "" for this process


def batch_mad(vm: VisionModel, x: torch.Tensor, resolution: int, renormalize: bool) -> BatchMad:
    """(B, 3, R, R) preprocessed images -> their mean attention distance (pixels), from one forward pass.

    The attention hooks are installed here and removed when it returns, so whatever runs on the model
    between two batches sees it unhooked and fused. Inference mode is thread-local: it is entered here,
    on whichever thread (queue worker, Ray task) runs the batch. Not for two calls at once on one model in
    one process (the hooks of both would see both forwards): the local backend runs one batch at a time
    through its compute queue, and Ray's tasks are processes of their own."""
    info = vm.info
    grid = info.grid(resolution, resolution)
    acc = DistanceAccumulator(grid, info.num_prefix_tokens, info.patch_size, renormalize)
    with torch.inference_mode(), capture_attention(vm.model, reduce=acc.update):
        vm.model.forward_features(x.to(vm.device, vm.dtype))
    return BatchMad(acc.result(), int(x.shape[0]))  # (L, H)


SubmitFn = Callable[[torch.Tensor], "Future[BatchMad]"]


def dataset_mean_attention_distance(
    vm: VisionModel,
    images: Iterable,
    batch_size: int = 16,
    resolution: int | None = None,
    renormalize: bool = False,
    unit: Unit = "pixels",
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    submit: SubmitFn | None = None,
    window: int = 1,
) -> DistanceResult:
    """Mean attention distance of ``vm`` over PIL ``images``, in batches: the one dataset loop of every door.

    Images go through ``vm.prepare`` (the model's own preprocessing) at ``resolution`` (default: the
    model's) on the calling thread, ``batch_size`` at a time. ``submit(x) -> Future[BatchMad]`` runs one
    batch's forward (:func:`batch_mad`; default: right here). A server passes its backend's: the compute
    queue locally, so single-image requests interleave with a long run batch by batch, or Ray tasks across
    the nodes (``app/backend``). At most ``window`` batches are in flight. ``progress(done, total)`` is
    called at the start and as batches finish (``total`` is None when ``images`` has no ``len``).
    ``cancel`` is checked before each image and each batch and while batches run; when set, the batches
    in flight are cancelled and :class:`Cancelled` is raised.

    The batches' means are combined in batch order, MAD = sum_b n_b * MAD_b / sum_b n_b, then converted to
    ``unit`` (MAD is linear in d).
    """
    res = vm.check_resolution(resolution)
    info = vm.info
    grid = info.grid(res, res)
    patch_distances(grid, info.patch_size, unit)  # validates the unit before any forward
    batches = run_batches(
        images,
        lambda image: vm.prepare(image, res)[0],  # (1, 3, R, R)
        submit or (lambda x: run_now(batch_mad, vm, x, res, renormalize)),
        lambda b: b.n_images,
        batch_size,
        window,
        progress,
        cancel,
    )
    n = sum(b.n_images for b in batches)
    mad_px = sum(b.mad * b.n_images for b in batches) / n  # (L, H) float64
    mad = convert_unit(mad_px, grid, info.patch_size, unit)  # (L, H)
    return DistanceResult(
        mad=mad,
        n_images=n,
        model_id=info.id,
        resolution=res,
        unit=unit,
        renormalize=renormalize,
        per_layer_mean=mad.mean(axis=1),
    )


# ----------------------------------------------------------------------------------------------------------
# CLI


def text_progress(stream=None, width: int = 30) -> ProgressFn:
    """A plain-text progress bar on stderr: ``[#######.......] 7/16 images``."""

    def show(done: int, total: int | None) -> None:
        out = stream or sys.stderr
        if total:
            filled = int(width * done / total)
            out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} images")
        else:
            out.write(f"\r{done} images")
        if total is not None and done >= total:
            out.write("\n")
        out.flush()

    return show


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m models.vision.distance",
        description="Mean attention distance per layer and head over a set of images (ViT paper Fig. 7 right).",
    )
    p.add_argument("--model", default="dinov2_vits14", help="model id (built-in: %(default)s)")
    p.add_argument(
        "--images", help="folder or .zip of jpg/png/webp/bmp images (default: scikit-image's sample photos)"
    )
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--resolution", type=int, default=None, help="input size in pixels (default: model's)")
    p.add_argument("--renormalize", action="store_true", help="renormalise rows over patches (Walmer)")
    p.add_argument("--unit", choices=UNITS, default="pixels")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--dtype", default="float32", choices=sorted(DTYPES), help="half precision only on CUDA")
    p.add_argument("--cache-dir", default=".cache", help="where converted weights are cached")
    p.add_argument("--out", default="distance.csv", help="CSV to write")
    return p


def main(argv: list[str] | None = None, specs: Mapping[str, VisionModelSpec] | None = None) -> int:
    """Run the CLI; ``specs`` replaces the built-in model registry (tests pass tiny models)."""
    args = build_parser().parse_args(argv)
    known = dict(builtin_specs() if specs is None else specs)
    if args.model not in known:
        print(f"unknown model {args.model!r}; known: {', '.join(sorted(known))}", file=sys.stderr)
        return 2
    images = ImageFiles(args.images) if args.images else list(sample_images().values())
    device = resolve_device(args.device)
    vm = load_vision_model(known[args.model], device, resolve_dtype(args.dtype, device), args.cache_dir)
    print(
        f"{vm.info.id}: {len(images)} images on {device} "
        f"({vm.info.num_layers} layers x {vm.info.num_heads} heads)",
        file=sys.stderr,
    )
    result = dataset_mean_attention_distance(
        vm,
        images,
        batch_size=args.batch_size,
        resolution=args.resolution,
        renormalize=args.renormalize,
        unit=args.unit,
        progress=text_progress(),
    )
    write_csv(result, args.out)
    for layer, value in enumerate(result.per_layer_mean):
        print(f"layer {layer:2d}: mean distance {value:8.2f} {result.unit}", file=sys.stderr)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
