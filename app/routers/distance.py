"""Mean attention distance API (ViT paper Fig. 7 right, Appendix D.7); the work is in
:mod:`app.services.distance`.

- ``GET /api/distance/analysis/{id}``: one image, from the vision page's cached (L, H, N, N) maps (CPU pool,
  cached per (analysis id, renormalize)).
- ``POST /api/distance/jobs``: an image set (the bundled sample photos, or uploaded images / a zip) as a
  background job; progress and cancel through ``/api/distance/jobs/{id}``.
- ``GET /api/distance/receptive-field``: ResNet-50's theoretical receptive field on a ViT's layer axis, and
  the mean attention distance uniform attention over each receptive-field window would have (CPU pool).

Jobs compute in pixels; every response converts to the requested unit (exact: MAD is linear in d), so
switching units never recomputes anything.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile

from app.context import client_id
from app.deps import ModelForm, StateDep
from app.errors import errors_doc
from app.routers.job_access import cancel_own, job_of_kind
from app.schemas.vit_figures import (
    DistanceJobResponse,
    DistanceResultSchema,
    DistanceUnit,
    ReceptiveFieldResponse,
)
from app.services import distance as svc
from app.services.views import cached_view
from app.services.vision import model_at
from app.state import AppState

router = APIRouter(tags=["distance"])
ERRORS = errors_doc(400, 404, 413, 415, 503)


@router.get("/api/distance/analysis/{analysis_id}", response_model=DistanceResultSchema, responses=ERRORS)
async def analysis_distance(
    state: StateDep,
    analysis_id: str,
    renormalize: Annotated[bool, Query(description="renormalise rows over patches (Walmer)")] = False,
    unit: Annotated[DistanceUnit, Query()] = "pixels",
) -> DistanceResultSchema:
    """Mean attention distance of the image of a cached vision analysis (no forward pass)."""
    analysis = state.vision_analysis(analysis_id)
    vm = state.vision_store.get(analysis.model_id)  # loaded: it made the analysis
    key = ("distance", analysis_id, renormalize)
    result = await cached_view(state, key, svc.analysis_distance, vm, analysis, renormalize)
    return result.to_schema(unit)


@router.post("/api/distance/jobs", response_model=DistanceJobResponse, status_code=202, responses=ERRORS)
async def start_job(
    state: StateDep,
    model: ModelForm = None,
    source: Annotated[
        Literal["samples", "upload"], Form(description="the bundled photos or uploads")
    ] = "samples",
    files: Annotated[list[UploadFile] | None, File(description="images and/or zips of images")] = None,
    resolution: Annotated[int | None, Form(description="one of the model's input resolutions")] = None,
    renormalize: Annotated[bool, Form(description="renormalise rows over patches (Walmer)")] = False,
    batch_size: Annotated[int | None, Form(ge=1, le=64, description="images per forward pass")] = None,
    unit: Annotated[DistanceUnit, Form(description="unit of the result when it is ready at once")] = "pixels",
) -> DistanceJobResponse:
    """Start a dataset run (202). Poll ``job_url`` for progress and the result; POST ``cancel_url`` to stop.

    Refused cheaply, in this order: a full registry or client quota (503), then the files' count, zip
    directories and image headers (4xx naming the file; 413 past the set's pixel budget). Images are only
    decoded inside the job."""
    vm, res = await model_at(state, model, resolution)
    owner = client_id.get()  # app/middleware.py ClientAddress: the peer, or what a trusted proxy forwards
    parsed = await read_image_set(state, source, files, owner)
    job, reused = svc.start_job(state, vm, res, renormalize, batch_size, parsed, owner)
    return svc.job_response(job, unit, reused)


@router.get("/api/distance/jobs/{job_id}", response_model=DistanceJobResponse, responses=ERRORS)
async def job_status(
    state: StateDep, job_id: str, unit: Annotated[DistanceUnit, Query()] = "pixels"
) -> DistanceJobResponse:
    """Progress (``done`` of ``total`` images), and the result in ``unit`` once ``status`` is done."""
    return svc.job_response(job_of_kind(state, job_id, "distance"), unit)


@router.post("/api/distance/jobs/{job_id}/cancel", response_model=DistanceJobResponse, responses=ERRORS)
async def cancel_job(state: StateDep, job_id: str) -> DistanceJobResponse:
    """Drop your subscription: it reads ``cancelled`` at once, and the work stops before its next image
    when nobody else subscribes to it. Finished jobs are unchanged; another client's job id is 404."""
    return svc.job_response(cancel_own(state, job_id, "distance"), "pixels")


@router.get("/api/distance/receptive-field", response_model=ReceptiveFieldResponse, responses=ERRORS)
async def receptive_field(
    state: StateDep,
    num_layers: Annotated[int, Query(ge=1, le=256, description="depth of the ViT axis")],
    unit: Annotated[DistanceUnit, Query()] = "pixels",
    patch_size: Annotated[int, Query(ge=1, le=1024, description="the ViT's patch size in pixels")] = 16,
    rows: Annotated[int, Query(ge=1, le=1024, description="the ViT's patch rows")] = 14,
    cols: Annotated[int, Query(ge=1, le=1024, description="the ViT's patch columns")] = 14,
) -> ReceptiveFieldResponse:
    """ResNet-50's theoretical receptive field after each layer, placed on the ViT's layer axis by relative
    depth (the CNN is taken to see the ViT's input pixels), with the comparable quantity ``uniform_window``:
    the mean attention distance of uniform attention over that window on the ViT's grid (CPU pool)."""
    key = f"receptive-field:{num_layers}:{unit}:{patch_size}:{rows}:{cols}"
    return await state.cpu.run(
        svc.receptive_field_reference, num_layers, unit, patch_size, rows, cols, key=key
    )


async def read_image_set(state: AppState, source: str, files: list[UploadFile] | None, owner: str):
    """The image set of a dataset job (distance, feature sets): None for the samples, else the checked
    uploads. Refused cheaply, in this order: files sent with source=samples, none or too many files (400), a
    full registry or client quota (503, before reading anything), then the files themselves (4xx naming one)."""
    parsed = None
    if source == "samples":
        if files:
            raise HTTPException(
                400, "Files were sent with source=samples; use source=upload to analyse them."
            )
    else:
        if not files:
            raise HTTPException(400, "Choose one or more image files, or a zip of images, to upload.")
        if len(files) > svc.MAX_FILES:
            raise HTTPException(
                400, f"Too many files ({len(files)}): send at most {svc.MAX_FILES}, or one zip."
            )
        state.distance_jobs.check_room(owner)  # slots and quota first: 503 before reading anything
        uploads = [(f.filename or "upload", await f.read()) for f in files]
        parsed = await state.cpu.run(svc.parse_uploads, uploads, state.settings)
    return parsed
