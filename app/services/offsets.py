"""Attention mass by relative offset for every head (issue 8, section 6), framework-free.

Paper 1, Section 3.5 hypothesises that sinusoidal encodings let a model "attend by relative positions".
This service tests it on trained weights: :func:`models.text.offsets.offset_profile` per head, averaged
over a fixed bundled input set (sentences for MiniLM and other text models, generated dates for the date
model) or over one analysis. Budgets: the corpus forwards run as one model-queue job (merged per model and
window) and the result is cached in ``state.views``; profiles of one analysis run in the CPU pool.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from app.schemas.offsets import OffsetBlockSchema, OffsetsResponse
from app.serialization import typed_array
from app.services.errors import ServiceError
from app.services.figures import cached_json
from app.services.text import get_analysis, text_model, text_model_async
from app.state import AppState
from models.text import views
from models.text.analysis import BLOCK_ORDER, TextAnalysis, TextModel
from models.text.dates import generate_pairs
from models.text.offsets import OffsetSummary, offsets

# A fixed set of plain English sentences (8 to 30 tokens), varied in structure, none about attention.
SENTENCES = (
    "The animal didn't cross the street because it was too tired.",
    "She put the book on the table and left the room without a word.",
    "After the storm, the fishermen repaired their nets on the beach.",
    "My grandfather planted an apple tree in the garden when he was young.",
    "The committee will announce its decision on Monday morning.",
    "A small dog barked at the delivery van parked outside the bakery.",
    "If it rains tomorrow, we will move the concert into the school hall.",
    "The old bridge over the river was closed for repairs last summer.",
    "He could not remember where he had left his keys, so he searched every drawer.",
    "Scientists measured the temperature of the lake every hour for a month.",
    "The children laughed when the clown slipped on a banana peel.",
    "Our train was delayed by forty minutes because of a signal failure near the city.",
)
N_DATES = 32  # generated held-out dates for the date model (fixed seed)
MIN_WINDOW, MAX_WINDOW = 1, 32


class OffsetsError(ServiceError):
    """A request the offsets view cannot serve (422)."""

    status = 422


def corpus_inputs(model: TextModel) -> list[str]:
    """The bundled input set for a model: generated dates (held out) for a date model (the committed checkpoint
    or the random test architecture), else sentences."""
    if model.spec.source == "dates_checkpoint" or model.spec.name == "dates":
        return [src for src, _ in generate_pairs(N_DATES, seed=8, split="heldout")]
    return list(SENTENCES)


def _response(
    model: TextModel, source: str, inputs: list[str], window: int, means: dict[str, OffsetSummary], axes: dict
) -> OffsetsResponse:
    blocks = []
    for kind in (b for b in BLOCK_ORDER if b in means):
        v = views.offset_view(means[kind], window)
        profile = v.profile  # (L, H, 2W + 3)
        q, k, causal = axes[kind]
        blocks.append(
            OffsetBlockSchema(
                kind=kind,
                query_side=q,
                key_side=k,
                layers=profile.shape[0],
                heads=profile.shape[1],
                profile=typed_array(profile),
                score=typed_array(v.score),
                best_offset=typed_array(v.best, "i2"),
                causal=causal,
                null_profile=typed_array(v.null.astype(np.float32)),
                null_score=v.null_score,
                null_offset=v.null_at,
                excess=typed_array(v.excess.astype(np.float32)),
                excess_offset=typed_array(v.excess_at, "i2"),
                offset_share=typed_array(v.share.astype(np.float32)),
                null_offset_share=None if np.isnan(v.null_share) else v.null_share,
            )
        )
    return OffsetsResponse(
        model_id=model.info.id,
        model_label=model.info.label,
        source=source,
        inputs=inputs,
        window=window,
        offsets=offsets(window),
        blocks=blocks,
    )


@dataclass(frozen=True)
class _Corpus:
    """One model's corpus profiles at the widest window (every narrower window is derived exactly)."""

    inputs: list[str]
    means: dict[str, OffsetSummary]  # kind -> profiles at 2 * MAX_WINDOW + 3 columns, null, shares
    axes: dict

    @property
    def nbytes(self) -> int:
        return sum(m.nbytes for m in self.means.values()) + sum(len(t) for t in self.inputs) + 1024


def corpus_means(model: TextModel) -> _Corpus:
    """Model-queue job: one forward per bundled input, profiles averaged over inputs (row-weighted)."""
    inputs = corpus_inputs(model)
    axes: dict = {}

    def each() -> Iterator[TextAnalysis]:  # one analysis alive at a time
        nonlocal axes
        for text in inputs:
            a = model.analyze(text)
            axes = a.axes
            yield a

    means = views.offset_means(each(), MAX_WINDOW)
    return _Corpus(inputs, means, axes)


def _check_window(window: int) -> None:
    if not MIN_WINDOW <= window <= MAX_WINDOW:
        raise OffsetsError(f"window must be {MIN_WINDOW}..{MAX_WINDOW}, got {window}")


async def corpus(state: AppState, model_id: str | None, window: int) -> bytes:
    """Offset profiles of every head over the model's bundled inputs, as OffsetsResponse JSON (cached)."""
    _check_window(window)
    model = await text_model_async(state, model_id)
    key = f"offsets-corpus|{model.info.id}"
    c = state.views.get(key)
    if c is None:  # the forwards: once per model, in the model queue (merged in flight)
        c = await state.queue.run(corpus_means, model, key=key, cost=4 * 64 * len(SENTENCES))
        state.views.put(key, c)
    return await cached_json(
        state, f"{key}|{window}", lambda: _response(model, "corpus", c.inputs, window, c.means, c.axes)
    )


def analysis_profiles(state: AppState, a: TextAnalysis, window: int) -> OffsetsResponse:
    """CPU-pool job: the offset profiles of one analysis (no view options: token positions as tokenised)."""
    means = views.offset_means([a], window)  # kind -> (L, H, 2W + 3)
    text = "".join(a.source.tokens) if a.kind == "seq2seq" else " ".join(a.source.tokens)
    return _response(text_model(state, a.model_id), "analysis", [text], window, means, a.axes)


async def for_analysis(state: AppState, analysis_id: str, window: int) -> bytes:
    """Offset profiles of every head for one cached analysis, as OffsetsResponse JSON (cached)."""
    _check_window(window)
    a = get_analysis(state, analysis_id)
    return await cached_json(
        state, f"offsets-analysis|{analysis_id}|{window}", analysis_profiles, state, a, window
    )
