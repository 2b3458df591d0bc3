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


def test_positional_residual_is_a_fraction_of_eps_pos_and_comes_from_i_ge_1() -> None:
    """/positional text: block i = 0 (w_0 = 1, exact angle) stays at rounding level at every pos; the
    residual, from the i >= 1 angles, is a fraction of eps * (pos + k), not a multiple."""
    from models.figures.positional import encode_positions, frequencies, linearity_check, relative_rotation

    eps = np.finfo(np.float64).eps
    pos = np.unique(np.round(np.logspace(0, 9, 400)))  # (P,) integers 1 .. 1e9
    for d_model, k in ((32, 8), (128, 8), (128, -3), (512, 100)):
        m = relative_rotation(k, d_model)  # (d, d)
        res = np.abs(encode_positions(pos, d_model) @ m.T - encode_positions(pos + k, d_model))  # (P, d)
        assert res[:, :2].max() <= 2 * eps  # i = 0: sin/cos of an exact angle, one rounding or two
        ratio = linearity_check(k, d_model, pos).residual / (eps * (pos + abs(k)))  # (P,)
        assert ratio.max() < 1.0 and np.median(ratio) < 0.5
        # the largest wavelength, as the page states it
        w = frequencies(d_model)
        assert w[0] == 1.0
        assert 2 * np.pi / w[-1] == pytest.approx(2 * np.pi * 10000 ** (1 - 2 / d_model), rel=1e-13)


def test_embeddings_caption_is_conditional_on_trained_weights() -> None:
    """/vit-embeddings: the page gets each model's source, and the JS only speaks of a learned layout for
    models that are not random-init (the browser test checks the random case on screen)."""
    from pathlib import Path

    from app.services.catalog import vision_model_choices
    from app.settings import Settings

    models = vision_model_choices(Settings())["models"]
    assert models and all("source" in m for m in models)
    js = (Path(__file__).resolve().parents[2] / "static/js/figures/embeddings.js").read_text()
    assert 'source === "random"' in js and "the model learned the 2-D layout from data" not in js
