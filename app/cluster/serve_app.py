"""The Ray Serve application: the FastAPI app as the ingress, one deployment per model family.

::

    HTTP 127.0.0.1:8000 -> Serve proxy -> Ingress (create_app(settings), backend="ray")
                                           |-- VisionModels x vision_replicas  (forwards, GPU if asked)
                                           |-- TextModels   x text_replicas
                                           '-- Ray tasks for dataset batches (app.cluster.dataset)

Every route, page, cache and derived view runs in the ingress exactly as in ``make run``; only model
forwards and dataset batches leave it (:mod:`app.backend`). The ingress keeps a CPU copy of each
model it uses for metadata, preprocessing and the few captures that stay local (text neuron view and
offsets), so it takes no GPU.

Backpressure is Serve's own, on the model deployments: ``max_ongoing_requests`` per replica,
``max_queued_requests`` per caller, and a ``BackpressureConfig`` with ``retry_after_s``. The ingress turns
their refusals into the app's JSON 503 + ``Retry-After`` (:mod:`app.cluster.client`), as the local queue
does. The ingress itself never refuses in Serve's name: its queue in the HTTP proxy is unbounded
(``max_queued_requests=-1``) and :data:`INGRESS_MAX_ONGOING` requests run in it at once, each either
served or refused by the app in a few milliseconds. (A bounded ingress queue made Serve's proxy refuse
bursts itself, with a plain-text body, whenever a few requests were still being assigned to the replica.)

Every replica keeps its inter-deployment gRPC server on the node's address, not on every interface
(:func:`app.cluster.loopback.keep_replica_server_on_node_ip`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve.config import BackpressureConfig

from app.cluster.client import INGRESS, TEXT, VISION
from app.cluster.deployments import TextModels, VisionModels, send_analyses_zero_copy
from app.cluster.loopback import keep_replica_server_on_node_ip
from app.settings import Settings

INGRESS_MAX_ONGOING = 256  # HTTP requests one ingress replica holds at once (its event loop awaits them)


@serve.ingress()
class Ingress:
    """The FastAPI app, built in the replica (``__serve_build_asgi_app__``) from the settings."""

    def __init__(self, settings: Settings, *model_deployments: Any) -> None:
        keep_replica_server_on_node_ip()
        send_analyses_zero_copy()  # the shared analysis index (ray.put) when ingress_replicas > 1
        self.settings = settings  # the model deployments are reached by name, see build_app

    def __serve_build_asgi_app__(self) -> FastAPI:
        from app.cluster.store import share_analyses
        from app.main import create_app

        app = create_app(self.settings)
        if self.settings.cluster.ingress_replicas > 1:  # a follow-up GET may land on another replica
            share_analyses(app, self.settings)
        return app


class VisionReplica(VisionModels):
    """``VisionModels`` with its replica's gRPC server on the node's address. With the driver front it is
    the application's root, and ``_deployed_with`` is the bound ``TextModels`` (deployed with it, unused)."""

    def __init__(self, settings: Settings, *_deployed_with: Any) -> None:
        keep_replica_server_on_node_ip()
        send_analyses_zero_copy()  # the (L, H, N, N) maps go back to the ingress without a pickled copy
        super().__init__(settings)


class TextReplica(TextModels):
    """``TextModels`` with its replica's gRPC server on the node's address."""

    def __init__(self, settings: Settings) -> None:
        keep_replica_server_on_node_ip()
        super().__init__(settings)


def ingress_settings(settings: Settings) -> Settings:
    """The ingress's settings: the Ray backend, and CPU copies of the models (the replicas hold the real
    ones, on the device ``settings.server.device`` names)."""
    return settings.replace(**{"backend": "ray", "device": "cpu", "dtype": "float32"})


def replicas_batch(settings: Settings) -> bool:
    """Whether the VisionModels replicas batch (``@serve.batch``): ``batching`` on, or auto with a GPU."""
    if settings.batching.mode == "auto":
        return settings.cluster.num_gpus_per_replica > 0 and settings.server.device != "cpu"
    return settings.batching.mode == "on"


def build_app(settings: Settings) -> Any:
    """The bound Serve application for ``serve.run(build_app(settings), name=settings.cluster.serve_app_name)``:
    with ``http_front = "serve"`` the Ingress deployment over both model deployments; with ``"driver"``
    only the model deployments (the driver's uvicorn runs the app, :func:`driver_app`)."""
    backpressure = BackpressureConfig(status_code=503, retry_after_s=settings.limits.retry_after_s)
    model_options = dict(
        max_ongoing_requests=settings.cluster.max_ongoing_requests,
        max_queued_requests=settings.cluster.max_queued_requests,
        backpressure_config=backpressure,
        ray_actor_options={
            "num_cpus": settings.cluster.num_cpus_per_replica,
            "num_gpus": settings.cluster.num_gpus_per_replica,
        },
    )
    replica_settings = settings.replace(**{"backend": "local"})
    vision = serve.deployment(VisionReplica).options(
        name=VISION, num_replicas=settings.cluster.vision_replicas, **model_options
    )
    if replicas_batch(settings):  # a batch can only form from requests the replica holds at once
        vision = vision.options(
            max_ongoing_requests=max(settings.cluster.max_ongoing_requests, settings.batching.max_size)
        )
    text = serve.deployment(TextReplica).options(
        name=TEXT, num_replicas=settings.cluster.text_replicas, **model_options
    )
    if settings.cluster.http_front == "driver":  # VisionModels is the root; TextModels is deployed with it
        return vision.bind(replica_settings, text.bind(replica_settings))
    ingress = serve.deployment(Ingress).options(
        name=INGRESS,
        num_replicas=settings.cluster.ingress_replicas,
        max_ongoing_requests=INGRESS_MAX_ONGOING,
        max_queued_requests=-1,  # the proxy never refuses: the app answers every refusal (JSON 503)
        ray_actor_options={"num_cpus": 0},
    )
    # The model deployments are bound as arguments only so that serve.run deploys them with the app; the
    # ingress reaches them by name (serve.get_deployment_handle) from inside its services.
    return ingress.bind(
        ingress_settings(settings), vision.bind(replica_settings), text.bind(replica_settings)
    )


def driver_app(settings: Settings) -> FastAPI:
    """The app the driver's uvicorn serves with ``http_front = "driver"``: the same ``create_app`` as the
    Ingress deployment, with the same settings, in the ``python -m app.cluster`` process. Requests reach it
    without Serve's HTTP proxy and the actor hop to an ingress replica; forwards still go to the model
    deployments through DeploymentHandles (:mod:`app.cluster.client`)."""
    from app.main import create_app

    return create_app(ingress_settings(settings))
