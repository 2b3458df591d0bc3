"""The settings' six groups (``server``, ``limits``, ``caches``, ``models``, ``batching``, ``cluster``) and the
one flat name of every setting (:data:`FLAT`: its ``ATLAS_*`` variable and TOML key), with :func:`nest`, which
puts flat names into their groups. :mod:`app.settings` builds :class:`~app.settings.Settings` from them and
re-exports these names.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import NoDecode

from models.devices import DeviceName, DtypeName
from models.text.analysis import DATES, HUB_EXAMPLES, MINILM, TextModelSpec
from models.vision.registry import DINOV2_VITS14, VisionModelSpec

BatchingMode = Literal["auto", "on", "off"]  # dynamic batching: auto = on for CUDA, off on CPU
Backend = Literal["local", "ray"]  # where model work runs
HttpFront = Literal["driver", "serve"]  # who answers HTTP in cluster mode (docs/cluster.md)

MIN_SECRET_BYTES = 32  # ATLAS_SECRET_KEY keys every id (HMAC-SHA256): at least as long as its output


# ---------------------------------------------------------------------------------------------- groups


class Group(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(Group):
    """The process: device, weights cache, hosts it answers, request bodies."""

    device: DeviceName = "auto"
    dtype: DtypeName = "float32"
    cache_dir: Path = Path(".cache")
    preload: bool = True  # load the default models in the lifespan (tests may turn it off)
    allowed_hosts: list[str] = Field(default_factory=lambda: ["localhost", "127.0.0.1", "[::1]"])
    secret_key: str | None = None  # keys analysis ids (HMAC of the content); random per process if unset
    max_json_kb: int = 64  # request bodies that are not multipart uploads
    gil_switch_interval_ms: float = Field(1.0, gt=0, le=100)  # how long a busy worker may keep the GIL
    gc_freeze: bool = True  # after start-up, freeze the heap for the cyclic GC (app.compute.freeze_heap)
    # slow clients (app/server.py, `python -m app serve`): past a limit the connection is closed
    header_timeout_s: float = Field(10.0, gt=0)  # to send the request line and headers
    body_timeout_s: float = Field(60.0, gt=0)  # to send the whole body (20 MB at >= 350 kB/s)
    keep_alive_s: int = Field(5, ge=1)  # an idle kept-alive connection
    max_header_kb: int = Field(64, ge=1)  # request line + headers
    max_connections: int = Field(1000, ge=1)  # open at once; the next gets a JSON 503 + Retry-After
    # peers whose X-Forwarded-For / X-Forwarded-Proto are believed (IPs or CIDRs, e.g. ["127.0.0.1"] behind
    # a reverse proxy on this machine); empty: the socket's peer is the client, forwarded headers are ignored
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)  # env: comma-separated

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: Any) -> Any:
        if isinstance(value, str):  # ATLAS_TRUSTED_PROXIES=127.0.0.1,10.0.0.0/8 (or a JSON list)
            text = value.strip()
            return (
                json.loads(text)
                if text.startswith("[")
                else [p.strip() for p in text.split(",") if p.strip()]
            )
        return value

    @field_validator("secret_key")
    @classmethod
    def _long_secret(cls, value: str | None) -> str | None:
        if value is not None and len(value.encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"ATLAS_SECRET_KEY must be at least {MIN_SECRET_BYTES} bytes (it has {len(value.encode())}); "
                'make one with: python -c "import secrets; print(secrets.token_hex(32))"'
            )
        return value


class LimitsSettings(Group):
    """The resource budget (docs "Resource model") and input limits. Peak RSS <= base + the cache budgets
    + one forward + cpu_workers x largest view + decode_concurrency x largest decode + job uploads."""

    max_upload_mb: float = 20.0
    max_image_pixels: int = 50_000_000  # larger images are refused as decompression bombs
    min_image_side: int = 8
    queue_size: int = Field(32, ge=1)  # model requests waiting or running; beyond that: 503 + Retry-After
    queue_mb: int = Field(128, ge=1)  # ... and the decoded inputs those waiting requests hold
    cpu_workers: int = Field(default_factory=lambda: max(1, min(4, os.cpu_count() or 2)), ge=1)
    cpu_pool_size: int = Field(16, ge=1)  # CPU-heavy views/decodes waiting or running; beyond that: 503
    decode_concurrency: int = Field(2, ge=1)  # image decodes at once (each is capped in pixels and bytes)
    retry_after_s: int = 2
    worker_nice: int = Field(10, ge=0, le=19)  # executor threads run this much below the event loop (Linux)
    jobs_per_client: int = Field(2, ge=1)  # dataset jobs one client address may have queued or running
    max_active_jobs: int = Field(8, ge=1)  # dataset jobs queued or running, all clients together
    max_job_megapixels: int = Field(800, ge=1)  # pixels one image-set job may decode in all (from headers)
    max_text_chars: int = 4000
    text_inline_kb: int = 512  # full maps go inline in the first response up to this many float32 bytes
    text_thumb_size: int = 64  # model-view thumbnails are max-pooled to at most this many cells a side
    # users are kept apart (docs/trust.md): one client's share of each executor
    client_queue_inflight: int = Field(16, ge=1)  # model requests one client may have waiting or running
    client_cpu_inflight: int = Field(8, ge=1)  # CPU-pool jobs one client may have waiting or running
    batch_max_pixels: int = Field(1_000_000, ge=1)  # input pixels per dataset batch (e.g. 4 images at 448 px)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


class CachesSettings(Group):
    """Caches bounded in bytes (and in time: ``analysis_ttl_s``)."""

    analysis_mb: int = (
        768  # DINOv2 analyses: 2.7 MiB at 224 px, 10.6 at 448, 14.2 at 518 (docs/resource-model.md)
    )
    analysis_ttl_s: int = 3600
    image_mb: int = 128  # decoded uploads (each reduced to <= 4 MP before it is kept)
    text_mb: int = 256  # text maps, float32
    view_mb: int = 128  # derived views (rollout, distance, text views, figures) per (id, options)
    shared_mb: int = Field(1024, ge=1)  # the cluster's object-store index of analyses (ingress_replicas > 1)


class ModelsSettings(Group):
    """The operator's allowlists and the default models."""

    vision_models: list[VisionModelSpec] = Field(default_factory=lambda: [DINOV2_VITS14])
    extra_vision_models: list[VisionModelSpec] = Field(default_factory=list)
    default_vision_model: str = DINOV2_VITS14.id
    text_models: list[TextModelSpec] = Field(default_factory=lambda: [MINILM, DATES])
    extra_text_models: list[TextModelSpec] = Field(default_factory=list)  # operator's own allowlist
    text_hub_models: bool = False  # also allow bert-base-uncased, gpt2, opus-mt-en-de (needs a network)
    default_text_model: str = MINILM.id
    default_seq2seq_model: str = DATES.id

    def text_specs(self) -> dict[str, TextModelSpec]:
        hub = list(HUB_EXAMPLES) if self.text_hub_models else []
        return {e.id: e for e in [*self.text_models, *hub, *self.extra_text_models]}

    def vision_specs(self) -> dict[str, VisionModelSpec]:
        return {e.id: e for e in [*self.vision_models, *self.extra_vision_models]}


