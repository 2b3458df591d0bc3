"""Schema of the head view's top-k lines (issue 8 section 3: long text stays instant)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.schemas.common import TypedArray
from models.text.analysis import BlockKind


class LinesSchema(BaseModel):
    kind: BlockKind
    layer: int
    k: int = Field(description="lines kept per (head, query): the k strongest keys, strongest first")
    index: TypedArray = Field(description="(heads, n_query, k) uint16: key index (0-based, in this view)")
    weight: TypedArray = Field(description="(heads, n_query, k) uint8: probability x 255, rounded")
