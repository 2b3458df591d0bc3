"""Tests for models/figures/positional.py (paper 1, Section 3.5)."""

import math

import numpy as np
import pytest

from models.figures.positional import (
    cosine_similarity_matrix,
    dot_similarity_by_offset,
    dot_similarity_theory,
    encode_positions,
    frequencies,
    linearity_check,
    relative_rotation,
    sinusoidal_encoding,
)

# Tolerances are the float64 rounding level times a stated margin, never one CPU's exact bits:
# - libm's sin, cos and pow are within ~1 ulp on glibc, musl and Apple/ARM, so two evaluations of the same
#   formula may differ by 2 ulp;
# - an angle pos * w is itself rounded to eps * |pos| (w <= 1), which sin/cos pass on unchanged, so every
#   value at position pos is only known to about eps * (|pos| + 1);
# - a dot product of d terms adds up to d such errors.
EPS = np.finfo(np.float64).eps


def angle_tol(pos: float, margin: float = 4.0) -> float:
    """margin x one rounding of the largest angle at |pos| (plus the ulp of sin/cos near 0)."""
    return margin * EPS * (abs(pos) + 1)


def test_frequencies_follow_the_formula():
    w = frequencies(512)
    assert w.shape == (256,) and w.dtype == np.float64
    assert w[0] == 1.0
    for i in (1, 17, 255):
        assert w[i] == pytest.approx(10000.0 ** (-2 * i / 512), rel=4 * EPS)  # two pow calls, <= 2 ulp
    assert np.all(np.diff(w) < 0)
    assert frequencies(7).shape == (4,)


@pytest.mark.parametrize("d_model", [512, 8, 7])
def test_encoding_matches_direct_loop(d_model):
    pe = sinusoidal_encoding(200, d_model)
    assert pe.shape == (200, d_model) and pe.dtype == np.float64
    for pos in (0, 1, 37, 199):
        for col in range(d_model):
            i = col // 2
            angle = pos / 10000.0 ** (2 * i / d_model)
            expected = math.sin(angle) if col % 2 == 0 else math.cos(angle)
            assert pe[pos, col] == pytest.approx(expected, abs=angle_tol(pos))  # pos * w vs pos / base**x
    assert np.array_equal(encode_positions([37, 199], d_model), pe[[37, 199]])


def test_custom_base_and_row_zero():
    pe = sinusoidal_encoding(3, 6, base=100.0)
    assert np.array_equal(pe[0], np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0]))
    assert pe[2, 2] == pytest.approx(math.sin(2 / 100.0 ** (2 / 6)), abs=angle_tol(2))


def test_odd_d_model_has_orphan_sin_and_no_linear_map():
    pe = sinusoidal_encoding(50, 7)
    assert np.allclose(pe[:, 6], np.sin(np.arange(50) * 10000.0 ** (-6 / 7)))
    for fn in (
        lambda: relative_rotation(1, 7),
        lambda: linearity_check(1, 7, [0]),
        lambda: dot_similarity_theory(1, 7),
    ):
        with pytest.raises(ValueError, match="odd"):
            fn()


@pytest.mark.parametrize("k", [1, 2, 5, 17, 100, 999, -3, 2.5])
def test_linearity_residual_below_1e_12_for_pos_below_1000(k):
    result = linearity_check(k, 512, np.arange(1000))
    assert result.residual.shape == (1000,)
    # M_k PE(pos) rounds pos * w and k * w (eps * (|pos| + |k|)), PE(pos + k) rounds (pos + k) * w: about
    # 2 eps (|pos| + |k|) plus the ulp of sin/cos (< 1e-12 for |pos|, |k| < 1000); margin 2 on top (measured
    # ratio < 0.9 on x86).
    bound = 4 * EPS * (np.abs(result.positions) + abs(k) + 1)  # (1000,)
    assert np.all(result.residual <= bound)
    # each 2x2 block [[c, s], [-s, c]]: c^2 + s^2 - 1 has 3 roundings plus the ulp of cos and sin (2 (|c| + |s|)
    # ulp <= 2 sqrt(2) eps): < 4.5 eps; off-block entries are exactly 0. Margin 2.
    assert result.orthogonality_error <= 8 * EPS


def test_linearity_far_beyond_training_length_is_rounding_only():
    near = linearity_check(7, 512, [100])
    mid = linearity_check(7, 512, [10_000])
    far = linearity_check(7, 512, [1_000_000])
    # The residual is a few float64 roundings of the largest angle (~pos), nothing more.
    for r in (near, mid, far):
        assert r.max_residual <= 4 * r.rounding_scale.max()
    assert far.max_residual <= 4 * EPS * (1_000_000 + 7)  # ~1e-9: still rounding of the angle only
    assert near.max_residual < mid.max_residual < far.max_residual  # grows with the angle