class BatchingSettings(Group):
    """Dynamic batching of single-image vision forwards (app/batching.py): auto = on for CUDA, off on CPU."""

    mode: BatchingMode = "auto"
    max_size: int = Field(16, ge=1)  # images in one batched forward at most
    wait_ms: float = Field(2.0, ge=0, le=1000)  # how long a lone request waits for company


class ClusterSettings(Group):
    """The Ray backend (docs "Local and Ray backends"; ``make run-cluster``, app/cluster/)."""

    backend: Backend = "local"  # ray: forwards run in Ray Serve model deployments
    ray_address: str | None = None  # an existing cluster ("auto", "ray://..."); None: start a local one
    serve_app_name: str = "atlas"
    # driver: uvicorn in the `python -m app.cluster` process runs the app, models in Serve deployments;
    # serve: Serve's HTTP proxy and an Ingress deployment (needed for ingress_replicas > 1)
    http_front: HttpFront = "driver"
    ingress_replicas: int = Field(1, ge=1)  # FastAPI ingress replicas (analyses shared via the object store)
    vision_replicas: int = Field(1, ge=1)  # VisionModels replicas, each holding the vision models
    text_replicas: int = Field(1, ge=1)  # TextModels replicas, each holding the text models
    num_gpus_per_replica: float = Field(0.0, ge=0)  # per model replica and per dataset task
    num_cpus_per_replica: float = Field(1.0, ge=0)
    max_ongoing_requests: int = Field(2, ge=1)  # forwards one model replica runs at once
    max_queued_requests: int = Field(32, ge=-1)  # per deployment handle; beyond: 503 + Retry-After (-1: none)
    dataset_task_retries: int = Field(3, ge=0)  # Ray re-runs a dataset batch whose worker died


GROUPS: dict[str, type[Group]] = {
    "server": ServerSettings,
    "limits": LimitsSettings,
    "caches": CachesSettings,
    "models": ModelsSettings,
    "batching": BatchingSettings,
    "cluster": ClusterSettings,
}
_RENAMED = {  # flat name -> (group, field) where the field is not the flat name
    "analysis_cache_mb": ("caches", "analysis_mb"),
    "image_cache_mb": ("caches", "image_mb"),
    "text_cache_mb": ("caches", "text_mb"),
    "view_cache_mb": ("caches", "view_mb"),
    "shared_cache_mb": ("caches", "shared_mb"),
    "batching": ("batching", "mode"),
    "batch_max_size": ("batching", "max_size"),
    "batch_wait_ms": ("batching", "wait_ms"),
}
# Every setting's flat name (its ATLAS_* variable and TOML key) -> (group, field).
FLAT: dict[str, tuple[str, str]] = {
    **{
        field: (group, field)
        for group, cls in GROUPS.items()
        for field in cls.model_fields
        if (group, field) not in _RENAMED.values()
    },
    **_RENAMED,
}


def nest(data: dict[str, Any]) -> dict[str, Any]:
    """Flat names -> their groups (``{"queue_size": 3}`` -> ``{"limits": {"queue_size": 3}}``); group
    tables are merged, a flat name winning over the same field in a group table of the same source."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in GROUPS and isinstance(value, dict):
            out.setdefault(key, {}).update(value)
    for key, value in data.items():
        if key in GROUPS and isinstance(value, dict):
            continue
        if key in FLAT:
            group, field = FLAT[key]
            out.setdefault(group, {})[field] = value
        elif key not in GROUPS:
            out[key] = value  # unknown: refused by the file source, ignored like before for keywords
    return out
