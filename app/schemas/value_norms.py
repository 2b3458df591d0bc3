"""Schemas of the value-weighted attention endpoints (Kobayashi et al. 2020; ``models/value_norms.py``).

Only what the views draw: the norms ‖f_h(x_j)‖ of the key columns a page shows (the browser multiplies its
rows by them) and the per-head summary of how much attention on special or prefix tokens survives."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.schemas.common import AnalysisView, TypedArray
from models.text.analysis import BlockKind


class TextValueBlock(BaseModel):
    kind: BlockKind
    norms: TypedArray | None = Field(
        description="(layers, heads, n_key) float32 ‖f_h(x_j)‖ of the key columns drawn under the view options; "
        "null with merged words (no per-column factor exists)"
    )
    special_attention: TypedArray = Field(
        description="(layers, heads) float32: mean share of a row's attention on special key tokens"
    )
    special_weighted: TypedArray = Field(
        description="(layers, heads) float32: the same share, value-weighted"
    )


class TextValueNormsResponse(AnalysisView):
    available: bool = Field(description="false: this model or view option has no value-weighted view")
    reason: str | None = Field(None, description="why not, for a person to read")
    caption: str
    blocks: list[TextValueBlock]


class VisionValueNormsResponse(AnalysisView):
    available: bool
    reason: str | None = None
    caption: str
    norms: TypedArray | None = Field(
        None, description="(layers, heads, P) float32 ‖f_h(x_j)‖ of the patch keys (LayerScale γ included)"
    )
    prefix_attention: TypedArray | None = Field(
        None,
        description="(layers, heads) float32: the patch queries' mean share of attention on prefix tokens",
    )
    prefix_weighted: TypedArray | None = Field(
        None, description="(layers, heads) float32: the same, value-weighted"
    )
