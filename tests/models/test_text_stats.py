"""View transforms and per-head statistics (models/text/stats.py) on hand-made maps."""

from __future__ import annotations

import numpy as np
import pytest

from models.text.stats import (
    STAT_NAMES,
    apply_view,
    build_axis,
    char_word_ids,
    head_stats,
    pool_max,
    quantise_u8,
    renormalise_rows,
    with_head_mean,
    word_ids_from_pieces,
)

TOKENS = ["[CLS]", "un", "##believ", "##able", "cat", "[SEP]"]
SPECIAL = [True, False, False, False, False, True]
WORDS = [None, 0, 0, 0, 1, None]


def random_rows(*shape: int, seed: int = 0) -> np.ndarray:
    a = np.random.default_rng(seed).random(shape).astype(np.float32)
    return a / a.sum(-1, keepdims=True)


def test_word_ids_from_pieces_wordpiece_bpe_and_sentencepiece():
    assert word_ids_from_pieces(TOKENS, SPECIAL) == WORDS
    assert word_ids_from_pieces(["The", "Ġun", "believ", "able", "Ġcat"], [False] * 5) == [0, 1, 1, 1, 2]
    marian = ["▁The", "▁un", "believ", "able", "</s>"]
    assert word_ids_from_pieces(marian, [False] * 4 + [True]) == [0, 1, 1, 1, None]


def test_char_word_ids_spaces_are_their_own_words():
    chars = ["<s>", "1", "8", "␣", "M", "a", "r"]
    assert char_word_ids(chars, [True] + [False] * 6) == [None, 0, 0, 1, 2, 2, 2]


def test_build_axis_hide_and_merge():
    axis = build_axis(TOKENS, SPECIAL, WORDS, hide_special=False, merge_words=True)
    assert axis.labels == ["[CLS]", "unbelievable", "cat", "[SEP]"]
    assert axis.spans == [(0, 1), (1, 4), (4, 5), (5, 6)]
    assert axis.special == [True, False, False, True]
    hidden = build_axis(TOKENS, SPECIAL, WORDS, hide_special=True, merge_words=False)
    assert hidden.labels == ["un", "##believ", "##able", "cat"]
    assert not any(hidden.special)


def test_merge_sums_keys_and_averages_queries():
    a = random_rows(2, 3, 6, 6)  # (L, H, T, T)
    axis = build_axis(TOKENS, SPECIAL, WORDS, hide_special=False, merge_words=True)
    m = apply_view(a, axis, axis, renormalise=False)
    assert m.shape == (2, 3, 4, 4)
    np.testing.assert_allclose(m.sum(-1), 1.0, atol=1e-6)  # rows still distributions
    # word "unbelievable" = tokens 1..3: key column is a sum, query row a mean
    np.testing.assert_allclose(m[..., 2, 1], a[..., 4, 1:4].sum(-1), rtol=1e-6)
    np.testing.assert_allclose(m[..., 1, 2], a[..., 1:4, 4].mean(-1), rtol=1e-6)
    np.testing.assert_allclose(m[..., 1, 1], a[..., 1:4, 1:4].sum(-1).mean(-1), rtol=1e-6)


def test_hide_special_renormalises_rows():
    a = random_rows(1, 2, 6, 6)
    axis = build_axis(TOKENS, SPECIAL, WORDS, hide_special=True, merge_words=False)
    v = apply_view(a, axis, axis, renormalise=True)
    assert v.shape == (1, 2, 4, 4)
    np.testing.assert_allclose(v.sum(-1), 1.0, atol=1e-6)
    expected = a[..., 1:5, 1:5] / a[..., 1:5, 1:5].sum(-1, keepdims=True)
    np.testing.assert_allclose(v, expected, rtol=1e-6)
    both = apply_view(a, *(2 * [build_axis(TOKENS, SPECIAL, WORDS, True, True)]), renormalise=True)
    np.testing.assert_allclose(both.sum(-1), 1.0, atol=1e-6)


def test_renormalise_rows_keeps_zero_rows_zero():
    out = renormalise_rows(np.array([[0.0, 0.0], [1.0, 3.0]]))
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, [[0, 0], [0.25, 0.75]])


