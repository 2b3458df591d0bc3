"""Value-weighted attention (Kobayashi et al. 2020) for the text and vision pages: one GET each, answered from
the cached analysis (the norms come from the forward that captured the attention; no new forward)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.deps import StateDep
from app.errors import errors_doc
from app.schemas.text import ViewOptions
from app.schemas.value_norms import TextValueNormsResponse, VisionValueNormsResponse
from app.services import value_norms as service

router = APIRouter(tags=["value-weighted attention"])
ERRORS = errors_doc(404, 422, 503)
Flag = Annotated[bool, Query()]


@router.get(
    "/api/text/analysis/{analysis_id}/value_norms", response_model=TextValueNormsResponse, responses=ERRORS
)
async def text_value_norms(
    state: StateDep, analysis_id: str, hide_special: Flag = False, merge_words: Flag = False
) -> Response:
    """‖f_h(x_j)‖ of the key columns drawn under the view options, and per head how much of the attention on
    special tokens survives value weighting."""
    options = ViewOptions(hide_special=hide_special, merge_words=merge_words)
    return Response(await service.text_norms(state, analysis_id, options), media_type="application/json")


@router.get(
    "/api/vision/analysis/{analysis_id}/value_norms",
    response_model=VisionValueNormsResponse,
    responses=ERRORS,
)
async def vision_value_norms(state: StateDep, analysis_id: str) -> Response:
    """‖f_h(x_j)‖ of the patch keys, and per head how much of the attention on prefix tokens survives."""
    return Response(await service.vision_norms(state, analysis_id), media_type="application/json")
