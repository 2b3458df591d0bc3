"""Feature PCA, similarity and K-means (models/vision/features.py) against independent computations."""

from __future__ import annotations

import numpy as np
import pytest

from models.vision.features import (
    centre_mask,
    cosine_similarity,
    feature_pca,
    feature_pca_set,
    kmeans,
    kmeans_parts,
    pca_fit,
    pca_fit_chunks,
    robust_scale,
)


def numpy_svd_pca(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference: components (k, D) and variances (k,) from numpy's SVD of the centred data."""
    c = x - x.mean(0)
    _, s, vt = np.linalg.svd(c, full_matrices=False)
    return vt[:k], (s[:k] ** 2) / x.shape[0]


def features(seed: int = 0, m: int = 60, d: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scales = np.linspace(3.0, 0.2, d)  # distinct variances: a well-defined order of components
    return rng.normal(size=(m, d)) * scales @ np.linalg.qr(rng.normal(size=(d, d)))[0] + rng.normal(size=d)


def test_pca_matches_numpy_svd_up_to_sign() -> None:
    x = features()
    fit = pca_fit(x, 3)
    comps, var = numpy_svd_pca(x, 3)
    np.testing.assert_allclose(fit.variance, var, rtol=1e-9)
    for got, want in zip(fit.components, comps, strict=True):
        np.testing.assert_allclose(abs(got @ want), 1.0, atol=1e-9)  # same axis
        assert got[np.argmax(abs(got))] > 0  # sign convention: the largest loading is positive
    scores = fit.project(x)  # (M, 3)
    want_scores = (x - x.mean(0)) @ comps.T
    np.testing.assert_allclose(abs(scores), abs(want_scores), atol=1e-9)
    np.testing.assert_allclose(fit.explained, var / np.var(x, axis=0).sum(), rtol=1e-9)


def test_robust_scale_maps_percentiles_to_0_and_1() -> None:
    v = np.arange(101, dtype=np.float64)[:, None].repeat(3, 1)  # 0..100
    v[-1] = 1e6  # one extreme value does not wash out the rest
    out = robust_scale(v)
    assert out.min() == 0 and out.max() == 1
    np.testing.assert_allclose(out[50], (50 - 1) / (np.percentile(v[:, 0], 99) - 1), rtol=1e-6)


def object_in_centre(grid=(8, 8), d=16, seed=1) -> np.ndarray:
    """Patch features of a hand-made photo: a central object (two parts) on a background."""
    rng = np.random.default_rng(seed)
    inner = centre_mask(grid)
    fg_a, fg_b, bg = rng.normal(size=(3, d)) * 4
    x = np.where(inner[:, None], fg_a, bg) + 0.1 * rng.normal(size=(inner.size, d))
    left = np.tile(np.arange(grid[1]) < grid[1] // 2, grid[0])
    x[inner & left] = fg_b + 0.1 * rng.normal(size=(int((inner & left).sum()), d))
    return x


def test_foreground_is_the_centre_and_threshold_moves_it() -> None:
    x = object_in_centre()
    out = feature_pca(x, (8, 8))
    np.testing.assert_array_equal(out.foreground, centre_mask((8, 8)))  # the object, by our sign rule
    assert np.isnan(out.rgb[~out.foreground]).all() and not np.isnan(out.rgb[out.foreground]).any()
    # the first score is the first PCA's projection, oriented: same values as numpy's SVD up to sign
    comps, _ = numpy_svd_pca(x, 1)
    np.testing.assert_allclose(abs(out.first), abs((x - x.mean(0)) @ comps[0]), rtol=1e-5, atol=1e-5)
    flipped = feature_pca(x, (8, 8), flip=True)
    np.testing.assert_allclose(flipped.first, -out.first)
    everything = feature_pca(x, (8, 8), threshold=float(out.first.min()) - 1)
    assert everything.foreground.all()
    # the two parts of the object get different colours
    left = np.tile(np.arange(8) < 4, 8)
    a = out.rgb[centre_mask((8, 8)) & left].mean(0)
    b = out.rgb[centre_mask((8, 8)) & ~left].mean(0)
    assert np.abs(a - b).max() > 0.5


def test_set_pca_gives_one_part_one_colour() -> None:
    x = object_in_centre()
    # the same scene twice, the second with the features rotated in patch order: a shared fit colours alike
    perm = np.random.default_rng(0).permutation(len(x))
    a, b = feature_pca_set([x, x], [(8, 8), (8, 8)])
    np.testing.assert_array_equal(a.rgb, b.rgb)
    both = feature_pca_set([x, x[perm]], [(8, 8), (8, 8)], foreground_only=False)
    np.testing.assert_allclose(both[1].rgb, both[0].rgb[perm], atol=1e-6)


def test_cosine_similarity_by_brute_force() -> None:
    x = features(2, 20, 7)
    for q in (0, 5, 19):
        got = cosine_similarity(x, q)
        want = [float(np.dot(x[q], v) / (np.linalg.norm(x[q]) * np.linalg.norm(v))) for v in x]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        assert got[q] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(IndexError):
        cosine_similarity(x, 20)


def test_kmeans_finds_hand_made_clusters() -> None:
    rng = np.random.default_rng(3)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    truth = np.repeat(np.arange(3), 30)
    x = centres[truth] + 0.3 * rng.normal(size=(90, 2))
    fit = kmeans(x, 3, seed=7)
    assert fit.converged and fit.iterations <= 100
    # the same partition up to label names
    pairs = {(int(t), int(g)) for t, g in zip(truth, fit.labels, strict=True)}
    assert len(pairs) == 3 and len({g for _, g in pairs}) == 3
    for j in range(3):
        np.testing.assert_allclose(fit.centres[fit.labels[truth == j][0]], x[truth == j].mean(0))
    want_inertia = sum(((x[truth == j] - x[truth == j].mean(0)) ** 2).sum() for j in range(3))
    assert fit.inertia == pytest.approx(want_inertia)
    again = kmeans(x, 3, seed=7)
    np.testing.assert_array_equal(again.labels, fit.labels)  # seeded: reproducible
    assert kmeans(x, 3, seed=1, max_iter=1).iterations == 1  # bounded
    with pytest.raises(ValueError):
        kmeans(x, 0)


def test_kmeans_parts_over_a_set_share_labels() -> None:
    x = object_in_centre()
    labels, fit = kmeans_parts([x, x], 3, seed=0)
    np.testing.assert_array_equal(labels[0], labels[1])
    assert len(np.unique(labels[0])) == 3 and fit.centres.shape == (3, 16)


def test_chunked_pca_equals_the_pooled_fit() -> None:
    x = features(5, 90, 10)
    whole = pca_fit(x, 3)
    parts = pca_fit_chunks([x[:20], x[20:21], x[21:].astype(np.float32)], 3)
    np.testing.assert_allclose(parts.components, whole.components, atol=1e-6)
    np.testing.assert_allclose(parts.variance, whole.variance, rtol=1e-6)
    comps, var = numpy_svd_pca(x, 3)
    np.testing.assert_allclose(parts.variance, var, rtol=1e-6)


def test_kmeans_on_a_large_set_fits_a_seeded_sample() -> None:
    rng = np.random.default_rng(8)
    centres = np.eye(4)[:3] * 5  # three directions in 4-D
    truth = [np.repeat(np.arange(3), 40) for _ in range(3)]
    imgs = [centres[t] + 0.05 * rng.normal(size=(120, 4)) for t in truth]
    labels, fit = kmeans_parts(imgs, 3, seed=1, max_points=50)
    assert fit.labels.shape == (50,)  # fitted on 50 drawn patches
    for lab, t in zip(labels, truth, strict=True):
        assert len({(int(a), int(b)) for a, b in zip(t, lab, strict=True)}) == 3  # the same partition
    np.testing.assert_array_equal(labels[0], labels[1])
    again, _ = kmeans_parts(imgs, 3, seed=1, max_points=50)
    np.testing.assert_array_equal(again[2], labels[2])
