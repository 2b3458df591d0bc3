"""Sinusoidal positional encoding and its "relative position is a linear map" property.

Paper 1 ("Attention Is All You Need"), Section 3.5:

    PE(pos, 2i)   = sin(pos / base^(2i / d_model))
    PE(pos, 2i+1) = cos(pos / base^(2i / d_model)),     base = 10000

"We chose this function because we hypothesized it would allow the model to easily learn to attend by
relative positions, since for any fixed offset k, PE(pos+k) can be represented as a linear function of
PE(pos)."  This module makes that sentence checkable: `relative_rotation(k)` is the linear map M_k
(block-diagonal 2x2 rotations by k * w_i), `linearity_check` measures max |M_k PE(pos) - PE(pos+k)|,
also far beyond any training length (the paper's extrapolation argument), and `dot_similarity_by_offset`
shows that PE(pos) . PE(pos+k) = sum_i cos(k w_i) depends on k only.

Everything is plain numpy float64 (no torch): the claims here are about rounding level.

Odd d_model: the formula is evaluated at every column index that exists, so the last column (index
d_model - 1, even) is sin(pos * w_last) with no cos partner. The table is well defined, but no linear map
PE(pos) -> PE(pos+k) exists any more (sin((pos+k)w) needs cos(pos w), which is not in the vector), so
`relative_rotation`, `linearity_check` and `dot_similarity_theory` raise ValueError for odd d_model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

DEFAULT_BASE = 10000.0


def _check_d_model(d_model: int, *, even: bool = False) -> None:
    if int(d_model) != d_model or d_model < 1:
        raise ValueError(f"d_model must be a positive integer, got {d_model!r}")
    if even and d_model % 2:
        raise ValueError(
            f"d_model={d_model} is odd: the last sin column has no cos partner, so PE(pos+k) is not a "
            "linear function of PE(pos); use an even d_model"
        )


def frequencies(d_model: int, base: float = DEFAULT_BASE) -> np.ndarray:
    """Angular frequencies w_i = base^(-2i / d_model), i = 0 .. ceil(d_model / 2) - 1 (Section 3.5).

    Returns float64 (ceil(d_model / 2),), decreasing from w_0 = 1 (wavelength 2*pi) towards 1/base
    (wavelength ~ 2*pi*base). Column 2i of the encoding is sin(pos w_i), column 2i+1 is cos(pos w_i).
    """
    _check_d_model(d_model)
    two_i = np.arange(0, d_model, 2, dtype=np.float64)  # (ceil(d/2),) the even column indices 2i
    return np.power(float(base), -two_i / d_model)


def encode_positions(positions: ArrayLike, d_model: int, base: float = DEFAULT_BASE) -> np.ndarray:
    """PE rows for arbitrary (integer or real) positions: float64 (P, d_model).

    Same formula as `sinusoidal_encoding`, without building the whole table (useful at pos = 1e6).
    """
    pos = np.asarray(positions, dtype=np.float64).reshape(-1)  # (P,)
    w = frequencies(d_model, base)  # (F,) with F = ceil(d_model / 2)
    angles = pos[:, None] * w[None, :]  # (P, F)
    pe = np.empty((pos.shape[0], 2 * w.shape[0]), dtype=np.float64)  # (P, 2F)
    pe[:, 0::2] = np.sin(angles)
    pe[:, 1::2] = np.cos(angles)
    return pe[:, :d_model]  # (P, d_model): drops the orphan cos column when d_model is odd


def sinusoidal_encoding(length: int, d_model: int, base: float = DEFAULT_BASE) -> np.ndarray:
    """The sinusoidal table for positions 0 .. length-1: float64 (length, d_model) (Section 3.5).

    PE[pos, 2i] = sin(pos * w_i), PE[pos, 2i+1] = cos(pos * w_i), w_i = base^(-2i / d_model).
    For odd d_model the last column is the sin of one extra frequency with no cos partner (module doc).
    Cast with `.astype(np.float32)` for plotting.
    """
    if int(length) != length or length < 0:
        raise ValueError(f"length must be a non-negative integer, got {length!r}")
    return encode_positions(np.arange(int(length)), d_model, base)


def relative_rotation(k: float, d_model: int, base: float = DEFAULT_BASE) -> np.ndarray:
    """The linear map M_k with PE(pos + k) = M_k @ PE(pos) for every pos: float64 (d_model, d_model).

    Block-diagonal; block i acts on the pair (sin(pos w_i), cos(pos w_i)) = (s, c). With phi = k * w_i,
    the angle-addition formulas give

        sin(theta + phi) =  cos(phi) s + sin(phi) c
        cos(theta + phi) = -sin(phi) s + cos(phi) c     =>   block_i = [[cos phi,  sin phi],
                                                                         [-sin phi, cos phi]]

    i.e. because the pair is ordered (sin, cos) rather than (cos, sin), the block is the standard
    rotation matrix R(-phi) (clockwise in the (s, c) plane). M_k does not depend on pos, is orthogonal
    (M_k^T M_k = I), and M_k M_j = M_{k+j}; k may be negative or non-integer. Even d_model only.
    """
    _check_d_model(d_model, even=True)
    phi = float(k) * frequencies(d_model, base)  # (d_model/2,)
    c, s = np.cos(phi), np.sin(phi)
    idx = np.arange(0, d_model, 2)  # (d_model/2,) first row/column of each 2x2 block
    m = np.zeros((d_model, d_model), dtype=np.float64)
    m[idx, idx] = c
    m[idx, idx + 1] = s
    m[idx + 1, idx] = -s
    m[idx + 1, idx + 1] = c
    return m


@dataclass(frozen=True)
class LinearityResult:
    """How well PE(pos + k) = M_k PE(pos) holds in float64 (Section 3.5).

    Fields (P = number of positions):
      k, d_model, base: the offset and encoding settings.
      positions: float64 (P,) the positions pos that were checked.
      residual: float64 (P,) max over the d_model components of |M_k PE(pos) - PE(pos + k)|.
      max_residual: float, the max of `residual`.
      rounding_scale: float64 (P,) eps64 * (|pos| + |k|), the size of one rounding error in the largest
        angle. The residual is a fraction of this. The rounding of w_i itself cancels: M_k and PE use the
        same float64 w_i, and the identity holds for any real w. What rounds is the product pos * w_i
        (and (pos + k) * w_i, k * w_i): exact when it fits in 53 bits (always for w_0 = 1 at integer pos),
        else off by at most eps/2 * pos * w_i, which sin/cos pass through (:func:`pair_residual`: w = 0.75
        gives ~1e-16 at pos 1e6, w = 0.75 + 2^-40 ~1e-10). So the residual grows linearly with pos (~1e-14
        at pos ~ 1e2, ~1e-12 at 1e4, ~1e-10 at 1e6). The map itself stays exact; only the products round.
      orthogonality_error: float, max |M_k^T M_k - I|.
    """

    k: float
    d_model: int
    base: float
    positions: np.ndarray
    residual: np.ndarray
    max_residual: float
    rounding_scale: np.ndarray
    orthogonality_error: float


def linearity_check(
    k: float, d_model: int, positions: ArrayLike, base: float = DEFAULT_BASE
) -> LinearityResult:
    """Measure max |M_k PE(pos) - PE(pos + k)| at each given position (float64).

    `positions` may lie far beyond any training length (e.g. 10_000 or 1_000_000): the map M_k is the
    same matrix there, which is the paper's argument that the encoding "may allow the model to
    extrapolate to sequence lengths longer than the ones encountered during training". See
    `LinearityResult.rounding_scale` for the honest size of the float64 residual at large pos.
    """
    _check_d_model(d_model, even=True)
    pos = np.asarray(positions, dtype=np.float64).reshape(-1)  # (P,)
    m_k = relative_rotation(k, d_model, base)  # (d, d)
    half = d_model // 2
    # M_k is block-diagonal, so M_k @ PE(pos) is computed block by block from M_k's own 2x2 blocks:
    # O(P d) instead of O(P d^2), which keeps long tables and large d_model interactive.
    grid = m_k.reshape(half, 2, half, 2)  # (d/2, 2, d/2, 2)
    idx = np.arange(half)
    blocks = grid[idx, :, idx, :]  # (d/2, 2, 2)
    # Largest entry outside the 2x2 blocks: exactly 0 for a block-diagonal M_k. (A difference of two sums
    # would add the summation's rounding, ~eps * d, and depend on the CPU's summation order.)
    outside = grid.copy()
    outside[idx, :, idx, :] = 0.0
    off_block = float(np.abs(outside).max())
    del outside
    pe = encode_positions(pos, d_model, base).reshape(-1, half, 2)  # (P, d/2, 2): (sin, cos) pairs
    pe_shifted = encode_positions(pos + float(k), d_model, base)  # (P, d)
    predicted = np.einsum("iab,pib->pia", blocks, pe).reshape(len(pos), d_model)  # (P, d): M_k @ PE(pos)
    residual = np.abs(predicted - pe_shifted).max(axis=1)  # (P,)
    gram = np.einsum("iba,ibc->iac", blocks, blocks)  # (d/2, 2, 2): B^T B per block
    ortho = max(float(np.abs(gram - np.eye(2)).max()), float(off_block))
    eps = np.finfo(np.float64).eps
    return LinearityResult(
        k=float(k),
        d_model=int(d_model),
        base=float(base),
        positions=pos,
        residual=residual,
        max_residual=float(residual.max()) if residual.size else 0.0,
        rounding_scale=eps * (np.abs(pos) + abs(float(k))),
        orthogonality_error=float(ortho),
    )


def pair_residual(w: float, positions: ArrayLike, k: float) -> np.ndarray:
    """max over the pair of |B_k (sin(pos w), cos(pos w)) - (sin((pos+k) w), cos((pos+k) w))| for one
    frequency w, computed as :func:`linearity_check` does: float64 (P,).

    Both sides use the same float64 w, so w's own rounding cancels; the residual comes from rounding the
    products pos * w, (pos + k) * w and k * w, each off by at most eps/2 times its size (zero when exact).
    """
    pos = np.asarray(positions, dtype=np.float64).reshape(-1)  # (P,)
    phi = float(k) * float(w)
    c, s = np.cos(phi), np.sin(phi)
    sin_p, cos_p = np.sin(pos * w), np.cos(pos * w)  # (P,) each
    shifted = (pos + float(k)) * w  # (P,)
    return np.maximum(
        np.abs(c * sin_p + s * cos_p - np.sin(shifted)), np.abs(-s * sin_p + c * cos_p - np.cos(shifted))
    )


def dot_similarity_theory(ks: ArrayLike, d_model: int, base: float = DEFAULT_BASE) -> np.ndarray:
    """Closed form PE(pos) . PE(pos + k) = sum_i cos(k w_i), float64 with the shape of `ks`.

    From sin(a) sin(b) + cos(a) cos(b) = cos(b - a) per frequency pair: the dot product depends on the
    offset k only, not on pos, and is symmetric in k (it cannot tell "k to the left" from "k to the
    right"). At k = 0 it equals d_model / 2 (every row has squared norm d_model / 2). Even d_model only.
    """
    _check_d_model(d_model, even=True)
    k = np.asarray(ks, dtype=np.float64)
    w = frequencies(d_model, base)  # (d/2,)
    return np.cos(k[..., None] * w).sum(axis=-1)  # (*ks.shape,)


def dot_similarity_by_offset(
    d_model: int, max_k: int, pos: int | ArrayLike = 0, base: float = DEFAULT_BASE
) -> np.ndarray:
    """Empirical PE(pos) . PE(pos + k) for k = 0 .. max_k: float64 (max_k + 1,).

    `pos` is one start position or an array of them; with an array the curve is averaged over those
    positions. For even d_model every position gives the same curve up to rounding (it equals
    `dot_similarity_theory(arange(max_k + 1), d_model)`); for odd d_model the orphan sin column adds a
    pos-dependent term sin(pos w) sin((pos + k) w).
    """
    _check_d_model(d_model)
    if int(max_k) != max_k or max_k < 0:
        raise ValueError(f"max_k must be a non-negative integer, got {max_k!r}")
    starts = np.asarray(pos, dtype=np.float64).reshape(-1)  # (P,)
    if starts.size == 0:
        raise ValueError("pos must contain at least one position")
    offsets = np.arange(int(max_k) + 1, dtype=np.float64)  # (K,)
    total = np.zeros(offsets.shape[0], dtype=np.float64)  # (K,)
    for p in starts:  # one (K, d) table at a time keeps memory at K * d
        table = encode_positions(p + offsets, d_model, base)  # (K, d): rows PE(p + k)
        total += table @ table[0]  # (K,)
    return total / starts.shape[0]


def cosine_similarity_matrix(embeddings: ArrayLike) -> np.ndarray:
    """Pairwise cosine similarity of the rows of E (n, d): float64 (n, n), values in [-1, 1].

    For comparing learned position embeddings (e.g. BERT's 512 x hidden table, or ViT's patch-position
    tiles, ViT paper Fig. 7 centre) with the sinusoidal table. Rows are compared after L2
    normalisation; an all-zero row has similarity 0 with everything (including itself).
    """
    e = np.asarray(embeddings, dtype=np.float64)
    if e.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (n, d), got shape {e.shape}")
    norms = np.linalg.norm(e, axis=1, keepdims=True)  # (n, 1)
    unit = np.divide(e, norms, out=np.zeros_like(e), where=norms > 0)  # (n, d)
    return np.clip(unit @ unit.T, -1.0, 1.0)  # (n, n)


# --- long position ranges in bounded memory (the figure API walks up to 10,000 x 2,048 tables) -------------

CHUNK_ELEMENTS = 1 << 20  # float64 elements per chunk of the position table (8 MB)


def default_dims(d_model: int) -> list[int]:
    """Fastest sin and cos, then one sin at a quarter and one at half of d_model (slower and slower)."""
    return sorted({0, 1, 2 * (d_model // 8), 2 * (d_model // 4)} & set(range(d_model)))


def heatmap_sample(
    length: int, d_model: int, max_rows: int, max_pairs: int, base: float = DEFAULT_BASE
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Every n-th position and (sin, cos) pair of the table, at most max_rows x 2 max_pairs values.

    Returns (values (R, C) float64, positions (R,), columns (C,), position stride, pair stride); the sin and
    cos of a frequency stay side by side.
    """
    pos_stride = -(-length // max_rows)
    pair_stride = -(-(d_model // 2) // max_pairs)
    positions = np.arange(0, length, pos_stride)  # (R,)
    pairs = np.arange(0, d_model // 2, pair_stride)  # (C/2,)
    cols = np.stack([2 * pairs, 2 * pairs + 1], axis=1).reshape(-1)  # (C,) 2i, 2i+1, 2j, 2j+1, ...
    values = encode_positions(positions, d_model, base)[:, cols]  # (R, C)
    return values, positions, cols, pos_stride, pair_stride


def dot_similarity_theory_range(length: int, d_model: int, chunk: int = CHUNK_ELEMENTS) -> np.ndarray:
    """`dot_similarity_theory` for k = 0 .. length-1, in chunks of ``chunk`` elements: float64 (length,)."""
    ks = np.arange(length)  # (length,)
    step = max(1, chunk // max(1, d_model // 2))
    return np.concatenate([dot_similarity_theory(ks[a : a + step], d_model) for a in range(0, length, step)])


@dataclass(frozen=True)
class TablePass:
    """One chunked pass over the PE table (positions 0 .. length-1).

    curves: float64 (D, length), the chosen columns; empirical: float64 (length,), PE(0) . PE(p);
    max_deviation: max over starts s and positions p of |PE(s) . PE(p) - sum_i cos((p - s) w_i)|.
    """

    curves: np.ndarray
    empirical: np.ndarray
    max_deviation: float


def table_pass(
    length: int,
    d_model: int,
    dims: list[int],
    starts: list[int],
    theory: np.ndarray,
    chunk: int = CHUNK_ELEMENTS,
) -> TablePass:
    """Walk the table once in chunks of ``chunk`` elements; ``starts[0]`` must be 0 and ``theory`` the
    closed form for k = 0 .. length-1 (`dot_similarity_theory_range`)."""
    curves = np.empty((len(dims), length), dtype=np.float64)  # (D, L)
    empirical = np.empty(length, dtype=np.float64)  # (L,)
    anchors = encode_positions(starts, d_model)  # (S, d)
    step = max(1, chunk // d_model)
    max_dev = 0.0
    for a in range(0, length, step):
        p = np.arange(a, min(length, a + step))  # (c,)
        table = encode_positions(p, d_model)  # (c, d)
        curves[:, p] = table[:, dims].T  # (D, c)
        dots = table @ anchors.T  # (c, S): PE(p) . PE(s)
        empirical[p] = dots[:, 0]  # starts[0] == 0
        expected = theory[np.abs(p[:, None] - np.asarray(starts)[None, :])]  # (c, S) symmetric in k
        max_dev = max(max_dev, float(np.abs(dots - expected).max()))
    return TablePass(curves, empirical, max_dev)


def linearity_over_range(
    k: float, d_model: int, length: int, chunk: int = CHUNK_ELEMENTS
) -> tuple[np.ndarray, np.ndarray, float]:
    """`linearity_check` at every position 0 .. length-1, in chunks: (residual (length,), rounding_scale
    (length,), orthogonality_error), all float64."""
    residual = np.empty(length, dtype=np.float64)  # (L,)
    scale = np.empty(length, dtype=np.float64)  # (L,)
    step = max(256, (2 * chunk) // d_model)
    ortho = 0.0
    for a in range(0, length, step):
        res = linearity_check(k, d_model, np.arange(a, min(length, a + step)))
        residual[a : a + step], scale[a : a + step] = res.residual, res.rounding_scale
        ortho = max(ortho, res.orthogonality_error)
    return residual, scale, ortho
