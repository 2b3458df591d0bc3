"""Mean attention distance page and API (ViT paper Fig. 7 right, Appendix D.7).

- ``GET /api/distance/analysis/{id}``: one image, from the vision page's cached (L, H, N, N) maps.
- ``POST /api/distance/jobs``: an image set (the bundled sample photos, or uploaded images / a zip) as a
  background job: each batch's forward pass goes through the app's compute queue, so single-image
  requests are served between batches; progress and cancel through ``/api/distance/jobs/{id}``.
- ``GET /api/distance/receptive-field``: ResNet-50's theoretical receptive field on a ViT's layer axis.

Jobs compute in pixels; every response converts to the requested unit (exact: MAD is linear in d), so
switching units never recomputes anything.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import torch
from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile
from PIL import Image

from app.compute import QueueFull
from app.deps import StateDep
from app.images import ImageError, decode_image
from app.jobs import Job, JobRegistry, JobsBusy, UserError
from app.schemas.common import ErrorResponse
from app.schemas.vit_figures import (
    DistanceGeometry,
    DistanceJobResponse,
    DistanceResultSchema,
    DistanceUnit,
    ReceptiveFieldResponse,
)
from app.serialization import typed_array
from app.services.distance import MAX_FILES, MAX_IMAGES
from app.services.distance import sample_list as _sample_list
from app.settings import Settings
from app.state import AppState
from models.vision.analysis import VisionModel
from models.vision.distance import (
    Cancelled,
    convert_unit,
    dataset_mean_attention_distance,
    mean_attention_distance,
)
from models.vision.receptive_field import on_vit_depth_axis, resnet50_receptive_fields
from models.vision.samples import IMAGE_SUFFIXES

router = APIRouter(tags=["distance"])
ERRORS = {
    400: {"model": ErrorResponse},
    404: {"model": ErrorResponse},
    413: {"model": ErrorResponse},
    415: {"model": ErrorResponse},
    503: {"model": ErrorResponse},
}
MAX_UNCOMPRESSED_FACTOR = 4  # a zip's image members may total at most this times the upload limit
ZIP_SUFFIXES = (*IMAGE_SUFFIXES, ".gif", ".tif", ".tiff")
REGISTRY_KEY = "distance.jobs"


@dataclass(frozen=True)
class RunResult:
    """A finished distance computation, always in pixels."""

    mad_px: np.ndarray  # (L, H) float64
    n_images: int
    renormalize: bool
    model: str
    label: str
    source: Literal["analysis", "samples", "upload"]
    source_label: str
    geometry: DistanceGeometry

    def to_schema(self, unit: str) -> DistanceResultSchema:
        g = self.geometry
        mad = convert_unit(self.mad_px, (g.rows, g.cols), g.patch_size, unit)  # (L, H)
        return DistanceResultSchema(
            model=self.model,
            label=self.label,
            source=self.source,
            source_label=self.source_label,
            n_images=self.n_images,
            unit=unit,
            renormalize=self.renormalize,
            geometry=g,
            mad=typed_array(mad, "f8"),
            per_layer_mean=typed_array(mad.mean(axis=1), "f8"),
        )


def _geometry(vm: VisionModel, resolution: int) -> DistanceGeometry:
    info = vm.info
    rows, cols = info.grid(resolution, resolution)
    return DistanceGeometry(
        num_layers=info.num_layers,
        num_heads=info.num_heads,
        patch_size=info.patch_size,
        rows=rows,
        cols=cols,
        resolution=resolution,
        num_prefix_tokens=info.num_prefix_tokens,
    )


def registry(state: AppState) -> JobRegistry:
    """The process's distance job registry, created on first use."""
    return state.distance_jobs


# ----------------------------------------------------------------------------------------------------------
# One image, from the vision page's cache


@router.get("/api/distance/analysis/{analysis_id}", response_model=DistanceResultSchema, responses=ERRORS)
def analysis_distance(
    state: StateDep,
    analysis_id: str,
    renormalize: Annotated[bool, Query(description="renormalise rows over patches (Walmer)")] = False,
    unit: Annotated[DistanceUnit, Query()] = "pixels",
) -> DistanceResultSchema:
    """Mean attention distance of the image of a cached vision analysis (no forward pass)."""
    analysis = state.vision_analysis(analysis_id)
    vm = state.vision_model(analysis.model_id)
    with torch.inference_mode():
        mad = mean_attention_distance(
            analysis.attentions, analysis.grid, analysis.num_prefix_tokens, vm.info.patch_size, renormalize
        )  # (L, H) pixels
    result = RunResult(
        mad_px=mad.double().numpy(),
        n_images=1,
        renormalize=renormalize,
        model=vm.info.id,
        label=vm.info.label,
        source="analysis",
        source_label="this image",
        geometry=_geometry(vm, analysis.resolution),
    )
    return result.to_schema(unit)


# ----------------------------------------------------------------------------------------------------------
# Image sets


