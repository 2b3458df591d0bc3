"""Vision API: analyse an image with a ViT, then serve slices of the cached analysis on demand."""

from __future__ import annotations

import hashlib
import io
import time
from functools import lru_cache
from typing import Annotated

import numpy as np
import torch
from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile
from fastapi.responses import Response

from app.deps import StateDep
from app.images import DecodedImage, content_hash, decode_image
from app.schemas.common import ErrorResponse
from app.schemas.vision import (
    Grid,
    PatchAttentionResponse,
    Prediction,
    RolloutOptions,
    RolloutResponse,
    SampleImage,
    SamplesResponse,
    VisionAnalysisResponse,
    VisionModelInfoSchema,
)
from app.serialization import typed_array
from app.state import AppState
from models.vision.analysis import VisionAnalysis, analyze_image
from models.vision.rollout import attention_rollout

router = APIRouter(prefix="/api/vision", tags=["vision"])
ERRORS = {
    400: {"model": ErrorResponse},
    404: {"model": ErrorResponse},
    413: {"model": ErrorResponse},
    415: {"model": ErrorResponse},
    503: {"model": ErrorResponse},
}


@lru_cache(maxsize=1)
def _samples() -> dict[str, bytes]:
    """scikit-image's bundled photos as JPEG bytes (the same bytes every time, so hashes are stable)."""
    from models.vision.samples import sample_images

    out = {}
    for name, img in sample_images().items():
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="JPEG", quality=92)
        out[name] = buf.getvalue()
    return out


@router.get("/samples", response_model=SamplesResponse)
def list_samples() -> SamplesResponse:
    return SamplesResponse(
        samples=[
            SampleImage(name=n, title=n.replace("_", " ").capitalize(), url=f"/api/vision/samples/{n}.jpg")
            for n in _samples()
        ]
    )


@router.get("/samples/{name}.jpg", response_class=Response, responses={404: {"model": ErrorResponse}})
def sample_image(name: str) -> Response:
    data = _samples().get(name)
    if data is None:
        raise HTTPException(404, f"No sample image named {name!r}.")
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=86400"})


def _resolve_image(
    state: AppState, image: UploadFile | None, sample: str | None, image_hash: str | None
) -> DecodedImage:
    given = sum(x is not None for x in (image, sample, image_hash))
    if given != 1:
        raise HTTPException(
            400, "Send exactly one of: an image file, a sample name, or the image_hash of an earlier upload."
        )
    s = state.settings
    if image_hash is not None:
        data, key = None, image_hash
    elif image is not None:
        data = image.file.read(s.max_upload_bytes + 1)
        if len(data) > s.max_upload_bytes:
            raise HTTPException(413, f"The upload is too large: the limit is {s.max_upload_mb:g} MB.")
        key = content_hash(data)
    else:
        data = _samples().get(sample)
        if data is None:
            raise HTTPException(400, f"No sample image named {sample!r}. Available: {', '.join(_samples())}.")
        key = content_hash(data)
    cached = state.images.get(key)  # the same bytes were decoded before: reuse, don't decode again
    if cached is not None:
        return DecodedImage(cached, key, "cached", "RGB", cached.size)
    if data is None:
        raise HTTPException(404, "That image is no longer cached on the server; please upload it again.")
    decoded = decode_image(data, s.max_image_pixels, s.min_image_side)
    state.images.put(decoded.content_hash, decoded.image)
    return decoded


def _analysis_id(image_hash: str, model_id: str, resolution: int) -> str:
    return hashlib.sha256(f"{image_hash}|{model_id}|{resolution}".encode()).hexdigest()[:24]


