"""Decoder rows read as steps, and how sure the model is of its output (numpy/torch only).

A decoder row i reads the decoder input at position i (the output shifted right by one, starting with
``<s>``: "Attention Is All You Need", Section 3.1, "the output embeddings are offset by one position") and
writes the token at position i + 1. So in decoder self-attention and cross-attention a row is best named
by the step it writes: ``"<s> → 1"``, ``"1 → 7"``, ... rather than by its input alone.
"""

from __future__ import annotations

import re

import numpy as np
import torch

ARROW = " → "


def step_labels(inputs: list[str], written: list[str], spans: list[tuple[int, int]]) -> list[str]:
    """One label per span of decoder rows: its input labels, an arrow, and what those rows write.

    ``inputs``: the axis labels (one per span, already merged or not); ``written[t]``: the token row t writes
    (the model's most likely next token there); ``spans``: [start, end) decoder rows behind each label. A
    merged span writes the concatenation of its rows' tokens ("1776 → 776-" for the date model)."""
    if len(inputs) != len(spans):
        raise ValueError(f"{len(inputs)} labels for {len(spans)} spans")
    return [f"{label}{ARROW}{''.join(written[s:e])}" for label, (s, e) in zip(inputs, spans, strict=True)]


def step_probabilities(logits: torch.Tensor, next_ids: list[int]) -> list[float]:
    """Per decoder row t, the probability it gives the token it writes: softmax(logits[t])[next_ids[t]].

    ``logits`` (T, V) of the decoder rows (teacher-forced on the output itself, which for a greedy output
    gives the logits decoding saw). The output's probability is their product (:func:`output_probability`).
    A model trained with label smoothing (Section 5.4, eps_ls = 0.1) gives no step much more than 0.9."""
    if logits.shape[0] != len(next_ids):
        raise ValueError(f"{logits.shape[0]} rows of logits for {len(next_ids)} written tokens")
    p = torch.softmax(logits.double(), dim=-1)  # (T, V)
    idx = torch.tensor(next_ids, device=logits.device)[:, None]  # (T, 1)
    return [float(x) for x in p.gather(1, idx)[:, 0].cpu()]


def output_probability(steps: list[float] | None) -> float | None:
    """The probability of the whole output: the product of its steps' probabilities (log space)."""
    return None if steps is None else float(np.exp(np.sum(np.log(np.asarray(steps, np.float64)))))


# --------------------------------------------------------------------------------------- date-like input

# Every training form of the date model writes its year in digits, two or four of them ("'41", "1941",
# "31/12/99"): a run of exactly 2 or 4 digits, not part of a longer run.
YEAR_LIKE = re.compile(r"(?<!\d)(\d{4}|\d{2})(?!\d)")


def date_like_tokens(text: str) -> list[str]:
    """The date-like tokens of ``text``: runs of exactly 2 or 4 digits (a year as the model saw years)."""
    return YEAR_LIKE.findall(text)


def date_warning(text: str) -> str | None:
    """A warning for an input with no date-like token (None when it has one)."""
    if date_like_tokens(text):
        return None
    return (
        "No date-like token in this input (a run of 2 or 4 digits, the way every year in the model's "
        "training data is written): the model still writes a date, so this output is a guess."
    )
