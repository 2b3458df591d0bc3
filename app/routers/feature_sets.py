"""Feature PCA and K-means parts over an image set, as background jobs (:mod:`app.services.feature_sets`).

- ``POST /api/vision/feature-sets/jobs``: the bundled sample photos, or uploaded images / a zip (202);
- ``GET /api/vision/feature-sets/jobs/{id}``: progress, and the result when done;
- ``POST /api/vision/feature-sets/jobs/{id}/cancel``: drop your subscription (the work stops when nobody is left).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, UploadFile

from app.context import client_id
from app.deps import ModelForm, StateDep
from app.errors import errors_doc
from app.routers.distance import read_image_set
from app.routers.job_access import cancel_own, job_of_kind
from app.schemas.features import FeatureSetJobResponse
from app.services import feature_sets as svc
from app.services.features import MAX_K
from app.services.vision import model_at

router = APIRouter(prefix="/api/vision/feature-sets", tags=["vision features"])
ERRORS = errors_doc(400, 404, 413, 415, 503)


@router.post("/jobs", response_model=FeatureSetJobResponse, status_code=202, responses=ERRORS)
async def start_job(
    state: StateDep,
    model: ModelForm = None,
    source: Annotated[Literal["samples", "upload"], Form()] = "samples",
    files: Annotated[list[UploadFile] | None, File(description="images and/or zips of images")] = None,
    resolution: Annotated[int | None, Form()] = None,
    k: Annotated[int, Form(ge=2, le=MAX_K, description="K-means parts")] = 4,
    seed: Annotated[int, Form(ge=0, le=2**31 - 1)] = 0,
    threshold: Annotated[
        float, Form(allow_inf_nan=False, description="foreground: pooled first component > threshold")
    ] = 0.0,
) -> FeatureSetJobResponse:
    """One PCA and one K-means fitted over the whole set. Poll ``job_url``; POST ``cancel_url`` to stop."""
    vm, res = await model_at(state, model, resolution)
    owner = client_id.get()
    parsed = await read_image_set(state, source, files, owner)  # the distance jobs' own checks
    job, reused = svc.start_job(state, vm, res, k, seed, round(float(threshold), 4), parsed, owner)
    return svc.job_response(job, reused)


@router.get("/jobs/{job_id}", response_model=FeatureSetJobResponse, responses=ERRORS)
async def job_status(state: StateDep, job_id: str) -> FeatureSetJobResponse:
    return svc.job_response(job_of_kind(state, job_id, "feature-set"))


@router.post("/jobs/{job_id}/cancel", response_model=FeatureSetJobResponse, responses=ERRORS)
async def cancel_job(state: StateDep, job_id: str) -> FeatureSetJobResponse:
    return svc.job_response(cancel_own(state, job_id, "feature-set"))
