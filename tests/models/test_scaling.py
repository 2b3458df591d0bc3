"""Tests for models/figures/scaling.py (paper 1, Section 3.2.1, footnote 4)."""

import math

import numpy as np
import pytest

from models.figures.scaling import (
    dot_product_variance,
    draw_query_keys,
    log_spaced_d_k,
    row_statistics,
    single_row_example,
    softmax,
    softmax_jacobian,
    softmax_saturation,
)


@pytest.mark.parametrize("distribution", ["normal", "rademacher", "uniform"])
def test_dot_product_variance_is_d_k(distribution):
    d_k = [1, 16, 256, 1024]
    stats = dot_product_variance(d_k, n_samples=4000, seed=0, distribution=distribution)
    assert stats.d_k.tolist() == d_k
    assert np.array_equal(stats.theory_variance, np.array(d_k, dtype=float))
    assert np.all(np.abs(stats.mean) < 5 * stats.mean_stderr)
    assert np.all(np.abs(stats.variance - stats.theory_variance) < 5 * stats.variance_stderr)
    slope = np.polyfit(np.log(stats.d_k), np.log(stats.variance), 1)[0]
    assert slope == pytest.approx(1.0, abs=0.05)
    assert np.allclose(stats.scaled_variance, 1.0, atol=0.15)


EPS = np.finfo(np.float64).eps  # tolerances below: this rounding level times a stated margin


def test_dot_product_variance_is_deterministic_and_per_d_k():
    a = dot_product_variance([4, 64], n_samples=500, seed=3)
    b = dot_product_variance([64], n_samples=500, seed=3)
    c = dot_product_variance([4, 64], n_samples=500, seed=3)
    assert a.variance[1] == b.variance[0]
    assert np.array_equal(a.variance, c.variance) and np.array_equal(a.mean, c.mean)
    assert dot_product_variance([64], n_samples=500, seed=4).variance[0] != b.variance[0]


def test_row_statistics_match_explicit_formulas():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((50, 9)) * 3.0  # (rows, keys)
    stats = row_statistics(logits)
    p = softmax(logits)
    assert np.allclose(p.sum(-1), 1.0)
    assert np.allclose(stats["max_prob"], p.max(-1))
    entropy = -(p * np.log(p)).sum(-1)
    assert np.allclose(stats["entropy"], entropy)
    assert np.allclose(stats["entropy_normalised"], entropy / math.log(9))
    fro = np.linalg.norm(softmax_jacobian(p), axis=(-2, -1))
    # Two float64 routes to ||J||_F over n^2 = 81 entries (the closed form subtracts r2^2 - sum r^4): relative
    # error up to about n^2 eps; margin 4 (measured ~75 eps on x86).
    assert np.allclose(stats["jacobian_fro"], fro, rtol=4 * 9**2 * EPS, atol=0)
    # the Jacobian of softmax really is diag(p) - p p^T: finite differences on one row
    row, h = logits[0], 1e-6
    numeric = np.stack([(softmax(row + h * e) - softmax(row - h * e)) / (2 * h) for e in np.eye(9)], axis=1)
    assert np.allclose(softmax_jacobian(p[0]), numeric, atol=1e-8)


def test_row_statistics_extremes():
    uniform = row_statistics(np.zeros(16))
    assert uniform["max_prob"] == pytest.approx(1 / 16)
    assert uniform["entropy"] == pytest.approx(math.log(16))
    assert uniform["entropy_normalised"] == pytest.approx(1.0)
    assert uniform["jacobian_fro"] == pytest.approx(math.sqrt(15) / 16)
    # saturated two-key row: ||J||_F = 2 p1 p2 ~ 3.9e-22, far below any cancellation floor
    sat = row_statistics(np.array([0.0, -50.0]))
    p2 = math.exp(-50.0) / (1.0 + math.exp(-50.0))
    # exp, a division and two products on each side, each within ~1 ulp: margin 2 on 8 roundings
    assert sat["jacobian_fro"] == pytest.approx(2 * (1 - p2) * p2, rel=16 * EPS)
    assert sat["max_prob"] == 1.0 and 0 < sat["entropy"] < 1e-19
    with pytest.raises(ValueError):
        row_statistics(np.zeros(1))


