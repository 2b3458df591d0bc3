"""Schemas of the text API."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.schemas.common import AnalysisView, ForwardMs, HeadOrMean, TypedArray
from app.schemas.text_lines import LinesSchema
from models.text.analysis import BlockKind, TextModelInfo


def _valid_unicode(value: str | None) -> str | None:
    """Reject text that cannot be encoded as UTF-8 (a lone surrogate such as JSON "\\ud800")."""
    if value is None:
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"the text is not valid Unicode: a lone surrogate U+{ord(value[e.start]):04X} at character "
            f"{e.start} (JSON escapes such as \\ud800 must come in high/low pairs)"
        ) from None
    return value


TextModelId = Annotated[
    str | None, Field(description="an id from /api/models; default: the default text model")
]


class ViewOptions(BaseModel):
    hide_special: bool = Field(False, description="drop [CLS], [SEP], </s>, <s>, padding; renormalise rows")
    merge_words: bool = Field(False, description="word pieces -> words: sum over keys, mean over queries")


class TextAnalyzeRequest(ViewOptions):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="the input (source) text")
    model: TextModelId = None
    target: str | None = Field(
        None, description="encoder-decoder models only: the decoder's text; omit for the greedy output"
    )
    kind: BlockKind | None = Field(None, description="which attention the first view shows")
    layer: int = Field(0, ge=0, description="which layer the first view shows (0-based)")

    _unicode = field_validator("text", "target")(_valid_unicode)


# The loaded model's description is the dataclass itself (pydantic reads it; no mirror of its fields).
TextModelInfoSchema = TextModelInfo


class TokenSide(BaseModel):
    tokens: list[str] = Field(description="the tokenizer's tokens, special tokens included")
    special: list[bool]
    word_ids: list[int | None]


class ViewAxisSchema(BaseModel):
    labels: list[str] = Field(description="axis labels after hiding / merging")
    special: list[bool]
    spans: list[tuple[int, int]] = Field(description="[start, end) token indices behind each label")
    steps: list[str] | None = Field(
        None,
        description='target axis only: each decoder row named by the step it writes, "<s> → 1", "1 → 7", ...',
    )


class BlockSchema(BaseModel):
    kind: BlockKind
    query_side: Literal["source", "target"]
    key_side: Literal["source", "target"]
    causal: bool = Field(description="masked (future keys are exactly 0)")
    layers: int
    heads: int
    n_query: int = Field(description="rows of each map in this view")
    n_key: int
    thumbs: TypedArray = Field(
        description="(layers, heads + 1, tq, tk) uint8, max-pooled; the last head is the mean over heads; "
        "each thumbnail scaled to its own maximum (value = byte / 255 * thumb_scale)"
    )
    thumb_scale: TypedArray = Field(description="(layers, heads + 1) float32")
    stats: TypedArray = Field(
        description="(layers, heads + 1, len(stat_names)) float32; NaN = not applicable"
    )
    data: TypedArray | None = Field(
        None,
        description="(layers, heads, n_query, n_key) float32, inline when small; else fetch per layer/head",
    )


class LayerSchema(BaseModel):
    kind: BlockKind
    layer: int
    data: TypedArray = Field(description="(heads, n_query, n_key): uint8 (probability x 255) or float32")


class TextAnalysisResponse(AnalysisView):
    model: TextModelInfo
    source: TokenSide
    target: TokenSide | None
    generated_text: str | None = Field(description="the greedy output (encoder-decoder, no target given)")
    predicted: list[str] | None = Field(description="per decoder row: the token the model predicts there")
    output_probability: float | None = Field(
        None, description="the greedy output's probability: the product of its per-step probabilities"
    )
    step_probabilities: list[float] | None = Field(
        None, description="greedy output: per decoder row, the probability of the token that row writes"
    )
    input_warning: str | None = Field(
        None, description="e.g. the date model's: no date-like token in the input"
    )
    options: ViewOptions
    axes: dict[str, ViewAxisSchema] = Field(description='"source" and "target" under the view options')
    blocks: list[BlockSchema]
    stat_names: list[str]
    stat_labels: list[str]
    first: LayerSchema | None = Field(description="the first view's layer when blocks are not inline")
    first_lines: LinesSchema | None = Field(
        None, description="long inputs: the first layer's top-k lines per (head, query); the rest on demand"
    )
    inline: bool
    forward_ms: ForwardMs


class HeadSchema(BaseModel):
    kind: BlockKind
    layer: int
    head: HeadOrMean
    data: TypedArray = Field(description="(n_query, n_key) float32")


class TokenCountRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="the text to count (at most the server's max_text_chars characters)")
    model: TextModelId = None

    _unicode = field_validator("text")(_valid_unicode)


class TokenCountResponse(BaseModel):
    model: str
    tokens: int = Field(description="the text's length in the model's tokens, special tokens included")
    max_tokens: int = Field(description="the most tokens the model takes")
    fits_chars: int | None = Field(
        description="null when the text fits; else the longest prefix (characters) within max_tokens"
    )
    per_character: bool = Field(description="the model's tokens are characters (the date model)")
