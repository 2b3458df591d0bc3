"""Schemas of the features and norms views (models/vision/feature_views.py): typed arrays, only what is drawn."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.schemas.common import AnalysisView, TypedArray


class FeaturesPCAResponse(AnalysisView):
    threshold: float = Field(description="foreground = first component > threshold")
    foreground_only: bool = Field(description="the RGB components were fitted on the foreground patches only")
    flipped: bool = Field(
        description="the first component's sign was flipped by the orientation rule or flip"
    )
    first: TypedArray = Field(description="(rows, cols) float32: score on the first principal component")
    rgb: TypedArray = Field(description="(rows, cols, 3) uint8: components 1-3 of the RGB PCA, 1st-99th pct")
    foreground: TypedArray = Field(description="(rows, cols) uint8: 1 where first > threshold")
    explained: list[float] = Field(description="share of variance of the three RGB components")
    first_explained: float = Field(description="share of variance of the first PCA's first component")
    first_range: list[float] = Field(description="min and max of first (the threshold slider's range)")


class SimilarityResponse(AnalysisView):
    patch: int
    layer: int | None = Field(description="0-based block; null: the last layer after the final norm")
    values: TypedArray = Field(description="(rows, cols) float32 cosine similarity in [-1, 1]")


class PartsResponse(AnalysisView):
    k: int
    seed: int
    layer: int | None
    labels: TypedArray = Field(description="(rows, cols) uint8 part index 0..k-1")
    iterations: int
    converged: bool
    inertia: float


class NormsResponse(AnalysisView):
    k: float = Field(description="outlier rule: norm > median + k * MAD (raw MAD), per layer")
    norms: TypedArray = Field(description="(layers, rows, cols) float32 patch-token norms (residual stream)")
    prefix_norms: TypedArray = Field(description="(layers, prefix tokens) float32: [CLS], registers")
    median: list[float]
    mad: list[float]
    threshold: list[float]
    outliers: list[int] = Field(description="outlier patches per layer")
    max_ratio: list[float] = Field(description="max / median patch norm per layer")
    outlier_mask: TypedArray = Field(description="(layers, rows, cols) uint8: 1 for an outlier patch")
    summary: str


class SinksResponse(AnalysisView):
    k: float
    mass: TypedArray = Field(description="(layers, heads, 3) float32: [CLS], registers, outlier keys")
    rollout: TypedArray = Field(description="(rows, cols) float32")
    rollout_without: TypedArray = Field(description="(rows, cols) float32, sink columns dropped")
    distance: TypedArray = Field(description="(layers, heads) float32 px, rows renormalised over patches")
    distance_without: TypedArray = Field(description="(layers, heads) float32 px, outlier keys dropped")
    num_registers: int
    has_cls: bool
    summary: str


class FeatureSetImage(BaseModel):
    name: str
    rgb: TypedArray = Field(description="(rows, cols, 3) uint8 PCA colours of the set's shared fit")
    foreground: TypedArray = Field(
        description="(rows, cols) uint8: 1 where the pooled first component > threshold"
    )
    parts: TypedArray = Field(description="(rows, cols) uint8 K-means part of the set's shared fit")


class FeatureSetResult(BaseModel):
    model: str
    resolution: int
    rows: int
    cols: int
    k: int
    seed: int
    threshold: float
    explained: list[float] = Field(description="share of variance of the three RGB components (pooled)")
    iterations: int
    converged: bool
    images: list[FeatureSetImage]


class FeatureSetJobResponse(BaseModel):
    job_id: str
    status: str
    done: int
    total: int | None
    elapsed_s: float
    error: str | None
    reused: bool = False
    result: FeatureSetResult | None = None
    job_url: str
    cancel_url: str