def test_softmax_saturates_without_scaling_and_stays_flat_with_it():
    curves = softmax_saturation([1, 64, 1024], n_keys=64, n_samples=512, seed=0)
    un, sc = curves.unscaled, curves.scaled
    assert curves.d_k.tolist() == [1, 64, 1024]
    # d_k = 1: scaling is the identity
    assert un.max_prob[0] == sc.max_prob[0] and un.jacobian_fro[0] == sc.jacobian_fro[0]
    assert un.max_prob[-1] > 0.9
    assert un.entropy_normalised[-1] < 0.06 and un.entropy[-1] < 0.25
    assert np.all(sc.max_prob < 0.2) and np.all(sc.entropy_normalised > 0.8)
    assert np.ptp(sc.max_prob) < 0.03 and np.ptp(sc.entropy_normalised) < 0.05
    assert np.ptp(sc.jacobian_fro) < 0.03
    assert un.jacobian_fro[-1] < 0.5 * sc.jacobian_fro[-1]
    assert un.jacobian_fro_median[-1] < 1e-2 * sc.jacobian_fro_median[-1]
    assert un.logit_rms[-1] == pytest.approx(32.0, rel=0.05) and sc.logit_rms[-1] == pytest.approx(
        1.0, rel=0.05
    )
    assert curves.uniform_max_prob == 1 / 64 and curves.uniform_entropy == pytest.approx(math.log(64))
    again = softmax_saturation([1, 64, 1024], n_keys=64, n_samples=512, seed=0)
    assert np.array_equal(again.unscaled.jacobian_fro, un.jacobian_fro)


def test_fast_sampler_matches_direct_sampling():
    fast = softmax_saturation([4, 64], n_keys=16, n_samples=2000, seed=1, sampler="fast")
    direct = softmax_saturation([4, 64], n_keys=16, n_samples=2000, seed=1, sampler="direct")
    for attr in ("unscaled", "scaled"):
        f, d = getattr(fast, attr), getattr(direct, attr)
        assert np.allclose(f.max_prob, d.max_prob, atol=0.03)
        assert np.allclose(f.entropy_normalised, d.entropy_normalised, atol=0.03)
        assert np.allclose(f.jacobian_fro, d.jacobian_fro, atol=0.02)
        assert np.allclose(f.logit_rms, d.logit_rms, rtol=0.03)


def test_saturation_curves_for_the_interactive_range():
    # Speed is measured in bench/, never asserted here; this checks the page's request shape.
    d_k = np.round(np.geomspace(1, 1024, 30))
    curves = softmax_saturation(d_k, n_keys=64, n_samples=300, seed=0)
    assert curves.unscaled.max_prob.shape == (30,)
    assert log_spaced_d_k(30, 1024)[[0, -1]].tolist() == [1, 1024]


def test_single_row_example():
    lu, pu, ls, ps = single_row_example(256, n_keys=12, seed=5)
    q, keys = draw_query_keys(256, n_keys=12, seed=5)
    assert lu.shape == pu.shape == ls.shape == ps.shape == (12,)
    assert np.allclose(lu, keys @ q) and np.allclose(ls, lu / 16.0)
    assert np.allclose(pu, softmax(lu)) and pu.sum() == pytest.approx(1.0) and ps.sum() == pytest.approx(1.0)
    assert pu.max() > ps.max()
    again = single_row_example(256, n_keys=12, seed=5)
    assert np.array_equal(again.p_scaled, ps)


def test_query_keys_are_prefix_consistent_across_d_k():
    q_small, k_small = draw_query_keys(10, n_keys=8, seed=2)
    q_big, k_big = draw_query_keys(300, n_keys=8, seed=2)
    assert q_small.shape == (10,) and k_small.shape == (8, 10)
    assert np.array_equal(q_big[:10], q_small) and np.array_equal(k_big[:, :10], k_small)
