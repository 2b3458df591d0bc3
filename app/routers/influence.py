"""/influence: measurements that look past the attention weights (issue 15), on one page.

The page route lists the models and the page's sections; each section is a Jinja partial
``templates/influence/_<name>.html`` and an ES module ``static/js/influence/<name>.js`` exporting
``mount(root, ctx)`` (contract: docs/influence.md). A helper adds its own section by appending its name to
:data:`SECTIONS`. The API routes (``/api/influence/...``) call :mod:`app.services.influence`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse

from app.deps import StateDep
from app.errors import errors_doc
from app.routers.pages import render
from app.schemas.influence import ContributionsResponse, CurvesResponse, RelevanceResponse
from app.services import influence as svc
from app.services.catalog import text_model_choices, vision_model_choices

router = APIRouter(include_in_schema=False)

# Page sections, in order: templates/influence/_<name>.html + static/js/influence/<name>.js
SECTIONS: list[str] = ["contributions", "relevance", "curves"]
SECTIONS += ["ablation", "importance", "lens"]  # issue 15, items 3 and 5 (wt-ablate)


@router.get("/influence", response_class=HTMLResponse)
def influence_page(request: Request, state: StateDep) -> HTMLResponse:
    s = state.settings
    data = {
        "text": {
            **text_model_choices(s, "max_tokens"),
            "default_seq2seq_model": s.models.default_seq2seq_model,
        },
        "vision": vision_model_choices(s),
        "max_text_chars": s.limits.max_text_chars,
        "sections": SECTIONS,
    }
    return render(request, "influence.html", "/influence", "Attention is not influence", data)


# ------------------------------------------------------------------------------------------------ API
api = APIRouter(prefix="/api/influence", tags=["influence"])
ERRORS = errors_doc(400, 404, 413, 422, 503)
Family = Literal["text", "vision"]
Pair = Annotated[str | None, Query(description="MiniLM: the second sentence (target: the pair's cosine)")]
Step = Annotated[
    int, Query(ge=0, description="date model: the decoder row whose decoded character is explained")
]
Patch = Annotated[int | None, Query(ge=0, description="vision: a patch (row-major); omit for [CLS]")]
Steps = Annotated[int, Query(ge=2, le=20, description="points per curve, after the first")]


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


@api.get("/{family}/{analysis_id}/contributions", response_model=ContributionsResponse, responses=ERRORS)
async def contributions(state: StateDep, family: Family, analysis_id: str) -> Response:
    """ALTI contributions per layer and their rollout (Ferrando et al. 2022), in the model queue, cached."""
    return _json(await svc.contributions(state, family, analysis_id))


@api.get("/{family}/{analysis_id}/relevance", response_model=RelevanceResponse, responses=ERRORS)
async def relevance(
    state: StateDep, family: Family, analysis_id: str, pair: Pair = None, step: Step = 0, query: Patch = None
) -> Response:
    """Chefer et al. 2021 relevancy of the model's target, beside rollout and attention (one backward pass)."""
    return _json(await svc.relevance(state, family, analysis_id, pair, step, query))


@api.get("/{family}/{analysis_id}/curves", response_model=CurvesResponse, responses=ERRORS)
async def curves(
    state: StateDep, family: Family, analysis_id: str, pair: Pair = None, step: Step = 0, steps: Steps = 10
) -> Response:
    """Deletion and insertion curves of relevancy, rollout and attention on this input, with their areas."""
    return _json(await svc.curves(state, family, analysis_id, pair, step, steps))
