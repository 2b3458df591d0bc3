"""The features and norms views of one vision analysis: pure functions from a :class:`VisionAnalysis`.

The math is in ``features.py`` and ``norms.py``; these read the analysis's arrays (the residual stream
captured by ``hidden.py``, the cached attention maps) and choose the tokens. Every door calls these: the web
services in the CPU pool, the notebook (``VisionResult.features_pca()`` ...), and ``python -m app export``.

Layers are 0-based; ``layer=None`` means the last layer *after the final norm* (what DINOv2's Fig. 1 uses);
an int l means the residual stream after block l + 1 (before the final norm).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from models.vision.analysis import VisionAnalysis
from models.vision.features import (
    FeaturePCA,
    KMeansResult,
    cosine_similarity,
    feature_pca_set,
    kmeans_parts,
)
from models.vision.norms import (
    MAD_K,
    NormStats,
    distance_without,
    norm_stats,
    rollout_without,
    sink_keys,
    sink_mass,
)
from models.vision.views import attention_distance


class NoFeatures(ValueError):
    """The analysis was made without the residual stream (an older cache entry or another storage)."""


def tokens(a: VisionAnalysis, layer: int | None = None) -> np.ndarray:
    """(N, D) float32 token vectors of ``layer`` (None: the last layer after the final norm)."""
    if a.hidden is None or a.features is None:
        raise NoFeatures("this analysis holds no residual stream; analyse the image again")
    if layer is None:
        return a.features.float().numpy()
    n_layers = a.hidden.shape[0]
    if not 0 <= layer < n_layers:
        raise IndexError(f"layer must be in 0..{n_layers - 1}, not {layer}")
    return a.hidden[layer].float().numpy()  # (N, D)


def patch_features(a: VisionAnalysis, layer: int | None = None) -> np.ndarray:
    """(P, D) float32: the patch tokens only (prefix tokens dropped)."""
    return tokens(a, layer)[a.num_prefix_tokens :]


def features_pca(
    a: VisionAnalysis, threshold: float = 0.0, foreground_only: bool = True, flip: bool = False
) -> FeaturePCA:
    """DINOv2 Fig. 1 for one image (models/vision/features.py: first-component foreground, second PCA)."""
    return feature_pca_set([patch_features(a)], [a.grid], threshold, foreground_only, flip)[0]


def features_pca_set(
    analyses: Sequence[VisionAnalysis],
    threshold: float = 0.0,
    foreground_only: bool = True,
    flip: bool = False,
) -> list[FeaturePCA]:
    """One PCA fitted over a set of analyses (same model): a colour is one feature direction in all."""
    return feature_pca_set(
        [patch_features(a) for a in analyses], [a.grid for a in analyses], threshold, foreground_only, flip
    )


def similarity(a: VisionAnalysis, patch: int, layer: int | None = None) -> np.ndarray:
    """(rows, cols) float32: cosine similarity of patch ``patch``'s features with every patch's at ``layer``."""
    num_patches = a.grid[0] * a.grid[1]
    if not 0 <= patch < num_patches:
        raise IndexError(f"patch must be in 0..{num_patches - 1}, not {patch}")
    p0 = a.num_prefix_tokens
    return cosine_similarity(tokens(a, layer), p0 + patch)[p0:].reshape(a.grid)  # (R, C)


def parts(
    analyses: Sequence[VisionAnalysis], k: int, seed: int = 0, layer: int | None = None, max_iter: int = 100
) -> tuple[list[np.ndarray], KMeansResult]:
    """K-means parts over one analysis or a set: per analysis (rows, cols) int32 labels, and the fit."""
    labels, fit = kmeans_parts([patch_features(a, layer) for a in analyses], k, seed, max_iter)
    return [lab.reshape(a.grid) for lab, a in zip(labels, analyses, strict=True)], fit


def norms(a: VisionAnalysis, k: float = MAD_K) -> NormStats:
    """Per-layer patch-token norms of the residual stream and their median + k * MAD outliers."""
    if a.token_norms is None:
        raise NoFeatures("this analysis holds no token norms; analyse the image again")
    return norm_stats(a.token_norms, a.num_prefix_tokens, k)


@dataclass(frozen=True)
class Sinks:
    """Sink mass per head and the rollout / distance with and without the sink keys."""

    mass: np.ndarray  # (L, H, 3): mean over patch queries of the attention to [CLS], registers, outliers
    rollout: np.ndarray  # (P,) the plain rollout (mean fusion, no discard)
    rollout_without: np.ndarray  # (P,) rollout with [CLS], register and outlier columns dropped
    distance: np.ndarray  # (L, H) px, rows renormalised over the patches
    distance_without: np.ndarray  # (L, H) px, rows renormalised over the non-outlier patches
    stats: NormStats


def sinks(a: VisionAnalysis, patch_size: int, k: float = MAD_K) -> Sinks:
    """Where the attention mass goes outside the object: see models/vision/norms.py."""
    st = norms(a, k)
    p0 = a.num_prefix_tokens
    drop = sink_keys(st.outliers, p0)  # (L, N)
    distance = attention_distance(a, patch_size, renormalize=True)  # (L, H)
    # the distance reads patch keys only: a layer without outlier keys has the same distance without sinks
    changed = np.flatnonzero(drop[:, p0:].any(axis=1))
    without = distance.copy()
    if len(changed):
        maps = [a.layer_maps(int(i)) for i in changed]
        without[changed] = distance_without(maps, drop[changed], a.grid, p0, patch_size)
    return Sinks(
        mass=sink_mass(a.maps(), p0, a.has_cls, st.outliers),
        rollout=a.rollout,
        rollout_without=rollout_without(a.maps(), drop, p0, a.has_cls),
        distance=distance,
        distance_without=without,
        stats=st,
    )
