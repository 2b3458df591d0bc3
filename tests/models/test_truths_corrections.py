"""Numbers the pages state after the corrections of issue 15, each against an independent computation: the
float64 residual of PE(pos + k) = M_k PE(pos) comes from rounding the products pos * w (not w itself); the
largest possible mean attention distance at 224 px with 16 px patches is 228.5 px; uniform attention over a
CNN window narrower than a patch has distance exactly 0."""

from __future__ import annotations

import math
from fractions import Fraction
from itertools import product

import numpy as np

from models.figures.positional import pair_residual
from models.vision.receptive_field import max_mad, resnet50_receptive_fields, uniform_window_mad

EPS = np.finfo(np.float64).eps


def product_error(pos: float, w: float) -> float:
    """|fl(pos * w) - pos * w| exactly (rational arithmetic)."""
    return float(abs(Fraction(pos * w) - Fraction(pos) * Fraction(w)))


def test_residual_comes_from_the_product_pos_w_not_from_w() -> None:
    pos, k = 1e6, 1.0
    exact_w, inexact_product_w = 0.75, 0.75 + 2.0**-40  # both exactly representable in float64
    assert Fraction(inexact_product_w) == Fraction(3, 4) + Fraction(1, 2**40)
    # 750000 fits in 53 bits: the products are exact, the residual is sin/cos rounding only (~1e-16)
    assert product_error(pos, exact_w) == 0.0 and product_error(pos + k, exact_w) == 0.0
    assert pair_residual(exact_w, [pos], k)[0] <= 2 * EPS
    # 750000 + 10^6 * 2^-40 needs 54 bits: the product rounds, within eps/2 * pos * w
    err = product_error(pos, inexact_product_w)
    assert 0 < err <= EPS / 2 * pos * inexact_product_w
    r = pair_residual(inexact_product_w, [pos], k)[0]
    bound = EPS / 2 * (pos + (pos + k) + k) * inexact_product_w + 4 * EPS  # the three products, then sin/cos
    assert 5e-11 < r <= bound, (r, bound)  # ~1e-10, six orders above w = 0.75 at the same pos


def test_residual_is_the_same_with_w_rounded_either_way() -> None:
    """w's own rounding cancels: w and its neighbour float give residuals of the same size at small pos."""
    w = 10000.0 ** (-2 / 64)
    for v in (w, np.nextafter(w, 1.0), np.nextafter(w, 0.0)):
        assert pair_residual(v, np.arange(100.0), 4.0).max() <= 200 * EPS


def test_largest_mean_attention_distance_at_224_px_is_228_5() -> None:
    rows = cols = 14
    p = 16
    far = [
        max(math.hypot(r - r2, c - c2) for r2, c2 in product(range(rows), range(cols)))
        for r, c in product(range(rows), range(cols))
    ]  # every query's farthest patch, by brute force
    brute = p * sum(far) / len(far)
    assert abs(max_mad((rows, cols), p) - brute) < 1e-9
    assert round(brute, 1) == 228.5 and round(brute) == 229


def test_window_narrower_than_a_patch_has_distance_exactly_zero() -> None:
    rf = [x.rf_pixels for x in resnet50_receptive_fields()]
    assert rf[:2] == [7, 11]  # conv1 and the max-pool
    got = uniform_window_mad((14, 14), 16, [7, 11, 16, 17])
    assert got[0] == 0.0 and got[1] == 0.0 and got[2] == 0.0  # the window stays inside the query's patch
    assert got[3] > 0.0  # one pixel wider than a patch reaches the neighbours
