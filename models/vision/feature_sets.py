"""Feature PCA and K-means parts over an image set: one fit, so a colour (or a part) means the same in every image.

:func:`dataset_features` runs the model over the images in batches (fused attention: no map is captured) and
keeps each image's last-layer patch features after the final norm, float16 (P x D x 2 bytes an image: 786 KB for
DINOv2 ViT-S/14 at 448 px). :func:`set_views` then fits one PCA (``features.feature_pca_set``) and one K-means
(``features.kmeans_parts``) over them. Memory of a set of n images: n * P * D * 2 (the kept features) plus the
fits' float64 working copies, about n * P * D * 8 * 2 (pooled features and their centred copy) + n * P * k * 8.

The loop is the distance jobs' (:func:`models.vision.batches.run_batches`): ``submit(x) -> Future`` runs one
batch's forward (a server passes its compute queue, so single-image requests interleave), ``progress(done, total)``
is called as batches finish, ``cancel`` is checked before every image and batch and while one runs
(:class:`models.vision.batches.Cancelled`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from models.vision.analysis import VisionModel
from models.vision.batches import ProgressFn, run_batches, run_now
from models.vision.features import FeaturePCA, KMeansResult, feature_pca_set, kmeans_parts

FeatureSubmit = Callable[[torch.Tensor], "Future[np.ndarray]"]


def batch_features(vm: VisionModel, x: torch.Tensor) -> np.ndarray:
    """(B, 3, R, R) preprocessed images -> (B, P, D) float16 last-layer patch features after the final norm."""
    with torch.inference_mode():
        feats = vm.model.forward_features(x.to(vm.device, vm.dtype))  # (B, N, D)
    return feats[:, vm.info.num_prefix_tokens :].to("cpu", torch.float16).numpy()


def dataset_features(
    vm: VisionModel,
    images: Sequence[Image.Image],
    resolution: int | None = None,
    batch_size: int = 4,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
    submit: FeatureSubmit | None = None,
) -> list[np.ndarray]:
    """Per image (P, D) float16 patch features, in the images' order."""
    res = vm.check_resolution(resolution)
    batches = run_batches(
        images,
        lambda image: vm.preprocess(image, res)[0],  # (1, 3, R, R) on the CPU
        submit or (lambda x: run_now(batch_features, vm, x)),
        len,
        batch_size,
        progress=progress,
        cancel=cancel,
    )
    return [np.ascontiguousarray(f) for feats in batches for f in feats]  # per image (P, D)


@dataclass(frozen=True)
class SetViews:
    """One PCA and one K-means over a set: per image its PCA view and (rows, cols) part labels."""

    pca: list[FeaturePCA]
    parts: list[np.ndarray]  # per image (rows, cols) int32
    kmeans: KMeansResult
    grid: tuple[int, int]


def set_views(
    features: Sequence[np.ndarray],
    grid: tuple[int, int],
    k: int = 4,
    seed: int = 0,
    threshold: float = 0.0,
    foreground_only: bool = True,
    max_iter: int = 100,
) -> SetViews:
    """Fit the set's PCA (foreground from the pooled first component) and K-means parts (k clusters)."""
    feats = [np.asarray(f, np.float32) for f in features]
    pca = feature_pca_set(feats, [grid] * len(feats), threshold, foreground_only)
    labels, fit = kmeans_parts(feats, k, seed, max_iter)
    return SetViews(pca, [lab.reshape(grid) for lab in labels], fit, grid)
