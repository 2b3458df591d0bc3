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
to one fixed offset. A previous-token head scores near 1 at d = -1. The score has a floor set by the mask
and the lengths alone, so it is always read against a **null**: uniform attention over each query's allowed
keys (:func:`uniform_map`), measured on the same lengths and masks (the causal mask, and padding keys read
from the maps by :func:`masked_keys`). Without a mask (an encoder, n keys) the
null profile is (n - |d|) / n^2 and the null score 1/n, at d = 0. In a causal block query i may see keys
0..i, so uniform weight gives 1/(i + 1) at d = 0 and the null score is H_n / n at d = 0 (H_n the n-th
harmonic number): 0.27 at n = 11, the length of the date decoder's input. A head that spreads its weight
evenly is therefore a tent peaked at d = 0 (one-sided in a decoder), not a flat row.

**Excess** of a head = max over |d| <= W of (M[d] - M0[d]), M0 the null profile: the largest share of its
attention at one fixed offset *beyond* what uniform attention over the allowed keys puts there (a
difference of probabilities, in [-1, 1]; 0 for the null itself). Heads are ranked by it.

**Offset-only share** (R^2 against Toeplitz maps): for one map, T(A)[i, j] = the mean of A over the valid
entries of its diagonal j - i (valid: allowed by the mask; in a causal block j <= i), the orthogonal
projection of A onto the maps that depend on the offset only. Then

    R^2 = 1 - sum_valid (A - T(A))^2 / sum_valid (A - mean_valid(A))^2,

the share of the variance of the head's weights (around their mean) that the offset alone explains. Over
several inputs both sums are pooled before the ratio. 1 for a map that depends on the offset only (a
previous-token head); low for a head that attends to fixed absolute positions or to content. Undefined
(NaN) when the map is constant over its valid entries (uniform attention without a mask); uniform causal
attention, 1/(i + 1), has R^2 = 0.185 at n = 11.

For cross-attention (decoder query i, encoder key j) the offset compares positions in two different
sequences: it is still defined, but only means "same index" at d = 0.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def offset_masses(v: np.ndarray, window: int = DEFAULT_WINDOW) -> np.ndarray:
    """(..., W, W) square maps -> (2w + 1, ...) float64: M[d] for |d| <= w = min(window, W - 1) (offset first:
    the head table's positional score is the max over axis 0)."""
    wq = v.shape[-1]
    w = min(window, wq - 1)
    return np.stack(
        [
            np.diagonal(v, offset=d, axis1=-2, axis2=-1).sum(-1, dtype=np.float64) / wq
            for d in range(-w, w + 1)
        ]
    )  # (2w + 1, ...)


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


def allowed_keys(tq: int, tk: int, causal: bool, masked: np.ndarray | None = None) -> np.ndarray:
    """(Tq, Tk) bool: the keys each query may attend to: key index <= query index when ``causal``, and never a
    key of ``masked`` (Tk,) bool (padding, see :func:`masked_keys`)."""
    allowed = np.ones((tq, tk), dtype=bool)  # (Tq, Tk)
    if causal:
        allowed &= np.arange(tk)[None, :] <= np.arange(tq)[:, None]
    if masked is not None:
        allowed &= ~np.asarray(masked, dtype=bool)[None, :]
    return allowed


def masked_keys(block: np.ndarray) -> np.ndarray:
    """(..., Tq, Tk) maps of one input -> (Tk,) bool: the keys no query of any head gives any weight.

    A softmax gives exactly 0 only to a masked key (a padding key in the date model) or on underflow (a score
    gap above ~87 in float32), and not in every head and row at once: so these are the keys the model masks,
    read from its own maps. Causal blocks keep their future keys here; :func:`allowed_keys` adds the causal
    mask."""
    a = np.asarray(block)
    return ~(a > 0).reshape(-1, a.shape[-1]).any(0)  # (Tk,)


def uniform_map(allowed: np.ndarray) -> np.ndarray:
    """(Tq, Tk) bool allowed keys -> (Tq, Tk) float64: uniform attention over each query's allowed keys (the
    null of the scores; a row with no allowed key stays 0)."""
    count = np.maximum(allowed.sum(-1, keepdims=True), 1)  # (Tq, 1)
    return allowed / count


def null_profile(allowed: np.ndarray, window: int = DEFAULT_WINDOW) -> np.ndarray:
    """(2W + 3,) float64: the offset profile of :func:`uniform_map` (module docstring: the null)."""
    return offset_profile(uniform_map(allowed), window)


