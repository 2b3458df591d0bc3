"""Why scaled dot-product attention divides by sqrt(d_k): variance growth and softmax saturation.

Paper 1 ("Attention Is All You Need"), Section 3.2.1 and footnote 4: "We suspect that for large values
of d_k, the dot products grow large in magnitude, pushing the softmax function into regions where it has
extremely small gradients. [...] assume that the components of q and k are independent random variables
with mean 0 and variance 1. Then their dot product, q . k = sum_i q_i k_i, has mean 0 and variance d_k."

`dot_product_variance` checks the footnote by sampling; `softmax_saturation` shows the consequence for one
row of attention logits q . k_j over n_keys keys, with and without the 1/sqrt(d_k) factor; and
`single_row_example` gives one concrete row for a slider demo. Plain numpy float64, deterministic per
seed. Each d_k value draws from its own stream SeedSequence([seed, d_k, stream]), so adding or removing
d_k values never changes the numbers at the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

Distribution = Literal["normal", "rademacher", "uniform"]
# E[x^4] of each unit-variance component distribution (for the standard error of the sample variance)
_FOURTH_MOMENT = {"normal": 3.0, "rademacher": 1.0, "uniform": 9.0 / 5.0}
_CHUNK_ELEMENTS = 1 << 20  # random numbers drawn per chunk: bounds memory at d_k * n_samples large


def _rng(seed: int, d_k: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(d_k), int(stream)]))


def _as_d_k(d_k_values: ArrayLike) -> np.ndarray:
    d = np.asarray(d_k_values).reshape(-1)  # (n_d,)
    if d.size == 0 or np.any(d < 1) or np.any(d != np.round(d)):
        raise ValueError(f"d_k_values must be positive integers, got {d_k_values!r}")
    return d.astype(np.int64)


def _draw(rng: np.random.Generator, shape: tuple[int, ...], dist: Distribution) -> np.ndarray:
    """Independent components with mean 0 and variance 1."""
    if dist == "normal":
        return rng.standard_normal(shape)
    if dist == "rademacher":
        return rng.integers(0, 2, size=shape).astype(np.float64) * 2.0 - 1.0
    if dist == "uniform":
        return rng.uniform(-np.sqrt(3.0), np.sqrt(3.0), size=shape)
    raise ValueError(f"unknown distribution {dist!r}")


def log_spaced_d_k(num: int = 30, d_max: int = 1024) -> np.ndarray:
    """About `num` log-spaced integer d_k values from 1 to d_max (duplicates after rounding removed)."""
    return np.unique(np.round(np.geomspace(1, d_max, num)).astype(np.int64))


@dataclass(frozen=True)
class DotProductStats:
    """Empirical moments of q . k versus footnote 4 (all arrays (n_d,), float64 unless stated).

    d_k: int64 the dimensions. mean, variance: sample mean / unbiased variance of q . k over n_samples
    pairs. theory_mean (0) and theory_variance (d_k): the footnote. mean_stderr = sqrt(d_k / n) and
    variance_stderr = sqrt((mu4 - d_k^2 (n - 3) / (n - 1)) / n) with mu4 = E[(q . k)^4] =
    3 d_k^2 + d_k (m4^2 - 3) (m4 = E[x^4] of one component): the exact standard errors of the estimates
    under the footnote's assumptions, for error bars and tolerances. scaled_variance = variance / d_k: the
    variance of q . k / sqrt(d_k), which stays ~1 for every d_k.
    """

    d_k: np.ndarray
    n_samples: int
    distribution: str
    mean: np.ndarray
    variance: np.ndarray
    theory_mean: np.ndarray
    theory_variance: np.ndarray
    mean_stderr: np.ndarray
    variance_stderr: np.ndarray
    scaled_variance: np.ndarray


def dot_product_variance(
    d_k_values: ArrayLike, n_samples: int = 2000, seed: int = 0, distribution: Distribution = "normal"
) -> DotProductStats:
    """Sample n_samples pairs (q, k) with iid unit-variance components per d_k; moments of q . k.

    Footnote 4 of Section 3.2.1: mean 0, variance d_k, whatever the (mean 0, variance 1) distribution;
    `distribution` picks "normal", "rademacher" (+-1) or "uniform" on [-sqrt 3, sqrt 3].
    """
    d = _as_d_k(d_k_values)
    if n_samples < 2:
        raise ValueError("n_samples must be at least 2")
    means, variances = np.empty(d.shape[0]), np.empty(d.shape[0])
    for j, d_k in enumerate(d):
        rng = _rng(seed, d_k, 0)
        rows = max(1, _CHUNK_ELEMENTS // int(d_k))
        dots = np.empty(n_samples, dtype=np.float64)  # (n,)
        for start in range(0, n_samples, rows):
            stop = min(n_samples, start + rows)
            q = _draw(rng, (stop - start, int(d_k)), distribution)  # (n_chunk, d_k)
            k = _draw(rng, (stop - start, int(d_k)), distribution)  # (n_chunk, d_k)
            dots[start:stop] = np.einsum("nd,nd->n", q, k)
        means[j], variances[j] = dots.mean(), dots.var(ddof=1)
    df = d.astype(np.float64)
    m4 = _FOURTH_MOMENT[distribution]
    mu4 = 3.0 * df**2 + df * (m4**2 - 3.0)  # (n_d,) E[(q . k)^4]
    return DotProductStats(
        d_k=d,
        n_samples=int(n_samples),
        distribution=distribution,
        mean=means,
        variance=variances,
        theory_mean=np.zeros_like(df),
        theory_variance=df,
        mean_stderr=np.sqrt(df / n_samples),
        variance_stderr=np.sqrt((mu4 - df**2 * (n_samples - 3) / (n_samples - 1)) / n_samples),
        scaled_variance=variances / df,
    )


def softmax(logits: ArrayLike, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along `axis` (float64)."""
    x = np.asarray(logits, dtype=np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def softmax_jacobian(p: ArrayLike) -> np.ndarray:
    """J = diag(p) - p p^T, the Jacobian d softmax(l) / d l, for probability rows p (..., n) -> (..., n, n)."""
    p = np.asarray(p, dtype=np.float64)
    return p[..., :, None] * np.eye(p.shape[-1]) - p[..., :, None] * p[..., None, :]  # (..., n, n)


def row_statistics(logits: ArrayLike) -> dict[str, np.ndarray]:
    """Per-row softmax statistics of logits (..., n_keys), n_keys >= 2; each output has shape (...,).

    Keys: "max_prob", "entropy" (nats), "entropy_normalised" (entropy / log n_keys, in [0, 1]),
    "jacobian_fro" (||diag(p) - p p^T||_F) and "logit_rms" (sqrt of the mean squared logit).

    The Frobenius norm is used (not the spectral norm) because it has a closed form per row, O(n_keys),
    with no eigen-solve; ||J||_2 <= ||J||_F <= sqrt(n_keys - 1) ||J||_2 (J has rank <= n_keys - 1), so both
    go to 0 together. It is computed without cancellation: with the top probability p_1 and the rest r_j,

        ||J||_F^2 = (p_1 (1 - p_1))^2 + sum_j (r_j (1 - r_j))^2 + 2 p_1^2 sum_j r_j^2 + sum_{j != l} r_j^2 r_l^2

    and 1 - p_1 = delta / (1 + delta), delta = sum_j exp(l_j - l_max) over the other keys, so a saturated row reports its true tiny
    norm (e.g. 2 p_1 p_2 ~ 4e-22 for two keys with a logit gap of 50) instead of a rounding floor ~1e-8.
    The largest value over all rows is 0.5, at an even split between two keys (p = (1/2, 1/2, 0, ...));
    a uniform row over n keys gives sqrt(n_keys - 1) / n_keys, which is 0.5 only for n_keys = 2 and smaller
    beyond (``tests/models/test_corrections.py`` checks both numerically).
    """
    x = np.asarray(logits, dtype=np.float64)
    n = x.shape[-1]
    if n < 2:
        raise ValueError("need at least 2 keys per row")
    top = x.argmax(axis=-1)[..., None]  # (..., 1)
    m = np.take_along_axis(x, top, axis=-1)  # (..., 1)
    e = np.exp(x - m)  # (..., n): 1 at the top key
    np.put_along_axis(e, top, 0.0, axis=-1)  # (..., n): the other keys only
    delta = e.sum(axis=-1, keepdims=True)  # (..., 1) sum of exp(l_j - max) over the other keys
    log_p = x - m - np.log1p(delta)  # (..., n)
    p = np.exp(log_p)  # (..., n)
    p_top = np.take_along_axis(p, top, axis=-1)[..., 0]  # (...,)
    one_minus_top = delta[..., 0] / (1.0 + delta[..., 0])  # (...,) 1 - p_top without cancellation
    rest = p.copy()
    np.put_along_axis(rest, top, 0.0, axis=-1)  # (..., n)
    r2 = (rest**2).sum(axis=-1)  # (...,)
    fro2 = (
        (p_top * one_minus_top) ** 2
        + ((rest * (1.0 - rest)) ** 2).sum(axis=-1)
        + 2.0 * p_top**2 * r2
        + np.maximum(r2**2 - (rest**4).sum(axis=-1), 0.0)
    )
    entropy = -(p * log_p).sum(axis=-1)
    return {
        "max_prob": p_top,
        "entropy": entropy,
        "entropy_normalised": entropy / np.log(n),
        "jacobian_fro": np.sqrt(fro2),
        "logit_rms": np.sqrt((x**2).mean(axis=-1)),
    }


_STAT_KEYS = ("max_prob", "entropy", "entropy_normalised", "jacobian_fro", "logit_rms")


@dataclass(frozen=True)
class SoftmaxStats:
    """Mean, std and median across sampled rows of each `row_statistics` key, per d_k: float64 (n_d,) each.

    Read the Jacobian with the median next to the mean: without scaling the typical row is saturated
    exponentially hard (median ||J||_F ~ 3e-4 at d_k = 1024, 64 keys), but the mean is carried by the
    rare rows whose top two logits nearly tie and only falls like ~1/sqrt(d_k) (~0.07 there).
    """

    max_prob: np.ndarray
    entropy: np.ndarray
    entropy_normalised: np.ndarray
    jacobian_fro: np.ndarray
    logit_rms: np.ndarray
    max_prob_std: np.ndarray
    entropy_std: np.ndarray
    entropy_normalised_std: np.ndarray
    jacobian_fro_std: np.ndarray
    logit_rms_std: np.ndarray
    max_prob_median: np.ndarray
    entropy_median: np.ndarray
    entropy_normalised_median: np.ndarray
    jacobian_fro_median: np.ndarray
    logit_rms_median: np.ndarray


@dataclass(frozen=True)
class SaturationCurves:
    """Softmax statistics of attention rows versus d_k, without and with 1/sqrt(d_k) (Section 3.2.1).

    d_k: int64 (n_d,). unscaled: softmax(q . K^T); scaled: softmax(q . K^T / sqrt(d_k)), computed from
    the same sampled q, K (paired). uniform_*: the values of a uniform row (no preference at all):
    max_prob 1/n_keys, entropy log n_keys, ||J||_F sqrt(n_keys - 1) / n_keys.
    """

    d_k: np.ndarray
    n_keys: int
    n_samples: int
    unscaled: SoftmaxStats
    scaled: SoftmaxStats
    uniform_max_prob: float
    uniform_entropy: float
    uniform_jacobian_fro: float


def _sample_logits(
    rng: np.random.Generator, d_k: int, n_keys: int, n_samples: int, sampler: str
) -> np.ndarray:
    """Unscaled logits q . k_j, q and k_j with iid N(0, 1) components: (n_samples, n_keys)."""
    if sampler == "fast":
        # Given q, the logits q . k_j are iid N(0, |q|^2); |q|^2 ~ chi-square(d_k). Exact in distribution,
        # and the cost no longer depends on d_k.
        q_norm = np.sqrt(rng.chisquare(d_k, size=n_samples))  # (n,)
        return q_norm[:, None] * rng.standard_normal((n_samples, n_keys))  # (n, n_keys)
    if sampler == "direct":
        out = np.empty((n_samples, n_keys), dtype=np.float64)  # (n, n_keys)
        rows = max(1, _CHUNK_ELEMENTS // (d_k * (n_keys + 1)))
        for start in range(0, n_samples, rows):
            stop = min(n_samples, start + rows)
            q = rng.standard_normal((stop - start, d_k))  # (n_chunk, d_k)
            keys = rng.standard_normal((stop - start, n_keys, d_k))  # (n_chunk, n_keys, d_k)
            out[start:stop] = np.einsum("nd,njd->nj", q, keys)
        return out
    raise ValueError(f"unknown sampler {sampler!r}")


def _summarise(per_d: list[dict[str, np.ndarray]]) -> SoftmaxStats:
    fields = {key: np.array([s[key].mean() for s in per_d]) for key in _STAT_KEYS}
    fields.update({f"{key}_std": np.array([s[key].std() for s in per_d]) for key in _STAT_KEYS})
    fields.update({f"{key}_median": np.array([np.median(s[key]) for s in per_d]) for key in _STAT_KEYS})
    return SoftmaxStats(**fields)


def softmax_saturation(
    d_k_values: ArrayLike,
    n_keys: int = 64,
    n_samples: int = 256,
    seed: int = 0,
    sampler: Literal["fast", "direct"] = "fast",
) -> SaturationCurves:
    """Mean softmax statistics of n_samples random attention rows per d_k, unscaled vs scaled.

    Each row: one query q and n_keys keys k_j with iid N(0, 1) components (footnote 4), logits
    l_j = q . k_j (variance d_k) or l_j / sqrt(d_k) (variance 1). Without scaling, as d_k grows the row
    saturates: max_prob -> 1, entropy -> 0, ||diag(p) - p p^T||_F -> 0, i.e. the gradient through the
    softmax vanishes. With scaling all three stay flat in d_k.

    The unscaled mean ||J||_F is not monotone: it first rises (moderately peaked rows have the largest
    Jacobian; an even split between two keys gives 0.5, a uniform row only sqrt(n_keys - 1) / n_keys) and
    then falls once rows saturate; see `SoftmaxStats` for why its median falls much faster than its mean.

    sampler="fast" (default) draws |q| ~ sqrt(chi2(d_k)) and l = |q| z with z ~ N(0, I): the exact joint
    distribution of the logits for Gaussian q, K, at O(n_samples * n_keys) per d_k, so 30 d_k values up to
    1024 with a few hundred rows take milliseconds. sampler="direct" draws q and K explicitly (slow at
    large d_k; kept to validate the shortcut).
    """
    d = _as_d_k(d_k_values)
    if n_keys < 2 or n_samples < 1:
        raise ValueError("need n_keys >= 2 and n_samples >= 1")
    unscaled, scaled = [], []
    for d_k in d:
        logits = _sample_logits(_rng(seed, d_k, 1), int(d_k), int(n_keys), int(n_samples), sampler)
        unscaled.append(row_statistics(logits))
        scaled.append(row_statistics(logits / np.sqrt(d_k)))
    return SaturationCurves(
        d_k=d,
        n_keys=int(n_keys),
        n_samples=int(n_samples),
        unscaled=_summarise(unscaled),
        scaled=_summarise(scaled),
        uniform_max_prob=1.0 / n_keys,
        uniform_entropy=float(np.log(n_keys)),
        uniform_jacobian_fro=float(np.sqrt(n_keys - 1) / n_keys),
    )


def draw_query_keys(d_k: int, n_keys: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One query q (d_k,) and keys K (n_keys, d_k), iid N(0, 1), float64.

    Prefix-consistent: component c of q and of every key is the same for every d_k > c (one row of
    n_keys + 1 normals per component, drawn in order), so moving a d_k slider adds terms to the same
    dot products instead of resampling everything.
    """
    if d_k < 1 or n_keys < 2:
        raise ValueError("need d_k >= 1 and n_keys >= 2")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(n_keys), 2]))
    draws = rng.standard_normal((int(d_k), int(n_keys) + 1))  # (d_k, 1 + n_keys): component-major
    return draws[:, 0].copy(), np.ascontiguousarray(draws[:, 1:].T)  # (d_k,), (n_keys, d_k)


class RowExample(NamedTuple):
    """One attention row at a given d_k (float64 (n_keys,) each); unpacks as a 4-tuple."""

    logits_unscaled: np.ndarray
    p_unscaled: np.ndarray
    logits_scaled: np.ndarray
    p_scaled: np.ndarray


def single_row_example(d_k: int, n_keys: int = 16, seed: int = 0) -> RowExample:
    """(logits_unscaled, p_unscaled, logits_scaled, p_scaled) for one q against n_keys keys.

    logits_unscaled = K q, logits_scaled = K q / sqrt(d_k); p_* are their softmaxes. Built on
    `draw_query_keys`, so for a fixed seed the row changes smoothly as d_k moves.
    """
    q, keys = draw_query_keys(d_k, n_keys, seed)
    logits = keys @ q  # (n_keys,)
    logits_scaled = logits / np.sqrt(d_k)  # (n_keys,)
    return RowExample(logits, softmax(logits), logits_scaled, softmax(logits_scaled))
