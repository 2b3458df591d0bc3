"""Value-weighted attention for the pages (Kobayashi et al. 2020): the norms of the drawn key columns and the
per-head survival summary, built in the CPU pool from the cached analysis and cached as JSON per (analysis,
options). No new forward: the norms were recorded by hooks in the forward that captured the attention."""

from __future__ import annotations

from app.schemas.text import ViewOptions
from app.schemas.value_norms import TextValueBlock, TextValueNormsResponse, VisionValueNormsResponse
from app.serialization import typed_array
from app.services.text import get_analysis
from app.services.views import cached_json
from app.state import AppState
from models.text import value_views as text_vw
from models.text import views as text_views
from models.text.analysis import TextAnalysis
from models.value_norms import CAPTION
from models.vision import value_views as vision_vw
from models.vision.analysis import VisionAnalysis

UNSUPPORTED = "This model's attention modules are not supported for value weighting (models/value_norms.py)."
MERGED = (
    "Value weighting multiplies each token column by its own norm; merged words sum several columns, so turn "
    "off “merge word pieces” to see it."
)


def build_text(analysis_id: str, a: TextAnalysis, options: ViewOptions) -> TextValueNormsResponse:
    """CPU-pool job: every block's drawn-column norms and special-token survival."""
    kinds = text_views.block_names(a)
    if not all(text_vw.has_norms(a, k) for k in kinds):
        return TextValueNormsResponse(
            analysis_id=analysis_id, available=False, reason=UNSUPPORTED, caption=CAPTION, blocks=[]
        )
    blocks = []
    for kind in kinds:
        norms = text_vw.norms_for_view(a, kind, options.hide_special, options.merge_words)
        s = text_vw.special_survival(a, kind)
        blocks.append(
            TextValueBlock(
                kind=kind,
                norms=None if norms is None else typed_array(norms),
                special_attention=typed_array(s.attention),
                special_weighted=typed_array(s.weighted),
            )
        )
    merged = options.merge_words
    return TextValueNormsResponse(
        analysis_id=analysis_id,
        available=not merged,
        reason=MERGED if merged else None,
        caption=CAPTION,
        blocks=blocks,
    )


async def text_norms(state: AppState, analysis_id: str, options: ViewOptions) -> bytes:
    a = get_analysis(state, analysis_id)
    key = f"text-value-norms|{analysis_id}|{int(options.hide_special)}{int(options.merge_words)}"
    return await cached_json(state, key, build_text, analysis_id, a, options)


def build_vision(analysis_id: str, a: VisionAnalysis) -> VisionValueNormsResponse:
    """CPU-pool job: the patch keys' norms and the prefix-token survival of every layer and head."""
    if a.value_norms is None:
        return VisionValueNormsResponse(
            analysis_id=analysis_id, available=False, reason=UNSUPPORTED, caption=CAPTION
        )
    s = vision_vw.prefix_survival(a)
    return VisionValueNormsResponse(
        analysis_id=analysis_id,
        available=True,
        caption=CAPTION,
        norms=typed_array(vision_vw.patch_norms(a)),
        prefix_attention=typed_array(s.attention),
        prefix_weighted=typed_array(s.weighted),
    )


async def vision_norms(state: AppState, analysis_id: str) -> bytes:
    a = state.vision_analysis(analysis_id)
    return await cached_json(state, f"vision-value-norms|{analysis_id}", build_vision, analysis_id, a)