class UploadedImages(Sequence[Image.Image]):
    """Validated uploads decoded lazily, one at a time (only the compressed bytes stay in memory)."""

    def __init__(self, names: list[str], loaders: list[Callable[[], bytes]], settings: Settings) -> None:
        self.names, self._loaders, self._settings = names, loaders, settings

    def __len__(self) -> int:
        return len(self._loaders)

    def __getitem__(self, index: int) -> Image.Image:  # type: ignore[override]
        s = self._settings
        try:
            return decode_image(self._loaders[index](), s.max_image_pixels, s.min_image_side).image
        except ImageError as e:
            raise UserError(f"{self.names[index]}: {e}") from e


def _zip_members(name: str, data: bytes, settings: Settings) -> list[tuple[str, Callable[[], bytes]]]:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as e:
        raise ImageError(f"{name}: not a readable zip file ({e}).") from e
    members = [
        i
        for i in zf.infolist()
        if not i.is_dir()
        and "__MACOSX/" not in i.filename
        and not i.filename.rsplit("/", 1)[-1].startswith(".")
        and i.filename.lower().endswith(ZIP_SUFFIXES)
    ]
    if not members:
        raise ImageError(f"{name} contains no images ({', '.join(s[1:] for s in ZIP_SUFFIXES)}).")
    limit = settings.max_upload_bytes
    for info in members:
        if info.file_size > limit:
            raise ImageError(f"{name}/{info.filename} is larger than {settings.max_upload_mb:g} MB.", 413)
    if sum(i.file_size for i in members) > MAX_UNCOMPRESSED_FACTOR * limit:
        raise ImageError(
            f"{name} expands to more than {MAX_UNCOMPRESSED_FACTOR * settings.max_upload_mb:g} MB of images.",
            413,
        )

    def loader(member: str) -> Callable[[], bytes]:
        def read() -> bytes:  # reads at most the declared size; a lying header fails its CRC check
            try:
                return zipfile.ZipFile(io.BytesIO(data)).read(member)
            except (zipfile.BadZipFile, RuntimeError, NotImplementedError, EOFError, zlib.error) as e:
                raise ImageError(f"{name}/{member} cannot be extracted ({e}).") from e

        return read

    return [(f"{name}/{i.filename}", loader(i.filename)) for i in sorted(members, key=lambda i: i.filename)]


def parse_uploads(files: list[UploadFile], settings: Settings) -> tuple[UploadedImages, str]:
    """Check every upload now (clear 4xx errors naming the file); returns the lazy set and a content key."""
    if not files:
        raise HTTPException(400, "Choose one or more image files, or a zip of images, to upload.")
    if len(files) > MAX_FILES:
        raise HTTPException(400, f"Too many files ({len(files)}): send at most {MAX_FILES}, or one zip.")
    entries: list[tuple[str, Callable[[], bytes]]] = []
    for f in files:
        name = f.filename or "upload"
        data = f.file.read()
        if zipfile.is_zipfile(io.BytesIO(data)) or name.lower().endswith(".zip"):
            entries += _zip_members(name, data, settings)
        else:
            entries.append((name, lambda d=data: d))
        if len(entries) > MAX_IMAGES:
            raise HTTPException(400, f"Too many images: a job takes at most {MAX_IMAGES}.")
    digest = hashlib.sha256()
    for name, load in entries:  # decode each once now, so a bad file is a 4xx, not a failed job
        try:
            decoded = decode_image(load(), settings.max_image_pixels, settings.min_image_side)
        except ImageError as e:
            raise ImageError(f"{name}: {e}", e.status) from e
        digest.update(decoded.content_hash.encode())
    images = UploadedImages([n for n, _ in entries], [ld for _, ld in entries], settings)
    return images, digest.hexdigest()[:24]


def _queued(state: AppState, cancel: threading.Event) -> Callable[[Callable[[], None]], object]:
    """Run one batch through the compute queue; when it is full, wait for a slot (cancellable)."""

    def execute(fn: Callable[[], None]) -> object:
        while True:
            if cancel.is_set():
                raise Cancelled("cancelled while waiting for the model")
            try:
                return state.queue.run_sync(fn)
            except QueueFull:
                time.sleep(0.2)

    return execute


def _job_response(job: Job, unit: str, reused: bool = False) -> DistanceJobResponse:
    p = job.params
    return DistanceJobResponse(
        job_id=job.id,
        status=job.status,
        done=job.done,
        total=job.total,
        elapsed_s=round(job.elapsed_s, 3),
        error=job.error,
        model=p["model"],
        source=p["source"],
        renormalize=p["renormalize"],
        batch_size=p["batch_size"],
        reused=reused,
        result=job.result.to_schema(unit) if job.status == "done" else None,
        job_url=f"/api/distance/jobs/{job.id}",
        cancel_url=f"/api/distance/jobs/{job.id}/cancel",
    )