@router.post("/analyze", response_model=VisionAnalysisResponse, responses=ERRORS)
def analyze(
    state: StateDep,
    image: Annotated[UploadFile | None, File(description="PNG, JPEG, GIF, WebP, BMP or TIFF")] = None,
    sample: Annotated[str | None, Form(description="name of a bundled sample photo")] = None,
    image_hash: Annotated[str | None, Form(description="content hash of an image uploaded earlier")] = None,
    model: Annotated[str | None, Form(description="an id from /api/models")] = None,
    resolution: Annotated[
        int | None, Form(description="input side in pixels, one of the model's resolutions")
    ] = None,
    head_fusion: Annotated[str, Form(pattern="^(mean|max|min)$")] = "mean",
    discard_ratio: Annotated[float, Form(ge=0.0, lt=1.0)] = 0.0,
) -> VisionAnalysisResponse:
    """Run the model once with attention capture; the full maps stay in a server-side cache."""
    vm, res = state.vision_model_at(model, resolution)
    decoded = _resolve_image(state, image, sample, image_hash)
    aid = _analysis_id(decoded.content_hash, vm.info.id, res)
    options = RolloutOptions(head_fusion=head_fusion, discard_ratio=discard_ratio)
    analysis = state.analyses.get(aid)
    cached, forward_ms = analysis is not None, 0.0
    if analysis is None:
        t0 = time.perf_counter()
        analysis = state.queue.run_sync(analyze_image, vm, decoded.image, res)
        forward_ms = (time.perf_counter() - t0) * 1000
        state.analyses.put(aid, analysis)
    rollout = analysis.rollout if options == RolloutOptions() else _rollout(analysis, options)
    info = vm.info
    return VisionAnalysisResponse(
        analysis_id=aid,
        image_hash=decoded.content_hash,
        model=VisionModelInfoSchema(
            **{
                **info.__dict__,
                "resolutions": list(info.resolutions),
                "mean": list(info.mean),
                "std": list(info.std),
            }
        ),
        grid=Grid(
            rows=analysis.grid[0],
            cols=analysis.grid[1],
            patch_size=info.patch_size,
            num_prefix_tokens=info.num_prefix_tokens,
            resolution=analysis.resolution,
        ),
        cls_query="cls" if info.has_cls_token else "mean_patch",
        cls_attention=typed_array(analysis.cls_attention),
        rollout=typed_array(rollout),
        rollout_options=options,
        predictions=[Prediction(label=lbl, probability=p) for lbl, p in analysis.predictions]
        if analysis.predictions is not None
        else None,
        image_url=f"/api/vision/analysis/{aid}/image.png",
        forward_ms=round(forward_ms, 2),
        cached=cached,
    )


def _rollout(analysis: VisionAnalysis, options: RolloutOptions) -> np.ndarray:
    with torch.inference_mode():
        r = attention_rollout(
            analysis.attentions,  # float16 cache; each layer is promoted to float32 inside
            options.head_fusion,
            options.discard_ratio,
            analysis.num_prefix_tokens,
        )
    return r.numpy()


@router.get("/analysis/{analysis_id}/attention", response_model=PatchAttentionResponse, responses=ERRORS)
def patch_attention(
    state: StateDep,
    analysis_id: str,
    layer: Annotated[int, Query(ge=0, description="0-based layer")],
    query: Annotated[int, Query(ge=0, description="0-based query patch index, row-major")],
    head: Annotated[int | None, Query(ge=0, description="0-based head; omit for the mean over heads")] = None,
) -> PatchAttentionResponse:
    """Where one patch attends in one layer/head, from the cache (no recomputation)."""
    analysis = state.vision_analysis(analysis_id)
    try:
        values = analysis.patch_attention(layer, head, query)
    except IndexError as e:
        raise HTTPException(400, str(e)) from e
    return PatchAttentionResponse(
        analysis_id=analysis_id,
        layer=layer,
        head=head,
        query=query,
        values=typed_array(values.reshape(analysis.grid)),
    )


@router.get("/analysis/{analysis_id}/rollout", response_model=RolloutResponse, responses=ERRORS)
def rollout(
    state: StateDep,
    analysis_id: str,
    head_fusion: Annotated[str, Query(pattern="^(mean|max|min)$")] = "mean",
    discard_ratio: Annotated[float, Query(ge=0.0, lt=1.0)] = 0.0,
) -> RolloutResponse:
    """Rollout with other options, recomputed from the cached maps (cheap: L small matrix products)."""
    analysis = state.vision_analysis(analysis_id)
    options = RolloutOptions(head_fusion=head_fusion, discard_ratio=discard_ratio)
    return RolloutResponse(
        analysis_id=analysis_id, rollout_options=options, rollout=typed_array(_rollout(analysis, options))
    )


@router.get("/analysis/{analysis_id}/image.png", response_class=Response, responses=ERRORS)
def analysis_image(state: StateDep, analysis_id: str) -> Response:
    """The resolution x resolution image the model saw (after resize and crop), upright."""
    analysis = state.vision_analysis(analysis_id)
    buf = io.BytesIO()
    analysis.image.save(buf, format="PNG")
    return Response(
        buf.getvalue(), media_type="image/png", headers={"Cache-Control": "private, max-age=3600"}
    )
