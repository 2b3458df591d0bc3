"""Set-level feature PCA and K-means parts as dataset jobs (``app/jobs.py``: progress, cancel, quotas).

Budgets: the job registry's slots and per-client quota are checked first (the distance jobs' registry: one
pool of dataset jobs); uploads are parsed and refused before any pixel is decoded (``image_sets.parse_uploads``);
each image is decoded inside the job; each batch's forward goes through the compute queue (``state.queue``), so
single-image requests interleave batch by batch. Memory of a job of n images: n * P * D * 2 bytes of kept
features, plus the fits' float64 working set, about 16 * n * P * D + 8 * n * P * k (models/vision/feature_sets.py):
for the 8 samples at 448 px (P = 1,024, D = 384) 6 MB + 50 MB.
"""

from __future__ import annotations

import numpy as np

from app.backend.local import wait_for_room
from app.jobs import Job, Subscription, response_fields
from app.schemas.features import FeatureSetImage, FeatureSetJobResponse, FeatureSetResult
from app.serialization import typed_array
from app.services.image_sets import ParsedUploads, job_images, set_key, set_names
from app.state import AppState
from models.vision.analysis import VisionModel
from models.vision.feature_sets import batch_features, dataset_features, set_views


def start_job(
    state: AppState,
    vm: VisionModel,
    resolution: int,
    k: int,
    seed: int,
    threshold: float,
    parsed: ParsedUploads | None,
    owner: str | None,
) -> tuple[Subscription, bool]:
    """Start (or reuse) a feature-set job over the samples (``parsed`` None) or checked uploads."""
    key = f"features|{vm.info.id}|{resolution}|{k}|{seed}|{threshold!r}|{set_key(parsed)}"
    registry = state.distance_jobs
    reused = registry.reuse_done(key, owner)
    if reused is not None:
        return reused, True
    names = set_names(parsed)
    grid = vm.info.grid(resolution, resolution)
    batch = max(1, min(4, state.settings.limits.batch_max_pixels // (resolution * resolution)))

    def run(job: Job) -> FeatureSetResult:
        images = job_images(state, parsed, job.cancel_event)

        def submit(x):
            return wait_for_room(
                lambda: state.queue.submit(batch_features, vm, x), job.cancel_event, "the model"
            )

        feats = dataset_features(vm, images, resolution, batch, job.report, job.cancel_event, submit)
        views = set_views(feats, grid, k, seed, threshold)
        u8 = lambda a: np.round(np.nan_to_num(a, nan=0.0) * 255).astype(np.uint8)  # noqa: E731
        return FeatureSetResult(
            model=vm.info.id,
            resolution=resolution,
            rows=grid[0],
            cols=grid[1],
            k=k,
            seed=seed,
            threshold=threshold,
            explained=[float(x) for x in views.pca[0].explained],
            iterations=views.kmeans.iterations,
            converged=views.kmeans.converged,
            images=[
                FeatureSetImage(
                    name=name,
                    rgb=typed_array(u8(p.rgb).reshape(*grid, 3), "u1"),
                    foreground=typed_array(p.foreground.reshape(grid), "u1"),
                    parts=typed_array(labels, "u1"),
                )
                for name, p, labels in zip(names, views.pca, views.parts, strict=True)
            ],
        )

    params = dict(model=vm.info.id, k=k, seed=seed, threshold=threshold)
    return registry.submit(run, "feature-set", params, key=key, total=len(names), owner=owner), False


def job_response(job: Subscription, reused: bool = False) -> FeatureSetJobResponse:
    return FeatureSetJobResponse(
        **response_fields(job, "/api/vision/feature-sets/jobs", reused),
        result=job.result if job.status == "done" else None,
    )
