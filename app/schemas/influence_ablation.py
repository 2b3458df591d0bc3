"""Schemas of head ablation, the head-importance map and the date decoder's logit lens (issue 15, items 3, 5)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from app.jobs import JobStatus
from app.schemas.common import TypedArray

Family = Literal["text", "vision"]
Mode = Literal["zero", "mean"]
Block = Literal["encoder_self", "decoder_self", "cross"]


class HeadRef(BaseModel):
    block: Block = Field(
        "encoder_self", description="encoder_self (also a ViT's or BERT's), decoder_self, cross"
    )
    layer: int = Field(ge=0, le=255)
    head: int = Field(ge=0, le=255)


class AblateRequest(BaseModel):
    family: Family = "text"
    model: str | None = Field(None, description="an id from /api/models (default: the family's default)")
    heads: list[HeadRef] = Field(
        default_factory=list, max_length=2048, description="heads to ablate together"
    )
    mode: Mode = Field(
        "zero", description="zero: the head's context -> 0; mean: -> its mean over the reference set"
    )
    text: str | None = Field(
        None, max_length=2000, description="text models: the input (date or first sentence)"
    )
    pair: str | None = Field(None, max_length=2000, description="a sentence encoder: the second sentence")
    target: str | None = Field(
        None,
        max_length=64,
        description="the date model: the right answer (default: the intact model's output)",
    )
    analysis_id: str | None = Field(
        None, description="vision: a cached /api/vision/analyze result (its image)"
    )


class AblateResponse(BaseModel):
    family: Family
    model: str
    kind: Literal["dates", "pair", "vision"]
    mode: Mode
    heads: list[HeadRef]
    reference: str = Field(
        description="what mean-ablation averages over (the model's bundled evaluation set)"
    )
    # date model
    answer: str | None = Field(None, description="the right answer scored (given, or the intact output)")
    decoded_intact: str | None = None
    decoded_ablated: str | None = None
    logp_intact: float | None = Field(None, description="log p(answer + </s> | text), teacher forced")
    logp_ablated: float | None = None
    # sentence encoder
    cos_intact: float | None = Field(None, description="cosine of the mean-pooled embeddings of the pair")
    cos_ablated: float | None = None
    # vision
    cls_cos: float | None = Field(None, description="[CLS] feature of the ablated run vs the intact run")
    patch_cos: float | None = Field(None, description="mean over patches of each patch feature's cosine")
    patch_cos_map: TypedArray | None = Field(None, description="(rows, cols) f4: each patch's cosine")
    elapsed_ms: float


class BlockShape(BaseModel):
    block: Block
    layers: int
    heads: int


class HeadsResponse(BaseModel):
    """What head ablation can do with a model: its outcome kind (None: not implemented) and its heads."""

    family: Family
    model: str
    label: str
    kind: Literal["dates", "pair", "vision"] | None
    reason: str | None = Field(None, description="why ablation is not available, when kind is None")
    blocks: list[BlockShape]
    reference: str | None = Field(None, description="what mean-ablation averages over")
    eval_set: str | None = Field(None, description="the importance map's evaluation set")
    ablations: int = Field(0, description="runs one importance map takes (one per head, plus the intact run)")


class ImportanceCached(BaseModel):
    result: ImportanceResult | None = Field(None, description="the map, when it was computed before")


class ImportanceResult(BaseModel):
    family: Family
    model: str
    mode: Mode
    eval_set: str = Field(description="the evaluation set, in words")
    n_examples: int
    metrics: list[str]
    headline: str = Field(description="the metric the map shows by default")
    base: dict[str, float] = Field(description="each metric on the intact model")
    blocks: list[BlockShape]
    values: dict[str, dict[str, TypedArray]] = Field(description="metric -> block -> (L, H) f8, one head cut")


class ImportanceJobResponse(BaseModel):
    job_id: str | None = Field(None, description="None when the map was already computed (cached)")
    status: JobStatus
    done: int
    total: int | None
    elapsed_s: float
    error: str | None = None
    reused: bool = False
    result: ImportanceResult | None = None
    job_url: str | None = None
    cancel_url: str | None = None


class ImportanceRequest(BaseModel):
    family: Family = "text"
    model: str | None = None
    mode: Mode = "zero"


class LensStage(BaseModel):
    layer: int
    stage: Literal["self", "cross", "ffn"]


class HeadDirections(BaseModel):
    block: Literal["decoder_self", "cross"]
    promote: list[list[list[list[str]]]] = Field(description="[layer][head][position][rank]: top tokens")
    promote_logit: TypedArray = Field(description="(L, H, Tt, k) f4")
    suppress: list[list[list[list[str]]]] = Field(description="[layer][head][position][rank]: bottom tokens")
    suppress_logit: TypedArray = Field(description="(L, H, Tt, k) f4")


class LogitLensRequest(BaseModel):
    model: str | None = Field(None, description="a seq2seq paper-Transformer model (the date model)")
    text: str = Field(max_length=2000)
    target: str | None = Field(
        None, max_length=64, description="decoder input after <s> (default: the greedy output)"
    )
    k: int = Field(3, ge=1, le=10)


class LogitLensResponse(BaseModel):
    model: str
    source_tokens: list[str]
    decoder_tokens: list[str] = Field(description="the decoder's input: <s> and the output so far")
    stages: list[LensStage]
    top_tokens: list[list[str]] = Field(description="[stage][position]: the winning token")
    top_prob: TypedArray = Field(description="(S, Tt) f4")
    final_tokens: list[str] = Field(description="[position]: the model's own prediction")
    final_prob: TypedArray = Field(description="(S, Tt) f4: probability of the model's prediction per stage")
    heads: list[HeadDirections]
    norm: str = Field(description="which norm the generator reads after (post-norm: each sublayer's own)")
