"""The positional score against its null (issue 15, "the positional score ranks a baseline"): uniform
attention over the allowed keys on the same lengths and mask, checked by brute force on hand-made lengths;
the excess over it; and the offset-only share (projection onto Toeplitz maps) against a brute-force
projection."""

from __future__ import annotations

import numpy as np
import pytest

from models.text.offsets import (
    ProfileMean,
    allowed_keys,
    excess_score,
    masked_keys,
    null_profile,
    offset_profile,
    positional_score,
    toeplitz_share,
    toeplitz_sums,
    uniform_map,
)

TOL = 1e-12


def brute_uniform(tq: int, tk: int, causal: bool) -> np.ndarray:
    """Uniform attention over the allowed keys, written out row by row."""
    a = np.zeros((tq, tk))
    for i in range(tq):
        keys = [j for j in range(tk) if not causal or j <= i]
        for j in keys:
            a[i, j] = 1.0 / len(keys)
    return a


def brute_profile(a: np.ndarray, window: int) -> np.ndarray:
    """M[d] = mean over rows of A[i, i + d], with the two tails, by a double loop."""
    tq, tk = a.shape
    out = np.zeros(2 * window + 3)
    for i in range(tq):
        for j in range(tk):
            d = j - i
            out[0 if d < -window else 2 * window + 2 if d > window else d + window + 1] += a[i, j] / tq
    return out


@pytest.mark.parametrize(("tq", "tk", "causal"), [(11, 11, True), (5, 5, True), (7, 7, False), (4, 9, False)])
def test_null_equals_brute_force_uniform_attention(tq, tk, causal) -> None:
    np.testing.assert_allclose(
        uniform_map(allowed_keys(tq, tk, causal)), brute_uniform(tq, tk, causal), atol=TOL
    )
    np.testing.assert_allclose(
        null_profile(allowed_keys(tq, tk, causal), 4),
        brute_profile(brute_uniform(tq, tk, causal), 4),
        atol=TOL,
    )


def test_causal_null_score_is_harmonic_over_n_at_zero() -> None:
    for n in (1, 2, 11, 30):
        score, best = positional_score(null_profile(allowed_keys(n, n, True), 8))
        assert best == 0 and abs(score - sum(1 / k for k in range(1, n + 1)) / n) < TOL
    score, _ = positional_score(null_profile(allowed_keys(11, 11, True)))
    assert round(float(score), 2) == 0.27  # the date decoder's length: the floor the issue measured
    score, best = positional_score(null_profile(allowed_keys(20, 20, False)))
    assert best == 0 and abs(score - 1 / 20) < TOL  # no mask: 1/n


def test_null_over_several_lengths_is_the_row_weighted_mean() -> None:
    m = ProfileMean()
    for n in (3, 8, 11):
        m.add(np.tile(brute_uniform(n, n, True), (2, 1, 1)), 4, causal=True)  # (H=2, n, n)
    want = sum(n * brute_profile(brute_uniform(n, n, True), 4) for n in (3, 8, 11)) / 22
    np.testing.assert_allclose(m.null(), want, atol=TOL)
    np.testing.assert_allclose(m.mean()[0], want, atol=TOL)  # uniform heads ARE the null ...
    excess, _ = excess_score(m.mean(), m.null())
    np.testing.assert_allclose(excess, 0.0, atol=TOL)  # ... so their excess is 0


def test_excess_ranks_a_previous_token_head_over_a_uniform_one() -> None:
    n = 11
    prev = np.zeros((n, n))
    prev[0, 0] = 1.0
    prev[np.arange(1, n), np.arange(n - 1)] = 1.0
    block = np.stack([brute_uniform(n, n, True), prev])  # (H=2, n, n)
    p, p0 = offset_profile(block, 4), null_profile(allowed_keys(n, n, True), 4)
    excess, at = excess_score(p, p0)
    assert at[1] == -1  # (the uniform head has excess 0 at every offset)
    # previous-token head: 10/11 at d = -1 against uniform's (H_11 - 1) / 11 there
    h = sum(1 / k for k in range(1, n + 1))
    np.testing.assert_allclose(excess, [0.0, 10 / 11 - (h - 1) / 11], atol=TOL)


def brute_toeplitz_r2(a: np.ndarray, causal: bool) -> float:
    """Project onto offset-only maps by explicit diagonal means over the valid entries, then R^2."""
    tq, tk = a.shape
    valid = [(i, j) for i in range(tq) for j in range(tk) if not causal or j <= i]
    t = np.zeros_like(a)
    for d in {j - i for i, j in valid}:
        cells = [(i, j) for i, j in valid if j - i == d]
        mean_d = np.mean([a[c] for c in cells])
        for c in cells:
            t[c] = mean_d
    mu = np.mean([a[c] for c in valid])
    res = sum((a[c] - t[c]) ** 2 for c in valid)
    tot = sum((a[c] - mu) ** 2 for c in valid)
    return 1 - res / tot


