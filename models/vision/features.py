"""What the patch features look like: PCA as colours, cosine similarity to a clicked patch, K-means parts.

Pure numpy over arrays of token features, so every door (web service, notebook, CLI, dataset jobs) calls the
same functions. Inputs are patch features ``(P, D)`` (prefix tokens already dropped) or lists of them.

**PCA as RGB** (Oquab et al. 2023, "DINOv2", Fig. 1 and its "PCA of patch features" paragraph): a first PCA
over the patches of one image (or of a whole set); its first component is thresholded to split foreground
from background; a second PCA over the foreground patches only gives three components, shown as R, G, B.

- PCA here is the eigen-decomposition of the float64 covariance of the centred features (``numpy.linalg.eigh``);
  the tests check it against ``numpy.linalg.svd``.
- Sign convention: each component's sign is arbitrary, so we fix it. Components 2-3 of the second PCA: the
  loading of largest magnitude is positive. Component 1 of the first PCA (the foreground axis): oriented so
  that the patches in the central half of the grid score higher on average than the border patches, i.e. we
  assume the object is nearer the centre than the edges; the page says so and offers a flip.
- Foreground = first component > threshold. The default threshold is 0, the mean over the fitted patches
  (the paper keeps "patches with a positive value").
- RGB scaling: per component, robust percentile scaling: the 1st percentile maps to 0, the 99th to 1,
  clipped (one extreme patch does not wash out the rest). Over a set, the percentiles are pooled so one
  colour means one direction in feature space in every image.

**Similarity**: cosine of the clicked token's vector with every token's, at any layer (the residual stream
after that block; after the final norm for "last").

**K-means parts**: Lloyd's algorithm on L2-normalised patch features (so Euclidean distance ranks as cosine
does), k-means++ seeding from ``numpy.random.default_rng(seed)``, at most ``max_iter`` iterations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

RGB_PERCENTILES = (1.0, 99.0)  # robust per-component scaling of the PCA colours
MAX_KMEANS_POINTS = 20_000  # K-means over a larger set is fitted on this many patches drawn with the seed


@dataclass(frozen=True)
class PCAFit:
    """A PCA: ``mean`` (D,), ``components`` (k, D) unit rows, ``variance`` (k,) and the total variance."""

    mean: np.ndarray  # (D,) float64
    components: np.ndarray  # (k, D) float64
    variance: np.ndarray  # (k,) float64, eigenvalues of the covariance (ddof 0)
    total_variance: float

    @property
    def explained(self) -> np.ndarray:
        """(k,) share of the total variance along each component."""
        return self.variance / max(self.total_variance, 1e-30)

    def project(self, x: np.ndarray) -> np.ndarray:
        """(M, D) -> (M, k) scores."""
        return (np.asarray(x, np.float64) - self.mean) @ self.components.T


def pca_fit(x: np.ndarray, k: int = 3) -> PCAFit:
    """The top-``k`` principal components of the rows of ``x`` (M, D), signs fixed by the largest loading."""
    return pca_fit_chunks([x], k)


def pca_fit_chunks(chunks: Sequence[np.ndarray], k: int = 3) -> PCAFit:
    """:func:`pca_fit` of the rows of all ``chunks`` (each (m_i, D)) without concatenating them: two passes
    (the mean, then the centred covariance), one chunk at a time in float64, so the extra memory is one
    chunk's float64 copy plus the (D, D) covariance, whatever the number of chunks."""
    n = sum(len(c) for c in chunks)
    if n < 2 or any(np.ndim(c) != 2 for c in chunks):
        raise ValueError(f"PCA needs (M, D) features with M >= 2, got {[np.shape(c) for c in chunks]}")
    d = chunks[0].shape[1]
    k = min(k, d)
    mean = sum(np.asarray(c, np.float64).sum(axis=0) for c in chunks) / n  # (D,)
    cov = np.zeros((d, d))
    for c in chunks:
        centred = np.asarray(c, np.float64) - mean  # (m_i, D)
        cov += centred.T @ centred
    cov /= n  # (D, D)
    values, vectors = np.linalg.eigh(cov)  # ascending
    order = np.argsort(values)[::-1][:k]
    comps = vectors[:, order].T  # (k, D)
    big = np.argmax(np.abs(comps), axis=1)
    comps = comps * np.sign(comps[np.arange(len(comps)), big])[:, None]
    return PCAFit(mean, comps, np.clip(values[order], 0.0, None), float(np.trace(cov)))


def centre_mask(grid: tuple[int, int]) -> np.ndarray:
    """(R*C,) bool: the patches in the central half of the grid (rows and columns in the middle 50 %)."""
    rows, cols = grid
    r = np.arange(rows)[:, None]
    c = np.arange(cols)[None, :]
    inner = (np.abs(r - (rows - 1) / 2) <= rows / 4) & (np.abs(c - (cols - 1) / 2) <= cols / 4)
    return inner.reshape(-1)


