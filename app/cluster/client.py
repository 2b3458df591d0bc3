"""The ingress's side of the Ray backend (:class:`app.services.backend.RemoteModels`).

- Forwards go to the ``VisionModels`` / ``TextModels`` deployments through DeploymentHandles. Identical
  requests in flight in this ingress share one call (the key is the analysis id), as the local compute
  queue merges them.
- Backpressure is Serve's own: each model replica runs at most ``max_ongoing_requests`` forwards and this
  ingress queues at most ``max_queued_requests`` per deployment; past that the handle raises
  ``BackPressureError`` (carrying the deployment's ``BackpressureConfig.retry_after_s``), answered like
  the local queue's :class:`app.compute.Busy`: 503, ``Retry-After`` and the same JSON body.
- A replica that dies with a request on it (``RayActorError``), or a deployment with no replica yet, is
  also a 503 + ``Retry-After``: Serve starts a replacement and the client's retry succeeds.
- Dataset jobs fan out as Ray tasks (:mod:`app.cluster.dataset`).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from PIL import Image
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from app.cluster.dataset import TaskOptions, distributed_distance
from app.cluster.deployments import Failure
from app.compute import Busy
from app.settings import Settings
from models.text.analysis import TextAnalysis
from models.vision.analysis import VisionAnalysis, VisionModel
from models.vision.distance import DistanceResult

VISION = "VisionModels"
TEXT = "TextModels"
INGRESS = "Ingress"
STATUS_TTL_S = 1.0  # /api/health asks the Serve controller at most this often


class ModelsBusy(Busy):
    """A model deployment refused the request (full queue) or lost the replica that held it."""


class RayModels:
    """Model work on the cluster, for one Serve application (``settings.cluster.serve_app_name``)."""

    name = "ray"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app_name = settings.cluster.serve_app_name
        self._handles: dict[str, Any] = {}
        self._inflight: dict[str, asyncio.Future] = {}
        self._status: tuple[float, dict[str, int]] | None = None
        self.task_options = TaskOptions(
            num_cpus=settings.cluster.num_cpus_per_replica,
            num_gpus=settings.cluster.num_gpus_per_replica,
            max_retries=settings.cluster.dataset_task_retries,
            device=settings.server.device,
            dtype=settings.server.dtype,
            cache_dir=str(settings.server.cache_dir),
        )

    def _handle(self, deployment: str) -> Any:
        if deployment not in self._handles:
            self._handles[deployment] = serve.get_deployment_handle(deployment, app_name=self.app_name)
        return self._handles[deployment]

    async def _call(self, deployment: str, *args: Any) -> Any:
        """``deployment.forward(*args)``, with Serve's refusals and lost replicas turned into 503s."""
        retry = self.settings.limits.retry_after_s
        try:
            out = await self._handle(deployment).forward.remote(*args)
        except BackPressureError as e:
            after = math.ceil(e.retry_after_s) if e.retry_after_s is not None else retry
            raise ModelsBusy(f"the {deployment} deployment is busy ({e.message})", after) from e
        except (RayActorError, DeploymentUnavailableError) as e:
            raise ModelsBusy(
                f"a {deployment} replica stopped while serving this request; a new one is starting", retry
            ) from e
        if isinstance(out, Failure):
            raise out.error
        return out

    async def _merged(self, key: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """One call per key in flight; later identical requests await the same future."""
        future = self._inflight.get(key)
        if future is None:
            future = asyncio.ensure_future(call())
            self._inflight[key] = future

            def forget(f: asyncio.Future) -> None:
                if self._inflight.get(key) is f:
                    del self._inflight[key]
                if not f.cancelled():
                    f.exception()  # retrieved: no "never retrieved" warning when every waiter left

            future.add_done_callback(forget)
        return await asyncio.shield(future)

    async def vision_forward(
        self, model_id: str, image: Image.Image, resolution: int, key: str
    ) -> tuple[VisionAnalysis, float]:
        return await self._merged(key, lambda: self._call(VISION, model_id, image, resolution))

    async def text_forward(self, model_id: str, text: str, target: str | None, key: str) -> TextAnalysis:
        return await self._merged(key, lambda: self._call(TEXT, model_id, text, target))

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
        run = distributed_distance(
            vm, images, batch_size, resolution, renormalize, self.task_options, progress, cancel
        )
        return run.result

    async def replicas(self) -> dict[str, int]:
        """RUNNING replicas per deployment of this application (cached for :data:`STATUS_TTL_S`)."""
        now = time.monotonic()
        if self._status is None or now - self._status[0] > STATUS_TTL_S:
            try:
                status = await asyncio.to_thread(serve.status)
            except Exception:  # noqa: BLE001 - health must answer even when the controller does not
                return self._status[1] if self._status else {}
            app = status.applications.get(self.app_name)
            counts = {
                name: int(d.replica_states.get("RUNNING", 0))
                for name, d in (app.deployments.items() if app else ())
            }
            self._status = (now, counts)
        return self._status[1]


_clients: dict[str, RayModels] = {}
_clients_lock = threading.Lock()


def ray_models(settings: Settings) -> RayModels:
    """This process's client for the application named in ``settings`` (created on first use)."""
    with _clients_lock:
        client = _clients.get(settings.cluster.serve_app_name)
        if client is None:
            client = _clients[settings.cluster.serve_app_name] = RayModels(settings)
        return client