def test_toeplitz_share_is_one_for_an_offset_only_map_and_matches_brute_force() -> None:
    rng = np.random.default_rng(5)
    f = rng.random(2 * 9 - 1)
    toeplitz = f[np.arange(9)[None, :] - np.arange(9)[:, None] + 8]  # (9, 9) A[i, j] = f(j - i)
    assert abs(toeplitz_share(toeplitz, allowed_keys(9, 9, False)) - 1.0) < 1e-12
    assert (
        abs(toeplitz_share(np.tril(toeplitz), allowed_keys(9, 9, True)) - 1.0) < 1e-12
    )  # causal: valid diagonals only
    for causal, (tq, tk) in ((False, (6, 9)), (False, (8, 8)), (True, (8, 8))):
        a = rng.dirichlet(np.ones(tk), size=(3, tq))  # (H=3, Tq, Tk)
        if causal:
            a = np.tril(a) / np.tril(a).sum(-1, keepdims=True)
        got = toeplitz_share(a, allowed_keys(tq, tk, causal))  # (3,)
        np.testing.assert_allclose(got, [brute_toeplitz_r2(x, causal) for x in a], atol=1e-12)
    assert np.isnan(toeplitz_share(np.full((5, 5), 0.2), allowed_keys(5, 5, False)))  # constant: undefined
    assert abs(toeplitz_share(brute_uniform(11, 11, True), allowed_keys(11, 11, True)) - 0.185) < 5e-4


def test_pooled_share_over_inputs_pools_the_sums() -> None:
    rng = np.random.default_rng(6)
    a, b = rng.dirichlet(np.ones(6), size=(2, 6)), rng.dirichlet(np.ones(4), size=(2, 4))  # (H, T, T)
    m = ProfileMean()
    m.add(a, 3)
    m.add(b, 3)
    (ra, ta), (rb, tb) = (
        toeplitz_sums(a, allowed_keys(6, 6, False)),
        toeplitz_sums(b, allowed_keys(4, 4, False)),
    )
    np.testing.assert_allclose(m.offset_share(), 1 - (ra + rb) / (ta + tb), atol=TOL)
    assert np.isnan(m.null_offset_share())  # uniform without a mask is constant


def brute_uniform_masked(tq: int, tk: int, causal: bool, pad: set[int]) -> np.ndarray:
    a = np.zeros((tq, tk))
    for i in range(tq):
        keys = [j for j in range(tk) if (not causal or j <= i) and j not in pad]
        for j in keys:
            a[i, j] = 1.0 / len(keys)
    return a


def test_padding_keys_are_read_from_the_maps_and_left_out_of_the_null() -> None:
    rng = np.random.default_rng(7)
    n, pad = 8, {5, 6, 7}  # a decoder whose last three inputs are padding (the model masks them)
    allowed = allowed_keys(n, n, True, np.isin(np.arange(n), list(pad)))
    a = rng.random((2, 3, n, n)) * allowed  # (L, H, n, n)
    a /= a.sum(-1, keepdims=True)
    assert masked_keys(a).tolist() == [j in pad for j in range(n)]
    np.testing.assert_allclose(uniform_map(allowed), brute_uniform_masked(n, n, True, pad), atol=TOL)
    m = ProfileMean()
    m.add(a, 4, causal=True)
    np.testing.assert_allclose(m.null(), brute_profile(brute_uniform_masked(n, n, True, pad), 4), atol=TOL)
    want = [brute_toeplitz_r2_masked(x, allowed) for x in a.reshape(6, n, n)]
    np.testing.assert_allclose(m.offset_share().reshape(6), want, atol=1e-12)


def brute_toeplitz_r2_masked(a: np.ndarray, allowed: np.ndarray) -> float:
    valid = list(zip(*np.nonzero(allowed), strict=True))
    t = {}
    for d in {j - i for i, j in valid}:
        cells = [(i, j) for i, j in valid if j - i == d]
        t.update(dict.fromkeys(cells, np.mean([a[c] for c in cells])))
    mu = np.mean([a[c] for c in valid])
    return 1 - sum((a[c] - t[c]) ** 2 for c in valid) / sum((a[c] - mu) ** 2 for c in valid)


def test_the_committed_date_model_gets_dates_not_sentences() -> None:
    """The shipped checkpoint's spec has name "" (source dates_checkpoint): it was measured on English
    sentences before, which a date normaliser never sees."""
    from types import SimpleNamespace

    from app.services.offsets import N_DATES, SENTENCES, corpus_inputs
    from models.text.analysis import DATES, MINILM

    dates = corpus_inputs(SimpleNamespace(spec=DATES))
    assert len(dates) == N_DATES and all(any(c.isdigit() for c in t) for t in dates)
    assert corpus_inputs(SimpleNamespace(spec=MINILM)) == list(SENTENCES)
