"""Response schemas built from the text views (models/text/views.py): one shape for the web routes
(``app/services/text.py``) and the notebook (``app/notebook/text.py``), so the page modules read one shape."""

from __future__ import annotations

from dataclasses import dataclass

from app.schemas.text import (
    BlockSchema,
    TextAnalysisResponse,
    TokenSide,
    ViewAxisSchema,
    ViewOptions,
)
from app.schemas.text_lines import LinesSchema
from app.serialization import typed_array
from models.text import views
from models.text.analysis import TextAnalysis, TextModelInfo, TokenSeq
from models.text.stats import STAT_LABELS, STAT_NAMES, BlockOverview
from models.text.steps import output_probability


@dataclass(frozen=True)
class Blocks:
    """The option-dependent part of an overview: axes and every block's schema (cached per options)."""

    axes: dict[str, ViewAxisSchema]
    blocks: list[BlockSchema]
    inline: bool

    @property
    def nbytes(self) -> int:
        arrays = [x for b in self.blocks for x in (b.thumbs, b.thumb_scale, b.stats, b.data) if x is not None]
        labels = sum(len(x.labels) for x in self.axes.values())
        return sum(len(x.bdata) for x in arrays) + 64 * labels + 1024


def block_axes(a: TextAnalysis, kind: str) -> dict:
    """The fields that name a block and its two axes in every block-level response: ``kind``, the query and
    key sides (``source`` / ``target``) and whether the block is causal."""
    query_side, key_side, causal = a.axes[kind]
    return {"kind": kind, "query_side": query_side, "key_side": key_side, "causal": causal}


def block_schema(a: TextAnalysis, kind: str, ov: BlockOverview) -> BlockSchema:
    """One block's overview (:func:`models.text.views.overviews`) as the response schema."""
    L, H = a.blocks[kind].shape[:2]
    return BlockSchema(
        **block_axes(a, kind),
        layers=L,
        heads=H,
        n_query=ov.n_query,
        n_key=ov.n_key,
        thumbs=typed_array(ov.thumbs, "u1"),
        thumb_scale=typed_array(ov.thumb_scale),
        stats=typed_array(ov.stats),
        data=typed_array(ov.view) if ov.view is not None else None,
    )


def axes_schema(a: TextAnalysis, hide_special: bool, merge_words: bool) -> dict[str, ViewAxisSchema]:
    steps = views.decoder_steps(a, hide_special, merge_words)
    return {
        n: ViewAxisSchema(
            labels=x.labels, special=x.special, spans=x.spans, steps=steps if n == "target" else None
        )
        for n, x in views.axes(a, hide_special, merge_words).items()
    }


def _side(s: TokenSeq | None) -> TokenSide | None:
    return None if s is None else TokenSide(tokens=s.tokens, special=s.special, word_ids=s.word_ids)


def overview_response(
    analysis_id: str,
    info: TextModelInfo,
    a: TextAnalysis,
    blocks: Blocks,
    options: ViewOptions,
    first_lines: LinesSchema | None,
) -> TextAnalysisResponse:
    """The overview response of an analysis whose blocks are built (the web route and the notebook)."""
    return TextAnalysisResponse(
        analysis_id=analysis_id,
        model=info,
        source=_side(a.source),
        target=_side(a.target),
        generated_text=a.generated_text,
        predicted=a.predicted,
        output_probability=output_probability(a.step_probs),
        step_probabilities=a.step_probs,
        input_warning=a.input_warning,
        options=options,
        axes=blocks.axes,
        blocks=blocks.blocks,
        stat_names=list(STAT_NAMES),
        stat_labels=[STAT_LABELS[n] for n in STAT_NAMES],
        first=None,
        first_lines=first_lines,
        inline=blocks.inline,
        forward_ms=round(a.forward_ms, 2),  # the forward that made the analysis: the same for everyone
    )
