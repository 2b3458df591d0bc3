"""Vision API: analyse an image with a ViT, then serve slices of the cached analysis on demand.

Thin routes: parse and validate here, then one call into :mod:`app.services.vision`, which runs the work
under the named budgets (decode and views in the CPU pool, the forward pass in the compute queue).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile
from fastapi.responses import Response

from app.deps import ModelForm, StateDep
from app.errors import errors_doc
from app.schemas.vision import (
    EntropyResponse,
    PatchAttentionResponse,
    PatchRowsResponse,
    RolloutOptions,
    RolloutResponse,
    SampleImage,
    SamplesResponse,
    VisionAnalysisResponse,
)
from app.schemas.vision_views import analysis_response
from app.serialization import typed_array
from app.services import vision as svc
from app.services.images import sample_bytes, sample_names
from models.vision.rollout import HeadFusion

router = APIRouter(prefix="/api/vision", tags=["vision"])
DISCARD_STEP = 0.05  # the vision page's discard slider step (templates/vision.html, #vz-discard)
DISCARD_MAX = 0.95  # ... and its largest value
ERRORS = errors_doc(400, 404, 413, 415, 503)


def quantise_discard(ratio: float) -> float:
    """The slider value nearest ``ratio``: distinct floats share one cached rollout view instead of each
    costing a CPU-pool job."""
    return min(DISCARD_MAX, round(round(ratio / DISCARD_STEP) * DISCARD_STEP, 2))


@router.get("/samples", response_model=SamplesResponse)
async def list_samples() -> SamplesResponse:
    return SamplesResponse(
        samples=[
            SampleImage(name=n, title=n.replace("_", " ").capitalize(), url=f"/api/vision/samples/{n}.jpg")
            for n in sample_names()
        ]
    )


@router.get("/samples/{name}.jpg", response_class=Response, responses=errors_doc(404))
def sample_image(name: str) -> Response:
    data = sample_bytes().get(name)  # sync route: the first call encodes the samples (once per process)
    if data is None:
        raise HTTPException(404, f"No sample image named {name!r}.")
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=86400"})


@router.post("/analyze", response_model=VisionAnalysisResponse, responses=ERRORS)
async def analyze(
    state: StateDep,
    image: Annotated[UploadFile | None, File(description="PNG, JPEG, GIF, WebP, BMP or TIFF")] = None,
    sample: Annotated[str | None, Form(description="name of a bundled sample photo")] = None,
    image_hash: Annotated[
        str | None, Form(description="image_hash from an earlier analyze response (same server)")
    ] = None,
    model: ModelForm = None,
    resolution: Annotated[
        int | None, Form(description="input side in pixels, one of the model's resolutions")
    ] = None,
    head_fusion: Annotated[HeadFusion, Form()] = "mean",
    discard_ratio: Annotated[float, Form(ge=0.0, lt=1.0)] = 0.0,
) -> VisionAnalysisResponse:
    """Run the model once with attention capture; the full maps stay in a server-side cache."""
    if sum(x is not None for x in (image, sample, image_hash)) != 1:
        raise HTTPException(
            400, "Send exactly one of: an image file, a sample name, or the image_hash of an earlier upload."
        )
    vm, res = await svc.model_at(state, model, resolution)
    discard_ratio = quantise_discard(discard_ratio)
    data = None
    if image is not None:
        limit = state.settings.limits.max_upload_bytes
        data = await image.read(limit + 1)
        if len(data) > limit:
            raise HTTPException(
                413, f"The upload is too large: the limit is {state.settings.limits.max_upload_mb:g} MB."
            )
    done = await svc.analyze(
        state,
        vm,
        res,
        data=data,
        sample=sample,
        image_hash=image_hash,
        head_fusion=head_fusion,
        discard_ratio=discard_ratio,
    )
    return analysis_response(
        done.analysis_id,
        done.image_hash,
        vm.info,
        done.analysis,
        done.rollout,
        RolloutOptions(head_fusion=head_fusion, discard_ratio=discard_ratio),
        f"/api/vision/analysis/{done.analysis_id}/image.png",
        done.forward_ms,
    )


@router.get("/analysis/{analysis_id}/attention", response_model=PatchAttentionResponse, responses=ERRORS)
async def patch_attention(
    state: StateDep,
    analysis_id: str,
    layer: Annotated[int, Query(ge=0, description="0-based layer")],
    query: Annotated[int, Query(ge=0, description="0-based query patch index, row-major")],
    head: Annotated[int | None, Query(ge=0, description="0-based head; omit for the mean over heads")] = None,
) -> PatchAttentionResponse:
    """Where one patch attends in one layer/head, from the cache (no recomputation)."""
    analysis = state.vision_analysis(analysis_id)
    try:
        values = await svc.patch_view(state, analysis_id, analysis, layer, head, query)
    except IndexError as e:
        raise HTTPException(400, str(e)) from e
    return PatchAttentionResponse(
        analysis_id=analysis_id, layer=layer, head=head, query=query, values=typed_array(values)
    )


@router.get("/analysis/{analysis_id}/patch", response_model=PatchRowsResponse, responses=ERRORS)
async def patch_rows(
    state: StateDep,
    analysis_id: str,
    query: Annotated[int, Query(ge=0, description="0-based query patch index, row-major")],
) -> PatchRowsResponse:
    """Where one patch attends in every layer and head: (L, H, rows, cols), in one request."""
    analysis = state.vision_analysis(analysis_id)
    try:
        values = await svc.patch_rows_view(state, analysis_id, analysis, query)
    except IndexError as e:
        raise HTTPException(400, str(e)) from e
    return PatchRowsResponse(
        analysis_id=analysis_id, query=query, values=typed_array(values), recomputed=analysis.compact
    )


@router.get("/analysis/{analysis_id}/rollout", response_model=RolloutResponse, responses=ERRORS)
async def rollout(
    state: StateDep,
    analysis_id: str,
    head_fusion: Annotated[HeadFusion, Query()] = "mean",
    discard_ratio: Annotated[float, Query(ge=0.0, lt=1.0)] = 0.0,
) -> RolloutResponse:
    """Rollout with other options, recomputed from the cached maps (L small matrix-vector products)."""
    analysis = state.vision_analysis(analysis_id)
    discard_ratio = quantise_discard(discard_ratio)
    values = await svc.rollout_view(state, analysis_id, analysis, head_fusion, discard_ratio)
    return RolloutResponse(
        analysis_id=analysis_id,
        rollout_options=RolloutOptions(head_fusion=head_fusion, discard_ratio=discard_ratio),
        rollout=typed_array(values),
    )


@router.get("/analysis/{analysis_id}/image.png", response_class=Response, responses=ERRORS)
async def analysis_image(state: StateDep, analysis_id: str) -> Response:
    """The resolution x resolution image the model saw (after resize and crop), upright."""
    analysis = state.vision_analysis(analysis_id)
    png = await svc.image_view(state, analysis_id, analysis)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/analysis/{analysis_id}/entropy", response_model=EntropyResponse, responses=ERRORS)
async def entropy(
    state: StateDep,
    analysis_id: str,
    layer: Annotated[int, Query(ge=0, description="0-based layer")],
    head: Annotated[int | None, Query(ge=0, description="0-based head; omit for the mean over heads")] = None,
) -> Response:
    """Entropy (nats) of each query patch's attention over the patch keys, for one layer and head, from the
    cache (models/vision/views.py: ``patch_entropy``; prefix tokens left out, rows renormalised)."""
    analysis = state.vision_analysis(analysis_id)
    vm = state.vision_store.get(analysis.model_id)
    try:
        body = await svc.entropy_view(state, analysis_id, vm, analysis, layer, head)
    except IndexError as e:
        raise HTTPException(400, str(e)) from e
    return Response(body, media_type="application/json")
