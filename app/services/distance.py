"""Mean attention distance (ViT paper Fig. 7 right, Appendix D.7) for one cached analysis and for image
sets run as background jobs.

Budgets (README "Resource model"):

- one analysis: :func:`analysis_distance` runs in the CPU pool and is cached in ``state.views`` per
  (analysis id, renormalize); the unit is applied afterwards (MAD is linear in d), so switching units never
  recomputes. It reduces the cached (L, H, N, N) float16 maps one layer at a time in float32: peak extra
  memory per view ~ H * N^2 * 4 + H * P^2 * 4 + N^2 * 4 bytes (~55 MB for a 448 px DINOv2 ViT-S/14,
  H = 6, N = 1025), at most ``cpu_workers`` views at once.
- image sets: the job-slot and per-client checks come first; then :func:`parse_uploads` (CPU pool,
  ``app/services/image_sets.py``) reads only zip central directories and image headers (no pixel is
  decoded) and refuses a set over its pixel budget (:func:`pixel_budget`) with 413 at once. Each image is
  decoded inside the job (cancellable), in the CPU pool under the decode slots, and each batch's forward goes to the backend
  (``state.backend.dataset_submit``: the compute queue, or Ray tasks) through the one dataset loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from app.jobs import Job, Subscription, response_fields
from app.schemas.vit_figures import (
    DistanceGeometry,
    DistanceJobResponse,
    DistanceResultSchema,
    ReceptiveFieldResponse,
)
from app.serialization import typed_array
from app.services.image_sets import (  # noqa: F401 (MAX_FILES, MAX_IMAGES, parse_uploads: the router's)
    MAX_FILES,
    MAX_IMAGES,
    ParsedUploads,
    job_images,
    parse_uploads,
    pixel_budget,
    sample_list,
    set_key,
    set_names,
)
from app.state import AppState
from models.vision import views as vision_views
from models.vision.analysis import VisionAnalysis, VisionModel
from models.vision.distance import (
    dataset_mean_attention_distance,
)


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

    @property
    def nbytes(self) -> int:  # for the byte-bounded view cache
        return int(self.mad_px.nbytes) + 1024

    def to_schema(self, unit: str) -> DistanceResultSchema:
        g = self.geometry
        mad, per_layer = vision_views.distance_in_unit(self.mad_px, (g.rows, g.cols), g.patch_size, unit)
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
            per_layer_mean=typed_array(per_layer, "f8"),
        )


def geometry(vm: VisionModel, resolution: int) -> DistanceGeometry:
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


# ----------------------------------------------------------------------------------------------------------
# One image, from the vision page's cache


def analysis_distance(vm: VisionModel, analysis: VisionAnalysis, renormalize: bool) -> RunResult:
    """MAD in pixels of a cached analysis (no forward pass), computed layer by layer in float32."""
    return RunResult(
        mad_px=vision_views.attention_distance(analysis, vm.info.patch_size, renormalize),  # (L, H) pixels
        n_images=1,
        renormalize=renormalize,
        model=vm.info.id,
        label=vm.info.label,
        source="analysis",
        source_label="this image",
        geometry=geometry(vm, analysis.resolution),
    )


def start_job(
    state: AppState,
    vm: VisionModel,
    resolution: int,
    renormalize: bool,
    batch_size: int | None,
    parsed: ParsedUploads | None,
    owner: str | None,
) -> tuple[Subscription, bool]:
    """Start (or reuse) a distance job over the samples (``parsed`` None) or checked uploads.

    Returns (subscription, reused): an identical finished job is reused, an identical running one is
    shared (the registry merges by key); either way the caller gets a subscription of its own. Raises :class:`app.jobs.JobsBusy` when the slots or the quota are full."""
    source: Literal["samples", "upload"] = "samples" if parsed is None else "upload"
    key = f"{vm.info.id}|{resolution}|{int(renormalize)}|{set_key(parsed)}"
    registry = state.distance_jobs
    reused = registry.reuse_done(key, owner)
    if reused is not None:
        return reused, True
    n = len(set_names(parsed))
    source_label = f"{n} sample photos" if parsed is None else f"{n} uploaded image{'s' if n != 1 else ''}"
    batch = batch_size or (32 if state.device.type == "cuda" else 4)  # CPU: finer progress, shorter holds
    # bounded in pixels too: a single-image analysis waits for at most one such batch in the queue
    batch = max(1, min(batch, state.settings.limits.batch_max_pixels // (resolution * resolution)))
    geom = geometry(vm, resolution)

    def run(job: Job) -> RunResult:
        images = job_images(state, parsed, job.cancel_event)

        result = dataset_mean_attention_distance(
            vm,
            images,
            batch_size=batch,
            resolution=resolution,
            renormalize=renormalize,
            progress=job.report,
            cancel=job.cancel_event,
            submit=state.backend.dataset_submit(vm, resolution, renormalize, job.cancel_event),
            window=state.backend.dataset_window,
        )
        return RunResult(
            mad_px=result.mad,
            n_images=result.n_images,
            renormalize=renormalize,
            model=vm.info.id,
            label=vm.info.label,
            source=source,
            source_label=source_label,
            geometry=geom,
        )

    params = dict(model=vm.info.id, source=source, renormalize=renormalize, batch_size=batch)
    return registry.submit(run, "distance", params, key=key, total=n, owner=owner), False


def job_response(job: Subscription, unit: str, reused: bool = False) -> DistanceJobResponse:
    p = job.params
    return DistanceJobResponse(
        **response_fields(job, "/api/distance/jobs", reused),
        model=p["model"],
        source=p["source"],
        renormalize=p["renormalize"],
        batch_size=p["batch_size"],
        result=job.result.to_schema(unit) if job.status == "done" else None,
    )


# ----------------------------------------------------------------------------------------------------------
# CNN reference line (CPU pool)


def receptive_field_reference(
    num_layers: int, unit: str, patch_size: int, rows: int, cols: int
) -> ReceptiveFieldResponse:
    """ResNet-50's theoretical receptive field per layer on the ViT's layer axis (relative depth), with the
    comparable quantity: the MAD of uniform attention over that window on the ViT's R x C grid of
    ``patch_size`` px patches (:func:`models.vision.receptive_field.uniform_window_mad`), and the two
    ceilings (uniform attention over the whole image, and the largest MAD any head can have)."""
    ref = vision_views.receptive_field(num_layers, unit, patch_size, (rows, cols))  # type: ignore[arg-type]
    return ReceptiveFieldResponse(
        network="ResNet-50",
        unit=unit,
        num_layers=num_layers,
        x=typed_array(ref.x, "f8"),
        rf=typed_array(ref.rf, "f8"),
        rf_pixels=[int(v) for v in ref.rf_pixels],
        names=ref.names,
        depth_index=ref.depth_index,
        uniform_window=typed_array(ref.uniform_window, "f8"),
        uniform_image=ref.uniform_image,
        max_distance=ref.max_distance,
        image_diagonal=ref.image_diagonal,
    )
