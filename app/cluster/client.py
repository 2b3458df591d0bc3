"""The ingress's side of the Ray backend (:class:`app.backend.ModelBackend`).

- Forwards go to the ``VisionModels`` / ``TextModels`` deployments through DeploymentHandles. Identical
  requests in flight in this ingress share one call (the key is the analysis id), merged by the same
  :class:`app.inflight.InFlight` as the local compute queue; the result is cached before waiters wake.
- Backpressure is Serve's own: each model replica runs at most ``max_ongoing_requests`` forwards and this
  ingress queues at most ``max_queued_requests`` per deployment; past that the handle raises
  ``BackPressureError`` (carrying the deployment's ``BackpressureConfig.retry_after_s``), answered like
  the local queue's :class:`app.compute.Busy`: 503, ``Retry-After`` and the same JSON body.
- A replica that dies with a request on it (``RayActorError``), or a deployment with no replica yet, is
  also a 503 + ``Retry-After``: Serve starts a replacement and the client's retry succeeds.
- Dataset batches run as Ray tasks (:func:`app.cluster.dataset.ray_submit`) under the one dataset loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import ray
from PIL import Image
from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from app.backend.local import TextCache, VisionCache, image_cost
from app.cluster.dataset import TaskOptions, ray_submit
from app.cluster.deployments import Failure
from app.compute import Busy, ComputeQueue
from app.inflight import InFlight
from app.settings import Settings
from models.text.analysis import TextAnalysis, TextModel
from models.vision.analysis import VisionAnalysis, VisionModel
from models.vision.distance import SubmitFn

VISION = "VisionModels"
TEXT = "TextModels"
INGRESS = "Ingress"
# /api/health asks the Serve controller at most this often. serve.status() is not cheap for the process that
# answers HTTP: it builds Serve's config models (cloudpickling the request-router class) under the GIL; at once
# a second it held the GIL about 30 ms a second in the driver under load (py-spy --gil, docs/cluster.md).
STATUS_TTL_S = 10.0


class ModelsBusy(Busy):
    """A model deployment refused the request (full queue) or lost the replica that held it."""


def router_in_own_loop() -> bool:
    """Whether Serve runs a handle's router on a loop of its own (its default), not on the caller's loop."""
    try:
        from ray.serve._private import constants
    except ImportError:  # pragma: no cover - a Serve without the module: assume the default
        return True
    return bool(getattr(constants, "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP", True))


class RayModels:
    """Model work on the cluster, for one Serve application (``settings.cluster.serve_app_name``)."""

    name = "ray"

    def __init__(self, settings: Settings, queue: ComputeQueue | None = None) -> None:
        self.settings = settings
        # The ingress's compute queue admits every forward as it does locally (its max_pending, bytes and
        # per-client share, the same 503s), then the forward runs in a replica: one client's flood is
        # refused here, before it fills the deployment's queue that every client shares.
        self.queue = queue
        self.app_name = settings.cluster.serve_app_name
        self._handles: dict[str, asyncio.Future] = {}  # deployment -> its forward handle (being) made
        self._inflight: InFlight[asyncio.Future] = InFlight()
        self._status: tuple[float, dict[str, int]] | None = None
        self._refreshing: asyncio.Future | None = None
        self.task_options = TaskOptions(
            num_cpus=settings.cluster.num_cpus_per_replica,
            num_gpus=settings.cluster.num_gpus_per_replica,
            max_retries=settings.cluster.dataset_task_retries,
            device=settings.server.device,
            dtype=settings.server.dtype,
            cache_dir=str(settings.server.cache_dir),
        )

    async def _forward_handle(self, deployment: str) -> Any:
        """``deployment``'s handle for ``forward``, made once. Its first ``.options()`` builds Serve's router and
        waits for it (80 ms measured, on 2026-12-06): that happens in a worker thread, not on the event loop,
        where every request, health checks included, would wait with it. Concurrent first calls share it."""
        made = self._handles.get(deployment)
        if made is None:
            if router_in_own_loop():  # Serve's default: the router runs on a loop of its own
                made = asyncio.ensure_future(asyncio.to_thread(self._connect, deployment))
            else:  # RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP=0: the router lives on this loop, so make it here
                made = asyncio.get_running_loop().create_future()
                made.set_result(self._connect(deployment))
            self._handles[deployment] = made
        try:
            return await asyncio.shield(made)
        except Exception:
            if self._handles.get(deployment) is made:
                del self._handles[deployment]  # the next call tries again
            raise

    def _connect(self, deployment: str) -> Any:
        return serve.get_deployment_handle(deployment, app_name=self.app_name).options(method_name="forward")

    async def _call(self, deployment: str, *args: Any, cost: int = 0) -> Any:
        """``deployment.forward(*args)`` once the ingress's queue admits it (``cost`` bytes held meanwhile),
        with Serve's refusals and lost replicas turned into 503s."""
        admitted = self.queue.admitted(cost) if self.queue is not None else contextlib.nullcontext()
        with admitted:
            return await self._forward(deployment, *args)

    async def _forward(self, deployment: str, *args: Any) -> Any:
        retry = self.settings.limits.retry_after_s
        try:
            out = await (await self._forward_handle(deployment)).remote(*args)
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
        future = self._inflight.find(key)
        if future is None:
            future = self._inflight.add(key, asyncio.ensure_future(call()))
            # retrieved: no "never retrieved" warning when every waiter left
            future.add_done_callback(lambda f: f.cancelled() or f.exception())
        return await asyncio.shield(future)

    async def vision_forward(
        self, vm: VisionModel, image: Image.Image, resolution: int, *, key: str, cache: VisionCache
    ) -> tuple[VisionAnalysis, float]:
        async def call() -> tuple[VisionAnalysis, float]:  # cached before the merged waiters wake
            analysis, forward_ms = await self._call(
                VISION, vm.info.id, image, resolution, cost=image_cost(image)
            )
            cache.put(key, analysis)
            return analysis, forward_ms

        return await self._merged(f"vision:{key}", call)

    async def text_forward(
        self, model: TextModel, text: str, target: str | None, *, key: str, cache: TextCache, cost: int = 0
    ) -> TextAnalysis:
        async def call() -> TextAnalysis:  # cached before the merged waiters wake
            analysis = await self._call(TEXT, model.info.id, text, target, cost=cost)
            cache.put(key, analysis)
            return analysis

        return await self._merged(key, call)

    @property
    def dataset_window(self) -> int:
        """Ray tasks in flight per dataset job: two per alive node."""
        return 2 * max(1, sum(n["Alive"] for n in ray.nodes()))

    def dataset_submit(
        self, vm: VisionModel, resolution: int, renormalize: bool, cancel: threading.Event
    ) -> SubmitFn:
        return ray_submit(vm, resolution, renormalize, self.task_options)

    def close(self) -> None:
        """Nothing of its own: the queue belongs to the state, the handles to Serve."""

    async def replicas(self) -> dict[str, int]:
        """RUNNING replicas per deployment of this application. Only the first call waits for the Serve
        controller; later calls answer at once from the last counts and, when those are older than
        :data:`STATUS_TTL_S`, start one refresh in the background: a busy controller never delays
        ``/api/health`` (with the health check polled every 0.1 s, one call in ten used to wait for it)."""
        if self._status is None:
            await self._refresh()
            return self._status[1] if self._status else {}
        stale = time.monotonic() - self._status[0] > STATUS_TTL_S
        if stale and (self._refreshing is None or self._refreshing.done()):
            self._refreshing = asyncio.ensure_future(self._refresh())
        return self._status[1]

    async def _refresh(self) -> None:
        try:
            status = await asyncio.to_thread(serve.status)
        except Exception:  # noqa: BLE001 - health must answer even when the controller does not
            return
        app = status.applications.get(self.app_name)
        counts = {
            name: int(d.replica_states.get("RUNNING", 0))
            for name, d in (app.deployments.items() if app else ())
        }
        self._status = (time.monotonic(), counts)