def excess_score(profile: np.ndarray, null: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., 2W + 3) profile and its (2W + 3,) or (..., 2W + 3) null -> (excess (...,), offset (...,) int):
    the max over |d| <= W of M[d] - M0[d] and its d (module docstring)."""
    window = (profile.shape[-1] - 3) // 2
    gap = profile[..., 1:-1] - np.asarray(null)[..., 1:-1]  # (..., 2W + 1)
    arg = gap.argmax(-1)  # (...,)
    return np.take_along_axis(gap, arg[..., None], -1)[..., 0], arg - window


def toeplitz_sums(block: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., Tq, Tk) maps and (Tq, Tk) bool valid entries -> (residual (...,), total (...,)) float64: the sums
    over valid entries of (A - T(A))^2 and of (A - mean_valid(A))^2, T(A) the per-diagonal mean over the
    valid entries (module docstring). Read one diagonal at a time (float64 per diagonal): no (Tq, Tk)
    float64 copy of the block."""
    a = np.asarray(block)
    tq, tk = a.shape[-2:]
    lead = a.shape[:-2]
    n = int(allowed.sum())
    residual = np.zeros(lead, dtype=np.float64)  # (...,)
    total_sq = np.zeros(lead, dtype=np.float64)  # (...,)
    total = np.zeros(lead, dtype=np.float64)  # (...,)
    for d in range(-(tq - 1), tk):
        v = np.diagonal(allowed, offset=d)  # (n_d,) valid entries of this diagonal
        n_d = int(v.sum())
        if n_d == 0:
            continue
        g = np.diagonal(a, offset=d, axis1=-2, axis2=-1)[..., v].astype(np.float64)  # (..., n_d)
        m = g.mean(-1, keepdims=True)  # (..., 1)
        residual += ((g - m) ** 2).sum(-1)
        total += g.sum(-1)
        total_sq += (g**2).sum(-1)
    mean = total / max(n, 1)  # (...,)
    # sum (A - mean)^2 = sum A^2 - n mean^2; a constant map leaves only rounding (~1e-16 sum A^2): exactly 0
    spread = total_sq - n * mean**2  # (...,)
    return residual, np.where(spread > 1e-12 * total_sq, spread, 0.0)


def r_squared(residual: np.ndarray, total: np.ndarray) -> np.ndarray:
    """1 - residual / total, NaN where total is 0 (a constant map: the share is undefined)."""
    res, tot = np.asarray(residual, dtype=np.float64), np.asarray(total, dtype=np.float64)
    out = np.full(np.broadcast(res, tot).shape, np.nan)
    np.divide(res, tot, out=out, where=tot > 0)
    return np.where(tot > 0, 1.0 - out, np.nan)


def toeplitz_share(block: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """(..., Tq, Tk) maps, (Tq, Tk) bool valid entries -> (...,) float64: the offset-only share R^2 of each
    map (module docstring)."""
    return r_squared(*toeplitz_sums(block, allowed))


@dataclass(frozen=True)
class OffsetSummary:
    """A block's heads over a set of inputs: profile (L, H, 2W + 3), null (2W + 3,) (uniform attention over
    the allowed keys, same lengths and mask), share (L, H) the offset-only R^2, null_share the null's R^2."""

    profile: np.ndarray
    null: np.ndarray
    share: np.ndarray
    null_share: float

    def at_window(self, window: int) -> OffsetSummary:
        """The same summary at a window w <= W (exact, :func:`narrow`)."""
        return OffsetSummary(
            narrow(self.profile, window), narrow(self.null, window), self.share, self.null_share
        )

    @property
    def nbytes(self) -> int:
        return self.profile.nbytes + self.null.nbytes + self.share.nbytes


class ProfileMean:
    """Running mean of offset profiles over inputs, weighted by each input's number of query rows, with the
    same mean for the null (uniform attention over the allowed keys, same lengths and mask) and the pooled
    sums of the offset-only share."""

    def __init__(self) -> None:
        self.total: np.ndarray | None = None
        self.null_total: np.ndarray | None = None
        self.residual: np.ndarray | None = None  # (...,) pooled sum (A - T(A))^2
        self.spread: np.ndarray | None = None  # (...,) pooled sum (A - mean)^2
        self.null_residual = 0.0
        self.null_spread = 0.0
        self.rows = 0

    def add(self, block: np.ndarray, window: int = DEFAULT_WINDOW, causal: bool = False) -> None:
        """One input's maps (..., Tq, Tk); ``causal``: the block masks keys after the query. Padding keys are
        read from the maps (:func:`masked_keys`)."""
        tq, tk = block.shape[-2:]
        allowed = allowed_keys(tq, tk, causal, masked_keys(block))  # (Tq, Tk)
        p = offset_profile(block, window) * tq  # (..., 2W + 3) row-weighted
        p0 = null_profile(allowed, window) * tq  # (2W + 3,) row-weighted
        res, tot = toeplitz_sums(block, allowed)  # (...,) each
        n_res, n_tot = toeplitz_sums(uniform_map(allowed), allowed)  # () each
        if self.total is None:
            self.total, self.null_total, self.residual, self.spread = p, p0, res, tot
        else:
            self.total, self.null_total = self.total + p, self.null_total + p0
            self.residual, self.spread = self.residual + res, self.spread + tot
        self.null_residual += float(n_res)
        self.null_spread += float(n_tot)
        self.rows += tq

    def mean(self) -> np.ndarray:
        if self.total is None or self.rows == 0:
            raise ValueError("no inputs were added")
        return self.total / self.rows

    def null(self) -> np.ndarray:
        """(2W + 3,): the null profile, averaged over the inputs like :meth:`mean`."""
        if self.null_total is None or self.rows == 0:
            raise ValueError("no inputs were added")
        return self.null_total / self.rows

    def offset_share(self) -> np.ndarray:
        """(...,): the pooled offset-only share R^2 of each head (NaN where undefined)."""
        if self.residual is None:
            raise ValueError("no inputs were added")
        return r_squared(self.residual, self.spread)

    def null_offset_share(self) -> float:
        """The pooled offset-only share of the null (NaN without a mask: uniform maps are constant)."""
        return float(r_squared(self.null_residual, self.null_spread))

    def summary(self) -> OffsetSummary:
        return OffsetSummary(self.mean(), self.null(), self.offset_share(), self.null_offset_share())
