"""Head ablation, the head-importance map and the date decoder's logit lens (issue 15, items 3 and 5); the
work is in :mod:`app.services.influence_ablation` and :mod:`app.services.influence_importance`.

- ``POST /api/influence/ablate``: ablate a set of heads, one run beside the intact one (compute queue);
- ``POST /api/influence/importance``: the layers x heads map over the bundled evaluation set (cached on disk;
  otherwise a background job, 202); progress and cancel through ``/api/influence/importance/jobs/{id}``;
- ``POST /api/influence/logit-lens``: the date decoder's logit lens, per stage and per head (compute queue).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from app.context import client_id
from app.deps import ModelQuery, StateDep
from app.errors import errors_doc
from app.routers.job_access import cancel_own, job_of_kind
from app.schemas.influence_ablation import (
    AblateRequest,
    AblateResponse,
    Family,
    HeadsResponse,
    ImportanceCached,
    ImportanceJobResponse,
    ImportanceRequest,
    LogitLensRequest,
    LogitLensResponse,
    Mode,
)
from app.services import influence_ablation as svc
from app.services import influence_importance as imp

router = APIRouter(tags=["influence"])
ERRORS = errors_doc(400, 404, 413, 422, 503)


@router.post("/api/influence/ablate", response_model=AblateResponse, responses=ERRORS)
async def ablate(state: StateDep, req: AblateRequest) -> AblateResponse:
    """Zero- or mean-ablate ``heads`` together and compare with the intact run: the decoded date and
    log p(right answer) (date model), the pair's embedding cosine (MiniLM), or the [CLS] and patch feature
    cosines to the intact run (a ViT, on a cached analysis' image)."""
    return await svc.ablate(state, req)


@router.get("/api/influence/heads", response_model=HeadsResponse, responses=ERRORS)
async def heads(
    state: StateDep,
    family: Annotated[Family, Query()] = "text",
    model: ModelQuery = None,
) -> HeadsResponse:
    """The model's attention blocks (layers x heads) and what ablation is judged by (``kind``; None when head
    ablation is not implemented for it, with the ``reason``)."""
    return await svc.heads_info(state, family, model)


@router.get("/api/influence/importance", response_model=ImportanceCached, responses=ERRORS)
async def importance_cached(
    state: StateDep,
    family: Annotated[Family, Query()] = "text",
    model: ModelQuery = None,
    mode: Annotated[Mode, Query()] = "zero",
) -> ImportanceCached:
    """The head-importance map if it was computed before (memory or disk), else ``result`` null; starts nothing."""
    t = await svc.resolve(state, family, model)
    return ImportanceCached(result=imp.load_cached(state, t, mode))


@router.post("/api/influence/importance", response_model=ImportanceJobResponse, responses=ERRORS)
async def importance(state: StateDep, req: ImportanceRequest, response: Response) -> ImportanceJobResponse:
    """The head-importance map: 200 with the result when it was computed before, else 202 and a job to poll."""
    t = await svc.resolve(state, req.family, req.model)
    cached = imp.load_cached(state, t, req.mode)
    if cached is not None:
        return imp.response(None, cached)
    sub, reused = imp.start(state, t, req.family, req.mode, client_id.get())
    if sub.status != "done":
        response.status_code = 202
    return imp.response(sub, reused=reused)


@router.get("/api/influence/importance/jobs/{job_id}", response_model=ImportanceJobResponse, responses=ERRORS)
async def importance_job(state: StateDep, job_id: str) -> ImportanceJobResponse:
    """Progress (``done`` of ``total`` ablations, the intact run first) and the map once done."""
    return imp.response(job_of_kind(state, job_id, "importance"))


@router.post(
    "/api/influence/importance/jobs/{job_id}/cancel", response_model=ImportanceJobResponse, responses=ERRORS
)
async def cancel_importance(state: StateDep, job_id: str) -> ImportanceJobResponse:
    """Drop your subscription; the sweep stops before its next ablation when nobody else follows it."""
    return imp.response(cancel_own(state, job_id, "importance"))


@router.post("/api/influence/logit-lens", response_model=LogitLensResponse, responses=ERRORS)
async def logit_lens(state: StateDep, req: LogitLensRequest) -> LogitLensResponse:
    """Which token the generator would pick after each decoder sublayer, and what each head writes."""
    return await svc.lens(state, req)