@router.post("/api/distance/jobs", response_model=DistanceJobResponse, status_code=202, responses=ERRORS)
def start_job(
    state: StateDep,
    model: Annotated[str | None, Form(description="an id from /api/models")] = None,
    source: Annotated[
        Literal["samples", "upload"], Form(description="the bundled photos or uploads")
    ] = "samples",
    files: Annotated[list[UploadFile] | None, File(description="images and/or zips of images")] = None,
    resolution: Annotated[int | None, Form(description="one of the model's input resolutions")] = None,
    renormalize: Annotated[bool, Form(description="renormalise rows over patches (Walmer)")] = False,
    batch_size: Annotated[int | None, Form(ge=1, le=64, description="images per forward pass")] = None,
    unit: Annotated[DistanceUnit, Form(description="unit of the result when it is ready at once")] = "pixels",
) -> DistanceJobResponse:
    """Start a dataset run (202). Poll ``job_url`` for progress and the result; POST ``cancel_url`` to stop."""
    vm, res = state.vision_model_at(model, resolution)
    if source == "samples":
        if files:
            raise HTTPException(
                400, "Files were sent with source=samples; use source=upload to analyse them."
            )
        images: Sequence[Image.Image] = _sample_list()
        set_key, source_label = "samples", f"{len(images)} sample photos"
    else:
        images, set_key = parse_uploads(files or [], state.settings)
        source_label = f"{len(images)} uploaded image{'s' if len(images) != 1 else ''}"
    batch = batch_size or (32 if state.device.type == "cuda" else 4)  # CPU: finer progress, shorter holds
    key = f"{vm.info.id}|{res}|{int(renormalize)}|{set_key}"
    reg = registry(state)
    previous = reg.find_done(key)
    if previous is not None:
        return _job_response(previous, unit, reused=True)
    geometry = _geometry(vm, res)

    def run(job: Job) -> RunResult:
        result = dataset_mean_attention_distance(
            vm,
            images,
            batch_size=batch,
            resolution=res,
            renormalize=renormalize,
            unit="pixels",
            progress=job.report,
            cancel=job.cancel_event,
            execute=_queued(state, job.cancel_event),
        )
        return RunResult(
            mad_px=result.mad,
            n_images=result.n_images,
            renormalize=renormalize,
            model=vm.info.id,
            label=vm.info.label,
            source=source,
            source_label=source_label,
            geometry=geometry,
        )

    params = dict(model=vm.info.id, source=source, renormalize=renormalize, batch_size=batch)
    try:
        job = reg.submit(run, "distance", params, key=key, total=len(images))
    except JobsBusy as e:
        raise HTTPException(503, f"{e}; wait for one to finish or cancel it.", {"Retry-After": "5"}) from e
    return _job_response(job, unit)


def _get_job(state: AppState, job_id: str) -> Job:
    job = registry(state).get(job_id)
    if job is None:
        raise HTTPException(404, f"No distance job {job_id!r} (unknown, or finished long ago and dropped).")
    return job


@router.get("/api/distance/jobs/{job_id}", response_model=DistanceJobResponse, responses=ERRORS)
def job_status(
    state: StateDep, job_id: str, unit: Annotated[DistanceUnit, Query()] = "pixels"
) -> DistanceJobResponse:
    """Progress (``done`` of ``total`` images), and the result in ``unit`` once ``status`` is done."""
    return _job_response(_get_job(state, job_id), unit)


@router.post("/api/distance/jobs/{job_id}/cancel", response_model=DistanceJobResponse, responses=ERRORS)
def cancel_job(state: StateDep, job_id: str) -> DistanceJobResponse:
    """Ask the job to stop; it becomes ``cancelled`` before its next image. Finished jobs are unchanged."""
    _get_job(state, job_id)
    return _job_response(registry(state).cancel(job_id), "pixels")


# ----------------------------------------------------------------------------------------------------------
# CNN reference


@router.get("/api/distance/receptive-field", response_model=ReceptiveFieldResponse, responses=ERRORS)
def receptive_field(
    num_layers: Annotated[int, Query(ge=1, le=256, description="depth of the ViT axis")],
    unit: Annotated[DistanceUnit, Query()] = "pixels",
    patch_size: Annotated[int, Query(ge=1, le=1024, description="the ViT's patch size (unit=patches)")] = 16,
    rows: Annotated[int, Query(ge=1, le=1024, description="the ViT's patch rows (unit=diagonal)")] = 14,
    cols: Annotated[int, Query(ge=1, le=1024, description="the ViT's patch columns (unit=diagonal)")] = 14,
) -> ReceptiveFieldResponse:
    """ResNet-50's theoretical receptive field after each layer, placed on the ViT's layer axis by relative
    depth, in the same unit as the distances (the CNN is taken to see the ViT's input pixels)."""
    rfs = resnet50_receptive_fields()
    points = on_vit_depth_axis(rfs, num_layers)
    px = np.array([p[1] for p in points], dtype=np.float64)
    return ReceptiveFieldResponse(
        network="ResNet-50",
        unit=unit,
        num_layers=num_layers,
        x=typed_array(np.array([p[0] for p in points]), "f8"),
        rf=typed_array(convert_unit(px, (rows, cols), patch_size, unit), "f8"),
        rf_pixels=[int(v) for v in px],
        names=[rf.name for rf in rfs],
        depth_index=[rf.depth_index for rf in rfs],
    )
