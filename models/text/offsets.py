"""Attention mass by relative offset (j - i): do heads attend by relative position? (numpy only)

"Attention Is All You Need", Section 3.5, chose sinusoidal encodings because "we hypothesized it would
allow the model to easily learn to attend by relative positions, since for any fixed offset k, PE_{pos+k}
can be represented as a linear function of PE_pos". This module measures what trained heads do: for one
head, the **offset profile** is

    M[d] = (1 / Tq) * sum_i A[i, i + d]            for |d| <= W,

the mean over query rows of the weight at key i + d (a key outside the sequence counts 0), plus the mass
further left (d < -W) and further right (d > W). The 2W + 3 entries sum to 1 (each row of A does), so M is
a distribution over offsets. Over several inputs the profiles are averaged weighted by their query rows.

**Positional score** of a head = max over |d| <= W of M[d]: the largest share of its attention that goes
to one fixed offset. A previous-token head scores near 1 at d = -1; a head that spreads its weight evenly
over T tokens scores about 1 / T. For cross-attention (decoder query i, encoder key j) the offset compares
positions in two different sequences: it is still defined, but only means "same index" at d = 0.
"""

from __future__ import annotations

import numpy as np

DEFAULT_WINDOW = 8


def offset_profile(block: np.ndarray, window: int = DEFAULT_WINDOW) -> np.ndarray:
    """(..., Tq, Tk) attention maps -> (..., 2 * window + 3) offset profile, float64.

    Column 0: mass at d < -window; columns 1 .. 2W + 1: d = -window .. window; last column: d > window.
    """
    a = np.asarray(block)
    tq, tk = a.shape[-2:]
    lead = a.shape[:-2]
    out = np.zeros((*lead, 2 * window + 3), dtype=np.float64)  # (..., 2W + 3)
    if tq == 0:
        return out
    for c, d in enumerate(range(-window, window + 1), start=1):
        if -tq < d < tk:
            out[..., c] = np.diagonal(a, offset=d, axis1=-2, axis2=-1).sum(-1, dtype=np.float64) / tq
    rows = np.arange(tq)[:, None]  # (Tq, 1)
    cols = np.arange(tk)[None, :]  # (1, Tk)
    left = (cols - rows) < -window  # (Tq, Tk)
    right = (cols - rows) > window  # (Tq, Tk)
    if left.any():
        out[..., 0] = (a * left).sum((-2, -1), dtype=np.float64) / tq
    if right.any():
        out[..., -1] = (a * right).sum((-2, -1), dtype=np.float64) / tq
    return out


def narrow(profile: np.ndarray, window: int) -> np.ndarray:
    """A (..., 2W + 3) profile -> the same profile at a smaller window w <= W (exact: the columns beyond
    ±w move into the two tails)."""
    big = (profile.shape[-1] - 3) // 2
    if not 0 <= window <= big:
        raise ValueError(f"window {window} is not within 0..{big}")
    cut = big - window  # columns on each side that move into the tails
    inner = profile[..., 1 + cut : profile.shape[-1] - 1 - cut]  # (..., 2w + 1)
    left = profile[..., : 1 + cut].sum(-1, keepdims=True)  # (..., 1)
    right = profile[..., profile.shape[-1] - 1 - cut :].sum(-1, keepdims=True)  # (..., 1)
    return np.concatenate([left, inner, right], axis=-1)  # (..., 2w + 3)


def offsets(window: int = DEFAULT_WINDOW) -> list[int]:
    """The offsets of the profile's middle columns: -window .. window."""
    return list(range(-window, window + 1))


def positional_score(profile: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., 2W + 3) profile -> (score (...,), offset (...,) int): the max over |d| <= W of M[d] and its d."""
    window = (profile.shape[-1] - 3) // 2
    inner = profile[..., 1:-1]  # (..., 2W + 1)
    arg = inner.argmax(-1)  # (...,)
    return np.take_along_axis(inner, arg[..., None], -1)[..., 0], arg - window


class ProfileMean:
    """Running mean of offset profiles over inputs, weighted by each input's number of query rows."""

    def __init__(self) -> None:
        self.total: np.ndarray | None = None
        self.rows = 0

    def add(self, block: np.ndarray, window: int = DEFAULT_WINDOW) -> None:
        tq = block.shape[-2]
        p = offset_profile(block, window) * tq  # (..., 2W + 3) row-weighted
        self.total = p if self.total is None else self.total + p
        self.rows += tq

    def mean(self) -> np.ndarray:
        if self.total is None or self.rows == 0:
            raise ValueError("no inputs were added")
        return self.total / self.rows
