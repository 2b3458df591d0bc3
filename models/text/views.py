"""Every derived view of one text analysis: pure functions from a :class:`TextAnalysis` to numpy arrays.

The one entry point the front doors call (the web services in the CPU pool, the notebook, the export
command); the math lives beside it: the view options and per-head statistics in ``stats.py``, the head
view's strongest lines in ``lines.py``, relative-offset profiles in ``offsets.py``, Section 3.2.1 for one
query row in ``neuron.py``. numpy only (no web layer). Views are built one layer at a time in float32.

The view options are those of the text page: ``hide_special`` drops special tokens from both axes and
renormalises every row over what is left; ``merge_words`` sums a word's key columns and averages its query
rows (``stats.apply_view``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from models.text.analysis import BLOCK_ORDER, TextAnalysis, TokenSeq
from models.text.lines import top_k_lines
from models.text.neuron import LayerQK, NeuronRow, allowed_keys, neuron_row, row_tolerance
from models.text.offsets import OffsetSummary, ProfileMean, excess_score, positional_score
from models.text.stats import Axis, BlockOverview, apply_view, block_overview, build_axis, quantise_u8
from models.text.steps import step_labels


def axis(seq: TokenSeq, hide_special: bool, merge_words: bool) -> Axis:
    """The labels, special flags and token spans one side shows under the view options."""
    return build_axis(seq.tokens, seq.special, seq.word_ids, hide_special, merge_words)


def axes(a: TextAnalysis, hide_special: bool, merge_words: bool) -> dict[str, Axis]:
    """``{"source": Axis, "target": Axis}`` (target only for encoder-decoders)."""
    out = {"source": axis(a.source, hide_special, merge_words)}
    if a.target is not None:
        out["target"] = axis(a.target, hide_special, merge_words)
    return out


def decoder_steps(a: TextAnalysis, hide_special: bool, merge_words: bool) -> list[str] | None:
    """The target axis's rows named by the step they write ("<s> → 1", "1 → 7", ...), or None without a
    decoder (:func:`models.text.steps.step_labels`; ``predicted`` holds what each decoder row writes)."""
    if a.target is None or a.predicted is None:
        return None
    x = axis(a.target, hide_special, merge_words)
    return step_labels(x.labels, a.predicted, x.spans)


def block_names(a: TextAnalysis) -> list[str]:
    """The analysis's blocks in display order: encoder self, decoder self, cross."""
    return [b for b in BLOCK_ORDER if b in a.blocks]


def layer_view(a: TextAnalysis, kind: str, layer: int, hide_special: bool, merge_words: bool) -> np.ndarray:
    """(H, Wq, Wk) float32: every head of one layer under the view options."""
    q, k, _ = a.axes[kind]
    qa, ka = axis(a.side(q), hide_special, merge_words), axis(a.side(k), hide_special, merge_words)
    return apply_view(a.blocks[kind][layer], qa, ka, renormalise=hide_special)  # (H, Wq, Wk)


def head_view(
    a: TextAnalysis, kind: str, layer: int, head: int | None, hide_special: bool, merge_words: bool
) -> np.ndarray:
    """(Wq, Wk) float32: one head, or (head None) the mean of the heads, under the view options."""
    views = layer_view(a, kind, layer, hide_special, merge_words)  # (H, Wq, Wk)
    return views[head] if head is not None else views.mean(axis=0)  # (Wq, Wk)


def layer_u8(view: np.ndarray) -> np.ndarray:
    """uint8 probability x 255 (1/255 steps, one scale for all maps) of any float view."""
    return quantise_u8(view, per_map=False)[0]