def test_head_stats_on_known_patterns():
    t = 5
    eye = np.eye(t, dtype=np.float32)
    prev = np.zeros((t, t), np.float32)
    prev[0, 0] = 1
    prev[np.arange(1, t), np.arange(t - 1)] = 1
    uniform = np.full((t, t), 1 / t, np.float32)
    maps = np.stack([eye, prev, uniform])  # (3, T, T)
    special = np.array([True, False, False, False, True])
    s = head_stats(maps, maps, special, special, same_axis=True)
    col = {n: i for i, n in enumerate(STAT_NAMES)}
    assert s.shape == (3, len(STAT_NAMES))
    np.testing.assert_allclose(s[0, col["entropy"]], 0.0, atol=1e-5)
    np.testing.assert_allclose(s[0, col["self"]], 1.0)
    np.testing.assert_allclose(s[0, col["offset"]], 0.0)
    np.testing.assert_allclose(s[1, col["previous"]], 1.0)
    np.testing.assert_allclose(s[1, col["offset"]], -(t - 1) / t, rtol=1e-6)  # row 0 attends to itself
    np.testing.assert_allclose(s[2, col["entropy"]], np.log(t), rtol=1e-5)
    np.testing.assert_allclose(s[2, col["next"]], 1 / t, rtol=1e-6)
    # special share: mean over the 3 non-special queries of the mass on keys 0 and 4
    np.testing.assert_allclose(s[:, col["special"]], [0.0, 1 / 3, 2 / t], rtol=1e-6)
    cross = head_stats(maps[:, :, :3], maps[:, :, :3], special[:3], special, same_axis=False)
    assert np.isnan(cross[:, [col["self"], col["previous"], col["next"], col["offset"]]]).all()
    assert np.isfinite(cross[:, col["entropy"]]).all()


def test_with_head_mean_and_pool_max_and_quantise():
    a = random_rows(2, 3, 7, 9)
    m = with_head_mean(a)
    assert m.shape == (2, 4, 7, 9)
    np.testing.assert_allclose(m[:, 3], a.mean(1), rtol=1e-6)
    p = pool_max(a, 4)
    assert p.shape == (2, 3, 4, 4)
    assert p.max() == pytest.approx(a.max())
    np.testing.assert_allclose(
        p[..., 0, 0], a[..., 0:1, 0:2].max(axis=(-2, -1))
    )  # blocks start at k * n // size
    assert pool_max(a, 64).shape == a.shape  # never upsampled
    q, scale = quantise_u8(a, per_map=True)
    assert q.dtype == np.uint8 and scale.shape == (2, 3)
    assert (q.reshape(6, -1).max(-1) == 255).all()
    np.testing.assert_allclose(q / 255.0 * scale[..., None, None], a, atol=scale.max() / 510 + 1e-7)
    q1, s1 = quantise_u8(a, per_map=False)
    np.testing.assert_allclose(q1 / 255.0, a, atol=1 / 510 + 1e-7)
    assert (s1 == 1).all()


@pytest.mark.parametrize("n,size", [(500, 64), (65, 64), (129, 64), (7, 3), (64, 64), (10, 4)])
def test_pool_max_is_max_over_the_reduceat_blocks(n, size):
    """The gather-max pooling gives exactly ``np.maximum.reduceat`` at starts i n // size on both axes."""
    a = np.random.default_rng(n).random((3, n, n + 3), dtype=np.float32)  # (H, Tq, Tk)
    ref = a
    for axis, m in ((-2, n), (-1, n + 3)):
        if m > size:
            ref = np.maximum.reduceat(ref, (np.arange(size) * m) // size, axis=axis)
    got = pool_max(a, size)
    assert got.shape == ref.shape and got.dtype == np.float32
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("hide_special,merge_words", [(False, False), (True, False), (False, True)])
def test_block_overview_matches_head_stats_and_uses_recorded_entropy_only_as_is(hide_special, merge_words):
    """block_overview's statistics are head_stats of the view (and its head mean); the forward's row
    entropies replace the log pass only when the view is the token map itself (nothing hidden or merged)."""
    from models.text.stats import block_overview, null_masses

    a = random_rows(2, 3, 6, 6)  # (L, H, T, T)
    qa = build_axis(TOKENS, SPECIAL, WORDS, hide_special, merge_words)
    un = build_axis(TOKENS, SPECIAL, WORDS, False, merge_words)
    special = np.array(un.special)

    def overview(row_entropy):
        return block_overview(
            a, qa, qa, un, un, hide_special, True, 4, keep_view=True, row_entropy=row_entropy
        )

    plain = overview(None)
    ref = head_stats(
        with_head_mean(plain.view),
        with_head_mean(apply_view(a, un, un, False)),
        special,
        special,
        True,
        null=null_masses(a, qa, qa, False, hide_special),  # the null through the same view transform
    )
    np.testing.assert_allclose(plain.stats, ref, rtol=1e-6, atol=1e-7)  # float32 rounding, different order
    exact = -(a * np.log(a)).sum(-1, dtype=np.float64)  # (L, H, T)
    recorded = overview(exact.astype(np.float32)).stats
    if hide_special or merge_words:  # the view is not the token map: the recorded rows do not apply
        np.testing.assert_array_equal(recorded, plain.stats)
    else:
        np.testing.assert_allclose(recorded[:, :3, 0], exact.mean(-1), rtol=1e-6)
        np.testing.assert_allclose(recorded, plain.stats, rtol=1e-5)  # log pass vs recorded: eps32 x T x 16
