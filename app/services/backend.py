"""Where model work runs: the local compute queue (default) or a Ray cluster (``settings.cluster.backend="ray"``).

The seam is one call, :func:`remote_models`: ``None`` means "local" and the services keep calling
``await state.queue.run(...)`` as before; otherwise it is the cluster's :class:`RemoteModels` (implemented
in :mod:`app.cluster.client`), whose forwards run in Ray Serve model deployments and whose dataset batches
run as Ray tasks across the nodes. Everything else (caches, derived views, ids) stays in the process that
answers the HTTP request, so the two backends give the same responses.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from PIL import Image

    from app.state import AppState
    from models.text.analysis import TextAnalysis
    from models.vision.analysis import VisionAnalysis, VisionModel
    from models.vision.distance import DistanceResult


class RemoteModels(Protocol):
    """Model work on a cluster. Full queues and lost replicas raise :class:`app.compute.Busy` (503)."""

    name: str

    async def vision_forward(
        self, model_id: str, image: Image.Image, resolution: int, key: str
    ) -> tuple[VisionAnalysis, float]:
        """(analysis, forward ms) of one image; identical in-flight ``key``s share one forward."""
        ...

    async def text_forward(self, model_id: str, text: str, target: str | None, key: str) -> TextAnalysis:
        """One captured text forward; identical in-flight ``key``s share one forward."""
        ...

    def dataset_distance(
        self,
        vm: VisionModel,
        images: Sequence[Image.Image],
        batch_size: int,
        resolution: int,
        renormalize: bool,
        progress: Callable[[int, int | None], None],
        cancel: threading.Event,
    ) -> DistanceResult:
        """Mean attention distance (pixels) over ``images``, batches fanned out across the nodes (blocking:
        for job threads)."""
        ...

    async def replicas(self) -> dict[str, int]:
        """Running replicas per deployment."""
        ...


def remote_models(state: AppState) -> RemoteModels | None:
    """The cluster backend when ``settings.cluster.backend == "ray"``, else None (the local compute queue)."""
    if state.settings.cluster.backend != "ray":
        return None
    from app.cluster.client import ray_models  # Ray is only imported in ray mode

    return ray_models(state.settings)
