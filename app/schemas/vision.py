"""Schemas of the vision API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from app.schemas.common import AnalysisView, ForwardMs, HeadOrMean, TypedArray
from models.vision.registry import VisionModelInfo
from models.vision.rollout import HeadFusion

# The loaded model's description is the dataclass itself (pydantic reads it; no mirror of its fields).
VisionModelInfoSchema = VisionModelInfo


class Grid(BaseModel):
    rows: int
    cols: int
    patch_size: int
    num_prefix_tokens: int
    resolution: int = Field(
        description="input side in pixels (the model sees a resolution x resolution crop)"
    )


class Prediction(BaseModel):
    label: str
    probability: float


class RolloutOptions(BaseModel):
    head_fusion: HeadFusion = "mean"
    discard_ratio: float = Field(0.0, ge=0.0, lt=1.0)


class VisionAnalysisResponse(AnalysisView):
    image_hash: str
    model: VisionModelInfo
    grid: Grid
    cls_query: Literal["cls", "mean_patch"] = Field(
        description="which query row cls_attention holds: the CLS token, or the mean over patch queries"
    )
    cls_attention: TypedArray = Field(description="(layers, heads, patches) float32")
    rollout: TypedArray = Field(description="(patches,) float32, R[CLS, patches]")
    rollout_options: RolloutOptions
    predictions: list[Prediction] | None
    image_url: str
    forward_ms: ForwardMs


class PatchAttentionResponse(AnalysisView):
    layer: int
    head: HeadOrMean
    query: int
    values: TypedArray = Field(
        description="(rows, cols) float32: attention from the query patch to each patch"
    )


class PatchRowsResponse(AnalysisView):
    """A clicked patch's attention in every layer and head (docs/native-resolution.md)."""

    query: int
    values: TypedArray = Field(
        description="(L, H, rows, cols) float32: attention from the query patch to each patch, per layer and head"
    )
    recomputed: bool = Field(
        description="true: recomputed from the stored residual stream (448 and 518 px), to float16 rounding of "
        "its inputs; false: sliced from the stored float16 maps"
    )


class RolloutResponse(AnalysisView):
    rollout_options: RolloutOptions
    rollout: TypedArray


class SampleImage(BaseModel):
    name: str
    title: str
    url: str


class SamplesResponse(BaseModel):
    samples: list[SampleImage]


class EntropyResponse(AnalysisView):
    """Entropy of the patch queries' attention (models/vision/views.py: ``patch_entropy``)."""

    model: str = Field(description="the model id")
    label: str
    layer: int
    head: int | None = Field(description="null means the mean over heads of the per-head entropies")
    unit: Literal["nats"] = "nats"
    max_entropy: float = Field(description="log(patches): the entropy of uniform attention over the patches")
    values: TypedArray = Field(
        description="(rows, cols) float32: entropy of each query patch's attention over the patch keys "
        "(prefix tokens left out, each row renormalised over the patches)"
    )
    per_head: TypedArray = Field(description="(layers, heads) float32: the mean over query patches")
