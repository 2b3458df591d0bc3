"""Where model work runs: one :class:`ModelBackend`, chosen once at start-up and kept on ``state.backend``.

- ``local`` (:class:`app.backend.local.LocalBackend`): forwards and dataset batches in this process's
  compute queue, through the micro-batcher when batching is on (``app/batching.py``);
- ``ray`` (:class:`app.cluster.client.RayModels`): forwards in Ray Serve model deployments, dataset batches
  as Ray tasks across the nodes.

Services call ``await state.backend.vision_forward(...)`` / ``text_forward(...)`` and hand
``state.backend.dataset_submit(...)`` to the one dataset loop
(:func:`models.vision.distance.dataset_mean_attention_distance`); none of them asks which backend it is.
Everything else (caches, derived views, ids) stays in the process that answers the HTTP request, so the two
backends give the same responses. Identical in-flight forwards (same ``key``) share one forward in both
(:class:`app.inflight.InFlight`). A full queue or a lost replica raises :class:`app.compute.Busy` (503).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Protocol

from app.backend.local import LocalBackend, TextCache, VisionCache

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from app.compute import ComputeQueue, CpuPool
    from app.settings import Settings
    from models.text.analysis import TextAnalysis, TextModel
    from models.vision.analysis import VisionAnalysis, VisionModel
    from models.vision.distance import SubmitFn


class ModelBackend(Protocol):
    """Model work for the services (module docstring)."""

    name: str
    dataset_window: int  # dataset batches in flight at once

    async def vision_forward(
        self, vm: VisionModel, image: Image.Image, resolution: int, *, key: str, cache: VisionCache
    ) -> tuple[VisionAnalysis, float]:
        """(analysis, forward ms; 0 when it was cached meanwhile) of one image. ``key`` is the analysis
        id: identical in-flight keys share one forward, and the result is in ``cache`` under it before
        any waiter wakes."""
        ...

    async def text_forward(
        self, model: TextModel, text: str, target: str | None, *, key: str, cache: TextCache, cost: int = 0
    ) -> TextAnalysis:
        """One captured text forward, merged and cached under ``key`` as :meth:`vision_forward`. A text the
        model refuses is a :class:`app.services.errors.ServiceError` 422."""
        ...

    def dataset_submit(
        self, vm: VisionModel, resolution: int, renormalize: bool, cancel: threading.Event
    ) -> SubmitFn:
        """``submit(x) -> Future[BatchMad]`` for the dataset loop: one batch's forward (blocking while the
        backend is full, until ``cancel``)."""
        ...

    async def replicas(self) -> dict[str, int] | None:
        """Running replicas per deployment (None: local)."""
        ...

    def close(self) -> None: ...


def create_backend(
    settings: Settings, queue: ComputeQueue, cpu: CpuPool, device: torch.device
) -> ModelBackend:
    """The backend ``settings.cluster.backend`` names, over this process's queue and pool."""
    if settings.cluster.backend == "ray":
        from app.cluster.client import RayModels  # Ray is only imported in ray mode (a lazy import)

        return RayModels(settings, queue)
    return LocalBackend.from_settings(settings, queue, cpu, device)