def test_rotation_is_orthogonal_block_diagonal_and_composes():
    d = 16
    m = relative_rotation(3, d)
    assert m.shape == (d, d) and m.dtype == np.float64
    assert np.allclose(m.T @ m, np.eye(d), atol=8 * EPS, rtol=0)  # c^2 + s^2 - 1: < 4.5 eps, margin 2
    block_mask = np.kron(np.eye(d // 2), np.ones((2, 2))).astype(bool)
    assert np.all(m[~block_mask] == 0.0)
    w = frequencies(d)
    for i in range(d // 2):
        c, s = math.cos(3 * w[i]), math.sin(3 * w[i])
        block = m[2 * i : 2 * i + 2, 2 * i : 2 * i + 2]
        assert np.allclose(block, [[c, s], [-s, c]], atol=angle_tol(3), rtol=0)  # numpy vs math libm
    assert np.allclose(relative_rotation(0, d), np.eye(d))
    # M_2 M_5 = M_7: angles 2w, 5w, 7w each rounded, plus the products' roundings
    composed = relative_rotation(2, d) @ relative_rotation(5, d)
    assert np.allclose(composed, relative_rotation(7, d), atol=angle_tol(2 + 5 + 7), rtol=0)
    assert np.allclose(relative_rotation(-3, d), m.T, atol=angle_tol(3), rtol=0)
    pe = sinusoidal_encoding(20, d)
    assert not np.allclose(pe[3:] @ m.T, pe[:-3], atol=1e-6)  # M_k shifts forward, not back
    assert np.allclose(pe[:-3] @ m.T, pe[3:], atol=angle_tol(20 + 3), rtol=0)  # positions < 20, k = 3


def test_dot_similarity_depends_only_on_offset():
    d, max_k = 512, 60
    theory = dot_similarity_theory(np.arange(max_k + 1), d)
    assert theory[0] == pytest.approx(d / 2)
    # d/2 terms sin(a) sin(b) + cos(a) cos(b), each off by about two angle roundings at pos + k
    for pos in (0, 1, 777, 12_345):
        tol = (d / 2) * angle_tol(pos + max_k)
        assert np.allclose(dot_similarity_by_offset(d, max_k, pos), theory, atol=tol, rtol=0)
    averaged = dot_similarity_by_offset(d, max_k, np.arange(0, 5000, 97))
    assert averaged.shape == (max_k + 1,)
    assert np.allclose(averaged, theory, atol=(d / 2) * angle_tol(4947 + max_k), rtol=0)
    assert np.allclose(dot_similarity_theory(-np.arange(5), d), dot_similarity_theory(np.arange(5), d))
    assert np.all(np.diff(theory[:10]) < 0)  # nearby positions are the most similar


def test_dot_similarity_odd_d_model_depends_on_pos():
    a = dot_similarity_by_offset(7, 10, 0)
    b = dot_similarity_by_offset(7, 10, 5)
    assert not np.allclose(a, b)


def test_cosine_matrix_of_planted_embeddings():
    assert np.array_equal(cosine_similarity_matrix(np.eye(5) * 3.0), np.eye(5))
    angles = np.array([0.0, 0.3, 1.2, math.pi])
    e = np.stack([np.cos(angles), np.sin(angles)], axis=1) * np.array([[1.0], [2.0], [0.5], [7.0]])
    sim = cosine_similarity_matrix(e)
    assert sim.shape == (4, 4) and sim.dtype == np.float64
    # unit vectors (cos a, sin a): a 2-term dot product after a normalisation, a few roundings; margin 2
    assert np.allclose(sim, np.cos(angles[:, None] - angles[None, :]), atol=angle_tol(math.pi), rtol=0)
    assert sim[0, 3] == pytest.approx(-1.0)
    with_zero = cosine_similarity_matrix(np.array([[1.0, 0.0], [0.0, 0.0]], dtype=np.float32))
    assert np.array_equal(with_zero, np.array([[1.0, 0.0], [0.0, 0.0]]))


def test_cosine_matrix_of_sinusoidal_table_is_toeplitz():
    d = 64
    sim = cosine_similarity_matrix(sinusoidal_encoding(40, d))
    expected = dot_similarity_theory(np.arange(40)[:, None] - np.arange(40)[None, :], d) / (d / 2)
    assert np.allclose(sim, expected, atol=(d / 2) * angle_tol(40), rtol=0)  # d/2 terms, positions < 40
    with pytest.raises(ValueError):
        cosine_similarity_matrix(np.ones(3))
