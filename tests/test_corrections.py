"""Issue 8 section 1: numerical checks behind sentences and docstrings that were corrected."""

from __future__ import annotations

import numpy as np
import pytest

from models.figures.scaling import row_statistics, softmax_jacobian
from models.vision.distance import patch_distances


def _fro(p: np.ndarray) -> np.ndarray:
    """||diag(p) - p p^T||_F per row, straight from the matrix."""
    return np.linalg.norm(softmax_jacobian(p), axis=(-2, -1))


def test_softmax_jacobian_largest_frobenius_norm_is_one_half_at_an_even_two_key_split() -> None:
    """scaling.py docstring: max ||J||_F = 0.5 at p = (1/2, 1/2, 0, ...), not at the uniform row."""
    assert _fro(np.array([0.5, 0.5]))[()] == pytest.approx(0.5, abs=1e-15)
    assert _fro(np.array([0.5, 0.5, 0.0, 0.0]))[()] == pytest.approx(0.5, abs=1e-15)
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 16, 64):
        uniform = _fro(np.full(n, 1.0 / n))[()]
        assert uniform == pytest.approx(np.sqrt(n - 1) / n, rel=1e-12)
        assert uniform <= 0.5 + 1e-15
        # random rows, dense and sparse (small Dirichlet concentration puts mass on few keys)
        p = np.concatenate(
            [rng.dirichlet(np.full(n, a), size=4000) for a in (0.05, 0.3, 1.0, 5.0)]
        )  # (16000, n)
        norms = _fro(p)  # (16000,)
        assert norms.max() <= 0.5 + 1e-12  # rounding level (1e-16) with a wide margin
        # the closed form used by the statistics agrees (logits = log p, p > 0)
        np.testing.assert_allclose(
            row_statistics(np.log(p + 1e-300))["jacobian_fro"], norms, rtol=1e-9, atol=1e-12
        )
    # the whole 3-key simplex on a 1/300 grid: the maximum sits at two keys of 1/2, not at (1/3, 1/3, 1/3)
    i, j = np.meshgrid(np.arange(301), np.arange(301), indexing="ij")
    keep = i + j <= 300
    p = np.stack([i[keep], j[keep], 300 - i[keep] - j[keep]], axis=1) / 300.0  # (45451, 3)
    norms = _fro(p)  # (45451,)
    best = p[norms.argmax()]
    assert norms.max() == pytest.approx(0.5, abs=1e-15) and sorted(best) == pytest.approx([0.0, 0.5, 0.5])
    assert _fro(np.full(3, 1 / 3))[()] == pytest.approx(np.sqrt(2) / 3)  # 0.471 < 0.5


@pytest.mark.parametrize("rows", [2, 7, 14])
def test_walmer_coordinates_divide_by_r_minus_1(rows: int) -> None:
    """distance.py docstring: Walmer's [0, 1] coordinates g / (R - 1) give patches / (R - 1)
    = diagonal * sqrt(2) * R / (R - 1) on a square grid."""
    g = np.stack(np.divmod(np.arange(rows * rows), rows), axis=1) / (rows - 1)  # (P, 2) on [0, 1]^2
    walmer = np.hypot(*(g[:, None, :] - g[None, :, :]).transpose(2, 0, 1))  # (P, P)
    diag = patch_distances((rows, rows), 16, "diagonal").double().numpy()  # (P, P) float32 values
    np.testing.assert_allclose(walmer, diag * np.sqrt(2) * rows / (rows - 1), rtol=4 * 2**-24, atol=1e-7)