def orient_first(scores: Sequence[np.ndarray], grids: Sequence[tuple[int, int]]) -> float:
    """+1 or -1: the sign that makes the central patches score higher than the border on average, pooled
    over the images (see the module docstring)."""
    inner = np.concatenate([s[centre_mask(g)] for s, g in zip(scores, grids, strict=True)])
    outer = np.concatenate([s[~centre_mask(g)] for s, g in zip(scores, grids, strict=True)])
    if inner.size == 0 or outer.size == 0:
        return 1.0
    return 1.0 if inner.mean() >= outer.mean() else -1.0


def robust_scale(
    values: np.ndarray, lo: float = RGB_PERCENTILES[0], hi: float = RGB_PERCENTILES[1]
) -> np.ndarray:
    """(M, k) -> (M, k) float32 in [0, 1]: per column, the ``lo``-th percentile to 0, the ``hi``-th to 1."""
    values = np.asarray(values, np.float64)
    if values.shape[0] == 0:
        return values.astype(np.float32)
    low = np.percentile(values, lo, axis=0)
    high = np.percentile(values, hi, axis=0)
    span = np.where(high - low > 1e-12, high - low, 1.0)
    return np.clip((values - low) / span, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class FeaturePCA:
    """One image's PCA view. ``rgb`` rows of background patches are NaN when ``foreground_only``."""

    first: np.ndarray  # (P,) float32: score on the (oriented) first component of the first PCA
    threshold: float
    foreground: np.ndarray  # (P,) bool: first > threshold
    rgb: np.ndarray  # (P, 3) float32 in [0, 1] (NaN rows: background, when foreground_only)
    explained: np.ndarray  # (3,) share of variance of the components shown as R, G, B
    first_explained: float  # share of variance of the first PCA's first component
    flipped: bool  # True when the orientation rule (or the caller) flipped the first component's sign
    foreground_only: bool


def feature_pca_set(
    features: Sequence[np.ndarray],
    grids: Sequence[tuple[int, int]],
    threshold: float = 0.0,
    foreground_only: bool = True,
    flip: bool = False,
) -> list[FeaturePCA]:
    """PCA views of a set of images fitted jointly: ``features`` are per-image (P_i, D) patch features.

    One first PCA over all patches of all images (foreground axis, oriented as in the module docstring and
    flipped again when ``flip``), one threshold, one second PCA over the pooled foreground patches (or all
    patches when not ``foreground_only``), one pooled percentile scaling: a colour means the same direction
    in feature space in every image."""
    feats = [np.asarray(f) for f in features]  # per image (P_i, D), float16/32 kept as given
    first_fit = pca_fit_chunks(feats, 1)
    scores = [first_fit.project(f)[:, 0] for f in feats]  # per image (P_i,)
    sign = orient_first(scores, grids) * (-1.0 if flip else 1.0)
    scores = [s * sign for s in scores]
    fg = [s > threshold for s in scores]
    if foreground_only and sum(int(m.sum()) for m in fg) < 3:  # too few foreground patches for a second PCA
        foreground_only = False
    chosen = [f[m] for f, m in zip(feats, fg, strict=True)] if foreground_only else feats
    fit = pca_fit_chunks([c for c in chosen if len(c)], 3)
    proj = [fit.project(f) for f in feats]  # per image (P_i, 3)
    pool_for_scale = np.concatenate(
        [p[m] for p, m in zip(proj, fg, strict=True)] if foreground_only else proj
    )
    low = np.percentile(pool_for_scale, RGB_PERCENTILES[0], axis=0)
    high = np.percentile(pool_for_scale, RGB_PERCENTILES[1], axis=0)
    span = np.where(high - low > 1e-12, high - low, 1.0)
    out = []
    for s, p, m in zip(scores, proj, fg, strict=True):
        rgb = np.clip((p - low) / span, 0.0, 1.0).astype(np.float32)  # (P_i, 3)
        if foreground_only:
            rgb[~m] = np.nan
        out.append(
            FeaturePCA(
                first=s.astype(np.float32),
                threshold=float(threshold),
                foreground=m,
                rgb=rgb,
                explained=fit.explained.astype(np.float32),
                first_explained=float(first_fit.explained[0]),
                flipped=sign < 0,
                foreground_only=foreground_only,
            )
        )
    return out


def feature_pca(
    patches: np.ndarray,
    grid: tuple[int, int],
    threshold: float = 0.0,
    foreground_only: bool = True,
    flip: bool = False,
) -> FeaturePCA:
    """:func:`feature_pca_set` of one image's (P, D) patch features."""
    return feature_pca_set([patches], [grid], threshold, foreground_only, flip)[0]


# ------------------------------------------------------------------------------------------- similarity


def cosine_similarity(tokens: np.ndarray, query: int) -> np.ndarray:
    """(N, D) token vectors -> (N,) float32 cosine of token ``query`` with every token (itself: 1)."""
    x = np.asarray(tokens, np.float32)
    if not 0 <= query < x.shape[0]:
        raise IndexError(f"query must be in 0..{x.shape[0] - 1}, not {query}")
    unit = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)  # (N, D)
    return unit @ unit[query]  # (N,)


