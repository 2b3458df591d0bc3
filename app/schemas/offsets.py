"""Schemas of the relative-offset profiles (issue 8, section 6)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from app.schemas.common import TypedArray
from models.text.analysis import BlockKind


class OffsetBlockSchema(BaseModel):
    kind: BlockKind
    query_side: Literal["source", "target"]
    key_side: Literal["source", "target"]
    layers: int
    heads: int
    profile: TypedArray = Field(
        description="(layers, heads, 2W + 3) float32: mass at d < -W, then d = -W..W, then d > W; sums to 1"
    )
    score: TypedArray = Field(description="(layers, heads) float32: positional score = max over |d| <= W")
    best_offset: TypedArray = Field(description="(layers, heads) int16: the offset d of that maximum")
    causal: bool = Field(description="keys after the query are masked (the null allows keys j <= i only)")
    null_profile: TypedArray = Field(
        description="(2W + 3,) float32: the profile of uniform attention over each query's allowed keys, "
        "on the same inputs' lengths and mask (models/text/offsets.py)"
    )
    null_score: float = Field(description="the null's positional score (H_n / n at d = 0 in a causal block)")
    null_offset: int = Field(description="the offset d of the null's score")
    excess: TypedArray = Field(
        description="(layers, heads) float32: max over |d| <= W of profile[d] - null_profile[d] (the ranking)"
    )
    excess_offset: TypedArray = Field(description="(layers, heads) int16: the offset d of that maximum")
    offset_share: TypedArray = Field(
        description="(layers, heads) float32: R^2 of the maps' projection onto offset-only (Toeplitz) maps, "
        "1 - sum (A - T(A))^2 / sum (A - mean)^2 over valid entries, pooled over inputs; NaN if undefined"
    )
    null_offset_share: float | None = Field(
        description="the same R^2 for the null; null when undefined (uniform attention without a mask)"
    )


class OffsetsResponse(BaseModel):
    model_id: str
    model_label: str
    source: Literal["corpus", "analysis"] = Field(description="a bundled input set, or one analysis")
    inputs: list[str] = Field(description="the input texts averaged over (corpus), or the analysed text")
    window: int
    offsets: list[int] = Field(description="the profile's middle columns: -W..W (key index - query index)")
    blocks: list[OffsetBlockSchema]
