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


class OffsetsResponse(BaseModel):
    model_id: str
    model_label: str
    source: Literal["corpus", "analysis"] = Field(description="a bundled input set, or one analysis")
    inputs: list[str] = Field(description="the input texts averaged over (corpus), or the analysed text")
    window: int
    offsets: list[int] = Field(description="the profile's middle columns: -W..W (key index - query index)")
    blocks: list[OffsetBlockSchema]
