"""Schemas of the neuron view (one layer, head and query token: q, every k, q·k, q·k/sqrt(d_k), softmax)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from app.schemas.common import TypedArray
from models.text.analysis import BlockKind


class NeuronResponse(BaseModel):
    """Section 3.2.1 of "Attention Is All You Need" step by step for one query row of one head.

    Indices are 0-based (the page shows them from 1). q ⊙ k is not shipped: it is q times each row of k.
    """

    kind: BlockKind
    layer: int
    head: int
    query: int = Field(description="query token index (0-based) on the query side, raw tokens")
    query_side: Literal["source", "target"]
    key_side: Literal["source", "target"]
    causal: bool = Field(description="future keys are masked (decoder self-attention)")
    d_k: int
    scale: float = Field(
        description="the factor the model applies (1/sqrt(d_k) for the paper's Transformer and BERT; a model may use "
        "another, e.g. GPT-2 with scale_attn_by_inverse_layer_idx)"
    )
    scale_where: Literal["query", "scores"] = Field(
        description='"query": q is divided by sqrt(d_k) before the product (paper Transformer); '
        '"scores": the product q·k is multiplied (Hugging Face eager attention)'
    )
    q: TypedArray = Field(description="(d_k,) float32: the query vector of this head and token")
    k: TypedArray = Field(description="(n_key, d_k) float32: every key vector of this head")
    dot: TypedArray = Field(description="(n_key,) float32: q·k_j (computed in float64)")
    scaled: TypedArray = Field(description="(n_key,) float32: q·k_j × scale")
    probs: TypedArray = Field(description="(n_key,) float32: softmax of the scaled scores over allowed keys")
    captured: TypedArray = Field(description="(n_key,) float32: the probabilities the model itself computed")
    allowed: TypedArray = Field(description="(n_key,) uint8: 1 = this key is not masked")
    max_abs_diff: float = Field(description="max |probs - captured| over the keys")
    tolerance: float = Field(description="float32 rounding bound for that difference (models/text/neuron.py)")
    matches: bool = Field(description="max_abs_diff <= tolerance")
