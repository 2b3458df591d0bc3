"""Hugging Face's eager attention that also records each row's entropy, for the text statistics.

BERT-family encoders capture through :func:`eager_attention_with_entropy` (registered with transformers'
``AttentionInterface`` as ``atlas_eager``): the same attention maps as eager, plus the entropy of every row,
computed from the scores in the same pass (:func:`models.text.stats` uses them instead of a second pass).
:func:`recording_entropy` switches the recording on around one forward pass.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import torch

# Row entropies recorded by the capture's attention function, one (B, H, Tq) tensor per call (layer order).
_ENTROPY: ContextVar[list[torch.Tensor] | None] = ContextVar("atlas_entropy", default=None)
ENTROPY_ATTENTION = "atlas_eager"  # registered with transformers' AttentionInterface on first use


def eager_attention_with_entropy(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hugging Face's eager attention (BERT's ``eager_attention_forward``, the same operations in the same
    order, so the probabilities are bit-identical) that also records each row's entropy from the scores.

    Section 3.2.1: P = softmax(S), S = QK^T / sqrt(d_k) (+ mask). With m = max_j S_j, log P_j = S_j - m +
    log P_max (the row's largest probability is exp(0) / Z), so H = -sum_j P_j log P_j
    = -sum_j P_j (S_j - m) - log P_max: a multiply-add and a max per row instead of a log per weight, the
    one pass over the maps that the statistics would otherwise make. Terms are <= 0 and the largest ones
    are O(1), so float32 keeps it to ~1e-6 (tests/models/test_text_models.py checks it against -sum P log P).
    """
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling  # (B, H, Tq, Tk)
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = torch.nn.functional.softmax(scores, dim=-1)  # (B, H, Tq, Tk)
    probs = torch.nn.functional.dropout(probs, p=dropout, training=module.training)
    out = torch.matmul(probs, value).transpose(1, 2).contiguous()  # (B, Tq, H, d_v)
    record = _ENTROPY.get()
    if record is not None:
        # in place on the scores (no longer needed): no new (B, H, Tq, Tk) buffer
        terms = scores.sub_(scores.amax(-1, keepdim=True)).mul_(probs)  # (B, H, Tq, Tk) P_j (S_j - m) <= 0
        if attention_mask is not None:  # masked keys: P = 0, and 0 x -inf = NaN where the mask is -inf
            terms.nan_to_num_(nan=0.0)
        record.append(-terms.sum(-1) - torch.log(probs.amax(-1)))  # (B, H, Tq)
    return out, probs


def register_entropy_attention() -> None:
    """Register the attention function and, for its masks, eager's own (additive float masks: without
    it transformers would build another implementation's boolean mask, and ``scores + mask`` would not mask)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

    AttentionInterface.register(ENTROPY_ATTENTION, eager_attention_with_entropy)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ENTROPY_ATTENTION, eager_mask)


@contextmanager
def recording_entropy(enabled: bool = True) -> Iterator[list[torch.Tensor]]:
    """While open (and ``enabled``), each call of :func:`eager_attention_with_entropy` in this context appends
    its (B, H, Tq) row entropies to the yielded list, in layer order."""
    record: list[torch.Tensor] = []
    token = _ENTROPY.set(record if enabled else None)
    try:
        yield record
    finally:
        _ENTROPY.reset(token)