# ---------------------------------------------------------------------------------------------- K-means


@dataclass(frozen=True)
class KMeansResult:
    labels: np.ndarray  # (M,) int32 in 0..k-1
    centres: np.ndarray  # (k, D) float64
    inertia: float  # sum of squared distances to the assigned centre
    iterations: int
    converged: bool


def _plus_plus(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): (k, D) initial centres drawn from the rows of x."""
    centres = [x[rng.integers(x.shape[0])]]
    d2 = ((x - centres[0]) ** 2).sum(-1)  # (M,)
    for _ in range(1, k):
        total = d2.sum()
        idx = rng.integers(x.shape[0]) if total <= 0 else rng.choice(x.shape[0], p=d2 / total)
        centres.append(x[idx])
        d2 = np.minimum(d2, ((x - x[idx]) ** 2).sum(-1))
    return np.stack(centres)


def _sq_dist(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(M, D), (k, D) -> (M, k) squared Euclidean distances, without an (M, k, D) temporary."""
    d2 = (x**2).sum(-1)[:, None] - 2.0 * x @ centres.T + (centres**2).sum(-1)[None, :]
    return np.maximum(d2, 0.0)


def kmeans(x: np.ndarray, k: int, seed: int = 0, max_iter: int = 100, tol: float = 1e-6) -> KMeansResult:
    """Lloyd's K-means of the rows of ``x`` (M, D): seeded k-means++, at most ``max_iter`` iterations, stops
    when no centre moves more than ``tol``. An emptied cluster takes the point farthest from its centre."""
    x = np.asarray(x, np.float64)
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"k must be in 1..{x.shape[0]} (the number of points), not {k}")
    rng = np.random.default_rng(seed)
    centres = _plus_plus(x, k, rng)  # (k, D)
    converged, it = False, 0
    for it in range(1, max_iter + 1):  # noqa: B007 - the count is reported
        d2 = _sq_dist(x, centres)  # (M, k)
        labels = d2.argmin(1)
        new = centres.copy()
        for j in range(k):
            members = x[labels == j]
            if len(members):
                new[j] = members.mean(0)
            else:
                far = d2[np.arange(len(x)), labels].argmax()
                new[j] = x[far]
        shift = np.abs(new - centres).max()
        centres = new
        if shift <= tol:
            converged = True
            break
    d2 = _sq_dist(x, centres)  # (M, k)
    labels = d2.argmin(1)
    inertia = float(d2[np.arange(len(x)), labels].sum())
    return KMeansResult(labels.astype(np.int32), centres, inertia, it, converged)


def normalise_rows(x: np.ndarray) -> np.ndarray:
    """(M, D) -> (M, D) float64 unit rows."""
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def kmeans_parts(
    features: Sequence[np.ndarray],
    k: int,
    seed: int = 0,
    max_iter: int = 100,
    max_points: int = MAX_KMEANS_POINTS,
) -> tuple[list[np.ndarray], KMeansResult]:
    """K-means over the L2-normalised patch features of one image or a set (a list of (P_i, D)): per image
    (P_i,) int32 part labels, and the fit. One fit over the set, so a label is one part in every image.

    Sets of more than ``max_points`` patches are fitted on ``max_points`` of them drawn with ``seed`` (so the
    float64 working set stays max_points * D * 8 bytes, 61 MB at D = 384), then every patch is assigned to
    its nearest centre; ``fit.labels`` and ``fit.inertia`` then refer to the drawn patches."""
    sizes = [len(f) for f in features]
    total = sum(sizes)
    if total <= max_points:  # exact: every patch takes part in the fit
        feats = [normalise_rows(f) for f in features]
        fit = kmeans(np.concatenate(feats), k, seed, max_iter)
        bounds = np.cumsum([0, *sizes])
        return [fit.labels[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)], fit
    # a large set: fit on max_points patches drawn with the seed, then give every patch its nearest centre
    picked = np.sort(np.random.default_rng(seed).choice(total, max_points, replace=False))
    bounds = np.cumsum([0, *sizes])
    sample = np.concatenate(
        [
            normalise_rows(f[picked[(picked >= a) & (picked < b)] - a])
            for f, a, b in zip(features, bounds[:-1], bounds[1:], strict=True)
        ]
    )  # (max_points, D)
    fit = kmeans(sample, k, seed, max_iter)
    return [_sq_dist(normalise_rows(f), fit.centres).argmin(1).astype(np.int32) for f in features], fit
