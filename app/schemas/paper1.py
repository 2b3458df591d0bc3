"""Schemas of the paper-1 figure API: positional encoding (Section 3.5) and 1/sqrt(d_k) (Section 3.2.1)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from app.schemas.common import TypedArray


class Heatmap(BaseModel):
    values: TypedArray = Field(description="(R, C) float32: PE at the sampled positions and dimensions")
    positions: TypedArray = Field(description="(R,) int32: the position of each row")
    dims: TypedArray = Field(description="(C,) int32: the dimension index of each column")
    position_stride: int = Field(description="every n-th position is shown (1 = all)")
    pair_stride: int = Field(description="every n-th (sin, cos) pair of columns is shown (1 = all)")


class FarCheck(BaseModel):
    pos: float
    residual: float = Field(description="max_d |M_k PE(pos) - PE(pos + k)|")
    rounding_scale: float = Field(description="eps64 * (pos + k): one rounding step of the largest angle")
    ratio: float = Field(description="residual / rounding_scale")


class Linearity(BaseModel):
    k: int
    max_residual: float = Field(description="max over positions 0 .. length-1 and dimensions")
    argmax_pos: int
    orthogonality_error: float = Field(description="max |M_k^T M_k - I|")
    residual: TypedArray = Field(description="(length,) float64 per-position residual")
    rounding_scale: TypedArray = Field(description="(length,) float64 eps64 * (pos + k)")
    m_k: TypedArray = Field(description="(n, n) float64: top-left corner of M_k")
    m_k_size: int
    phi: TypedArray = Field(description="(d_model/2,) float64: rotation angle k * w_i of block i")
    far: list[FarCheck] = Field(description="positions far beyond the table: 10,000, 1,000,000, `far`")
    sweep_positions: TypedArray = Field(description="(S,) float64 log-spaced positions 1 .. 1e9")
    sweep_residual: TypedArray = Field(description="(S,) float64")
    sweep_rounding_scale: TypedArray = Field(description="(S,) float64")


class Similarity(BaseModel):
    theory: TypedArray = Field(description="(length,) float64: sum_i cos(k w_i), k = 0 .. length-1")
    empirical: TypedArray = Field(description="(length,) float64: PE(0) . PE(k)")
    starts: list[int] = Field(description="start positions pos compared against the closed form")
    max_deviation: float = Field(description="max over starts and k of |PE(pos) . PE(pos+k) - theory|")


class PositionalResponse(BaseModel):
    length: int
    d_model: int
    k: int
    base: float
    heatmap: Heatmap
    dims: list[int]
    wavelengths: list[float] = Field(description="2 pi / w_i of each chosen dimension, in positions")
    curves: TypedArray = Field(description="(len(dims), length) float32: PE[:, dim] for each chosen dim")
    similarity: Similarity
    linearity: Linearity


class LearnedPositionsResponse(BaseModel):
    n: int
    hidden: int
    max_positions: int
    source: str
    learned: TypedArray = Field(description="(n, n) float32 cosine similarity of the learned rows")
    sinusoidal: TypedArray = Field(description="(n, n) float32 cosine similarity, d_model = hidden")
    offset_learned: TypedArray = Field(description="(n,) float64 mean similarity at offset k")
    offset_sinusoidal: TypedArray = Field(description="(n,) float64 (exact: constant diagonals)")
    norms: TypedArray = Field(description="(n,) float32 L2 norm of each learned position vector")


class SoftmaxCurves(BaseModel):
    max_prob: TypedArray = Field(description="(n_d,) float64 mean over rows")
    max_prob_median: TypedArray
    entropy: TypedArray = Field(description="(n_d,) float64 nats, mean over rows")
    entropy_median: TypedArray
    jacobian_fro: TypedArray = Field(description="(n_d,) float64 mean ||diag(p) - p p^T||_F")
    jacobian_fro_median: TypedArray
    logit_rms: TypedArray


class SoftmaxPoint(BaseModel):
    max_prob: float
    max_prob_median: float
    entropy: float
    entropy_median: float
    jacobian_fro: float
    jacobian_fro_median: float
    logit_rms: float


class RowStats(BaseModel):
    max_prob: float
    entropy: float
    jacobian_fro: float


class ScalingRow(BaseModel):
    n_keys: int
    logits_unscaled: TypedArray = Field(description="(n_keys,) float64: K q")
    p_unscaled: TypedArray
    logits_scaled: TypedArray = Field(description="(n_keys,) float64: K q / sqrt(d_k)")
    p_scaled: TypedArray
    unscaled: RowStats
    scaled: RowStats


class ScalingAt(BaseModel):
    d_k: int
    variance: float
    variance_theory: float
    variance_stderr: float
    scaled_variance: float
    unscaled: SoftmaxPoint
    scaled: SoftmaxPoint


class ScalingResponse(BaseModel):
    d_k: int
    n_keys: int
    n_samples: int
    var_samples: int
    seed: int
    distribution: Literal["normal", "rademacher", "uniform"]
    grid: TypedArray = Field(description="(n_d,) int32 log-spaced d_k values 1 .. 1024")
    variance: TypedArray = Field(description="(n_d,) float64 sample variance of q . k")
    variance_theory: TypedArray = Field(description="(n_d,) float64 = d_k (footnote 4)")
    variance_stderr: TypedArray
    scaled_variance: TypedArray = Field(description="(n_d,) float64 variance of q . k / sqrt(d_k)")
    unscaled: SoftmaxCurves
    scaled: SoftmaxCurves
    uniform_max_prob: float
    uniform_entropy: float
    uniform_jacobian_fro: float
    at: ScalingAt = Field(description="the same statistics at the requested d_k (its own sample stream)")
    row: ScalingRow
