"""The head table's positional null and excess (models/text/stats.py) against the offsets page's definitions
(models/text/offsets.py) and against brute force: uniform causal attention scores H_n / n at d = 0 (0.27 at
n = 11), under every view option the null is uniform attention put through the same view transform."""

from __future__ import annotations

import numpy as np
import pytest

from models.text.offsets import allowed_keys, excess_score, null_profile, offset_profile, positional_score
from models.text.stats import STAT_NAMES, apply_view, block_overview, build_axis, head_stats, null_masses

COL = {n: i for i, n in enumerate(STAT_NAMES)}


def causal_uniform(n: int) -> np.ndarray:
    a = np.zeros((n, n), np.float32)
    for i in range(n):
        a[i, : i + 1] = 1 / (i + 1)
    return a


def test_uniform_causal_head_sits_on_its_null_and_a_previous_token_head_exceeds_it() -> None:
    n = 11
    prev = np.zeros((n, n), np.float32)
    prev[0, 0] = 1
    prev[np.arange(1, n), np.arange(n - 1)] = 1
    maps = np.stack([causal_uniform(n), prev])  # (2, n, n)
    special = np.zeros(n, bool)
    s = head_stats(maps, maps, special, special, same_axis=True, causal=True)
    h = sum(1 / k for k in range(1, n + 1))
    np.testing.assert_allclose(s[:, COL["positional_null"]], h / n, rtol=1e-6)
    assert round(float(s[0, COL["positional_null"]]), 2) == 0.27
    np.testing.assert_allclose(s[0, COL["positional"]], h / n, rtol=1e-6)  # the raw score IS the null ...
    np.testing.assert_allclose(s[0, COL["positional_excess"]], 0.0, atol=1e-6)  # ... the excess is 0
    np.testing.assert_allclose(s[1, COL["positional_excess"]], 10 / 11 - (h - 1) / 11, rtol=1e-6)
    enc = head_stats(maps, maps, special, special, same_axis=True)  # no mask: the null is 1/n
    np.testing.assert_allclose(enc[:, COL["positional_null"]], 1 / n, rtol=1e-6)
    cross = head_stats(maps[:, :5], maps[:, :5], special, special[:5], same_axis=False, causal=True)
    assert np.isnan(cross[:, [COL["positional_null"], COL["positional_excess"]]]).all()


def test_table_null_and_excess_equal_the_offsets_definitions_when_nothing_is_hidden() -> None:
    rng = np.random.default_rng(2)
    n = 12
    a = rng.random((2, 3, n, n)).astype(np.float32) * np.tril(np.ones((n, n), np.float32))  # (L, H, n, n)
    a /= a.sum(-1, keepdims=True)
    tokens = [f"t{i}" for i in range(n)]
    axis = build_axis(tokens, [False] * n, list(range(n)), False, False)
    ov = block_overview(a, axis, axis, axis, axis, False, True, 4, causal=True)
    null = null_profile(allowed_keys(n, n, True), 8)  # (19,)
    np.testing.assert_allclose(ov.stats[..., COL["positional_null"]], positional_score(null)[0], rtol=1e-6)
    excess, _ = excess_score(offset_profile(a, 8), null)  # (L, H)
    np.testing.assert_allclose(ov.stats[:, :3, COL["positional_excess"]], excess, atol=1e-6)


@pytest.mark.parametrize(("hide", "merge"), [(True, False), (False, True), (True, True)])
def test_null_goes_through_the_same_view_transform(hide, merge) -> None:
    tokens = ["<s>", "un", "##believ", "##able", "cat", "</s>"]
    special, words = [True, False, False, False, False, True], [None, 0, 0, 0, 1, None]
    axis = build_axis(tokens, special, words, hide, merge)
    block = np.tile(causal_uniform(6), (1, 2, 1, 1))  # (L=1, H=2, 6, 6): uniform causal heads
    got = null_masses(block, axis, axis, True, hide)
    view = apply_view(causal_uniform(6)[None], axis, axis, renormalise=hide)[0]  # (W, W) brute force
    w = view.shape[-1]
    want = [sum(view[i, i + d] for i in range(w) if 0 <= i + d < w) / w for d in range(-(w - 1), w)]
    np.testing.assert_allclose(got, want, atol=1e-7)
    ov = block_overview(block, axis, axis, axis, axis, hide, True, 4, causal=True)
    np.testing.assert_allclose(ov.stats[..., COL["positional_excess"]], 0.0, atol=1e-6)  # heads = the null