def layer_lines(
    a: TextAnalysis, kind: str, layer: int, hide_special: bool, merge_words: bool, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """One layer's k strongest keys per (head, query) for the head view of a long input:
    index (H, Wq, k) uint16 and weight (H, Wq, k) uint8 (:func:`models.text.lines.top_k_lines`)."""
    return top_k_lines(layer_view(a, kind, layer, hide_special, merge_words), k)


def lines_of(view: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(L, H, Wq, k) index and weight of every layer of an (L, H, Wq, Wk) view."""
    idx, w = zip(*(top_k_lines(view[layer], k) for layer in range(view.shape[0])), strict=True)
    return np.stack(idx), np.stack(w)


def view_bytes(a: TextAnalysis, hide_special: bool, merge_words: bool) -> int:
    """float32 bytes of every block under the view options (decides whether maps go inline)."""
    n = {side: len(x.spans) for side, x in axes(a, hide_special, merge_words).items()}
    return sum(4 * b.shape[0] * b.shape[1] * n[a.axes[k][0]] * n[a.axes[k][1]] for k, b in a.blocks.items())


def overviews(
    a: TextAnalysis, hide_special: bool, merge_words: bool, thumb: int, keep_view: bool
) -> dict[str, BlockOverview]:
    """Per block (display order): per-head statistics (L, H + 1, S), max-pooled uint8 thumbnails, and with
    ``keep_view`` the (L, H, Wq, Wk) float32 maps under the options (:func:`models.text.stats.block_overview`).
    Row entropies come from the capture when it recorded them (no log pass over the maps)."""
    shown, full = axes(a, hide_special, merge_words), axes(a, False, merge_words)
    out = {}
    for kind in block_names(a):
        q, k, causal = a.axes[kind]
        out[kind] = block_overview(
            a.blocks[kind],
            shown[q],
            shown[k],
            full[q],
            full[k],
            hide_special,
            same_axis=q == k,
            thumb=thumb,
            keep_view=keep_view,
            row_entropy=a.entropy.get(kind),
            causal=causal,
        )
    return out


def token_distance(a: TextAnalysis) -> dict[str, np.ndarray]:
    """Per block (L, H) float32 mean token distance: sum_j A[i, j] |j - i| averaged over every query token i
    (special tokens included), in tokens; the text analogue of the ViT's mean attention distance.
    Cross-attention has no shared positions: NaN there."""
    out = {}
    for kind in block_names(a):
        block = a.blocks[kind]  # (L, H, Tq, Tk)
        q, k, _ = a.axes[kind]
        if q != k:
            out[kind] = np.full(block.shape[:2], np.nan, np.float32)
            continue
        t = block.shape[-1]
        d = np.abs(np.arange(t)[None, :] - np.arange(t)[:, None]).astype(np.float32)  # (T, T)
        out[kind] = np.einsum("lhij,ij->lhi", block, d).mean(-1).astype(np.float32)  # (L, H)
    return out


# ----------------------------------------------------------------------------------------- offsets


def offset_means(analyses: Iterable[TextAnalysis], window: int) -> dict[str, OffsetSummary]:
    """Per block: the relative-offset profile (L, H, 2W + 3) of every head averaged over the analyses
    (row-weighted), with the null of uniform attention over the allowed keys for the same lengths and masks
    and the offset-only share (:class:`models.text.offsets.ProfileMean`, ``.summary()``)."""
    acc: dict[str, ProfileMean] = {}
    for a in analyses:
        for kind, block in a.blocks.items():  # (L, H, Tq, Tk)
            acc.setdefault(kind, ProfileMean()).add(block, window, causal=a.axes[kind][2])
    return {k: m.summary() for k, m in acc.items()}


@dataclass(frozen=True)
class OffsetView:
    """One block's offset profiles narrowed to a window, scored against the null of uniform attention over the
    allowed keys (:mod:`models.text.offsets`)."""

    profile: np.ndarray  # (L, H, 2W + 3) float32: mass beyond -W, at each d = -W..W, beyond +W
    score: np.ndarray  # (L, H): the positional score, max over |d| <= W of the profile
    best: np.ndarray  # (L, H): the offset d where it peaks
    null: np.ndarray  # (2W + 3,) float64: the same profile for uniform attention over the allowed keys
    null_score: float  # the null's positional score
    null_at: int  # the null's best offset
    excess: np.ndarray  # (L, H): max over d of profile - null (models.text.offsets.excess_score)
    excess_at: np.ndarray  # (L, H): where that excess peaks
    share: np.ndarray  # (L, H): the offset-only share (R^2 of the projection onto Toeplitz maps)
    null_share: float  # the same share for the null maps (NaN where undefined)


def offset_view(summary: OffsetSummary, window: int) -> OffsetView:
    """A wide summary narrowed to ``window`` and scored (:func:`models.text.offsets.positional_score`,
    :func:`models.text.offsets.excess_score`)."""
    s = summary.at_window(window)
    profile = s.profile.astype(np.float32)  # (L, H, 2W + 3)
    score, best = positional_score(profile)  # (L, H) each
    null_score, null_at = positional_score(s.null)  # () each
    excess, excess_at = excess_score(s.profile, s.null)  # (L, H) each
    return OffsetView(
        profile,
        score,
        best,
        s.null,
        float(null_score),
        int(null_at),
        excess,
        excess_at,
        s.share,
        s.null_share,
    )


# ------------------------------------------------------------------------------------------ neuron


@dataclass(frozen=True)
class NeuronView:
    """Section 3.2.1 for one query row, and how it compares with the captured probabilities."""

    row: NeuronRow
    captured: np.ndarray  # (Tk,) float64, the analysis's row
    max_abs_diff: float
    tolerance: float

    @property
    def matches(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def neuron_view(
    a: TextAnalysis, qk: LayerQK, keep: list[bool] | None, kind: str, layer: int, head: int, query: int
) -> NeuronView:
    """One query row of one head (``qk`` holds that head at index 0) recomputed from q and k, checked
    against the captured probabilities within float32 rounding (:func:`models.text.neuron.row_tolerance`)."""
    _, _, causal = a.axes[kind]
    row = neuron_row(qk, 0, query, allowed_keys(query, qk.k.shape[1], causal, keep))
    captured = a.blocks[kind][layer, head, query].astype(np.float64)  # (Tk,)
    return NeuronView(row, captured, float(np.abs(row.probs - captured).max()), row_tolerance(row))
