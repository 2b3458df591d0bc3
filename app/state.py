"""Process-wide state created in the lifespan: the model stores, the two executors, the caches, the jobs.

Every field is typed and every mutable registry has its own lock, so areas never share a catch-all dict.
The resource budget (README "Resource model") is set here from the settings:

- ``queue``: model work (forwards, dataset batches), one at a time, bounded by count and by the bytes the
  waiting requests hold;
- ``cpu``: CPU-heavy views, figures, image decoding and zip parsing, ``cpu_workers`` at a time;
- ``decode_slots``: at most ``decode_concurrency`` image decodes at once, inside the CPU pool;
- caches bounded in bytes: ``analyses`` (vision maps), ``text_analyses``, ``images`` (decoded uploads),
  ``views`` (derived views per (analysis id, options): small and deterministic).

Models come from ``vision_store`` / ``text_store`` (``app/store.py``) and their forwards run on ``backend``
(``app/backend``: this process's queue, or a Ray cluster), both chosen here once.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from app.backend import ModelBackend, create_backend
from app.cache import BoundedCache
from app.compute import ComputeQueue, CpuPool
from app.jobs import JobRegistry
from app.services.errors import AnalysisExpired, InvalidOption, UnknownModel
from app.settings import Settings
from app.store import ModelStore, VisionStore, text_store, vision_store
from models.devices import resolve_device, resolve_dtype
from models.vision.analysis import VisionAnalysis
from models.vision.batches import Cancelled

if TYPE_CHECKING:
    from models.text.analysis import TextAnalysis, TextModel, TextModelSpec

__all__ = [
    "AppState",
    "InvalidOption",
    "UnknownModel",
]  # re-exported: the error family is app/services/errors.py

MB = 1024 * 1024


def analysis_nbytes(a: VisionAnalysis) -> int:
    """Bytes an analysis holds: the full maps when it keeps them (tiny models), the float16 residual stream
    (embed + hidden), the last layer's features, the token and value norms, the (L, H, P) CLS maps, the
    (L, H) distance and the R x R RGB image. The model's weights that recompute the maps (``a.weights``) are
    shared by every analysis of the model: not counted."""
    tensors = sum(
        t.numel() * t.element_size() for t in (a.attentions, a.hidden, a.embed, a.features) if t is not None
    )
    arrays = sum(
        x.nbytes for x in (a.cls_attention, a.rollout, a.mad, a.token_norms, a.value_norms) if x is not None
    )
    return int(tensors + arrays + 3 * a.resolution**2)


def value_nbytes(value: Any) -> int:
    """Approximate bytes of a cached derived view (numpy arrays, pydantic models, bytes, containers)."""
    nbytes = getattr(value, "nbytes", None)
    if isinstance(nbytes, int):
        return nbytes
    if isinstance(value, bytes | str):
        return len(value)
    if hasattr(value, "model_dump_json"):
        return len(value.model_dump_json())
    if isinstance(value, tuple | list):
        return sum(value_nbytes(v) for v in value) + 64
    if isinstance(value, dict):
        return sum(value_nbytes(v) for v in value.values()) + 64
    return 1024


@dataclass
class AppState:
    settings: Settings
    device: torch.device
    dtype: torch.dtype
    queue: ComputeQueue
    cpu: CpuPool
    decode_slots: threading.BoundedSemaphore
    analyses: BoundedCache[VisionAnalysis]
    images: BoundedCache[Any]
    views: BoundedCache[Any]
    text_analyses: BoundedCache[TextAnalysis]
    distance_jobs: JobRegistry
    secret: bytes
    vision_store: VisionStore  # app/store.py: the allowlisted models, loaded once
    text_store: ModelStore[TextModelSpec, TextModel]
    backend: ModelBackend  # app/backend: where forwards and dataset batches run (local or ray)

    @classmethod
    def create(cls, settings: Settings) -> AppState:
        device = resolve_device(settings.server.device)
        dtype = resolve_dtype(settings.server.dtype, device)
        secret = (
            settings.server.secret_key.encode() if settings.server.secret_key else secrets.token_bytes(32)
        )
        queue = ComputeQueue(
            settings.limits.queue_size,
            max_cost=settings.limits.queue_mb * MB,
            retry_after_s=settings.limits.retry_after_s,
            nice=settings.limits.worker_nice,
            max_per_owner=settings.limits.client_queue_inflight,
        )
        cpu = CpuPool(
            settings.limits.cpu_pool_size,
            settings.limits.cpu_workers,
            retry_after_s=settings.limits.retry_after_s,
            nice=settings.limits.worker_nice,
            max_per_owner=settings.limits.client_cpu_inflight,
        )
        return cls(
            settings=settings,
            device=device,
            dtype=dtype,
            queue=queue,
            cpu=cpu,
            decode_slots=threading.BoundedSemaphore(settings.limits.decode_concurrency),
            analyses=BoundedCache(
                settings.caches.analysis_mb * MB, settings.caches.analysis_ttl_s, analysis_nbytes
            ),
            images=BoundedCache(
                settings.caches.image_mb * MB,
                settings.caches.analysis_ttl_s,
                lambda im: 3 * im.width * im.height,
            ),
            views=BoundedCache(settings.caches.view_mb * MB, settings.caches.analysis_ttl_s, value_nbytes),
            text_analyses=BoundedCache(
                settings.caches.text_mb * MB, settings.caches.analysis_ttl_s, lambda a: a.nbytes
            ),
            distance_jobs=JobRegistry(
                max_active=settings.limits.max_active_jobs,
                max_kept=32,
                max_running=1,
                cancelled_types=(Cancelled,),
                per_owner=settings.limits.jobs_per_client,
            ),
            secret=secret,
            vision_store=vision_store(settings, device, dtype),
            text_store=text_store(settings, device),
            backend=create_backend(settings, queue, cpu, device),
        )

    def keyed_id(self, *parts: str) -> str:
        """An id for content: HMAC-SHA256 under the server secret, so nobody can derive it offline.

        Each part is length-prefixed (its UTF-8 byte count, then a colon), so no two different part lists
        give the same message: ("a\\0b", "c") and ("a", "b\\0c") get different ids."""
        message = b"".join(
            b"%d:%b" % (len(raw), raw) for raw in (p.encode("utf-8", "surrogatepass") for p in parts)
        )
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()[:24]

    def vision_analysis(self, analysis_id: str) -> VisionAnalysis:
        """A cached vision analysis; :class:`AnalysisExpired` (404) once it has expired."""
        analysis = self.analyses.get(analysis_id)
        if analysis is None:
            raise AnalysisExpired("image")
        return analysis

    def shutdown(self) -> None:
        self.distance_jobs.shutdown()
        self.backend.close()
        self.queue.shutdown()
        self.cpu.shutdown()
        self.vision_store.close()
        self.text_store.close()
