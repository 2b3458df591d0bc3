"""Process-wide state created in the lifespan: loaded models, the two executors, the caches, the jobs.

Every field is typed and every mutable registry has its own lock, so areas never share a catch-all dict.
The resource budget (README "Resource model") is set here from the settings:

- ``queue``: model work (forwards, dataset batches), one at a time, bounded by count and by the bytes the
  waiting requests hold;
- ``cpu``: CPU-heavy views, figures, image decoding and zip parsing, ``cpu_workers`` at a time;
- ``decode_slots``: at most ``decode_concurrency`` image decodes at once, inside the CPU pool;
- caches bounded in bytes: ``analyses`` (vision maps), ``text_analyses``, ``images`` (decoded uploads),
  ``views`` (derived views per (analysis id, options): small and deterministic).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from app.cache import BoundedCache
from app.compute import ComputeQueue, CpuPool
from app.jobs import JobRegistry
from app.services.errors import AnalysisExpired, InvalidOption, ModelUnavailable, UnknownModel
from app.settings import Settings
from models.devices import resolve_device, resolve_dtype
from models.vision.analysis import VisionAnalysis, VisionModel, load_vision_model
from models.vision.distance import Cancelled

if TYPE_CHECKING:
    from app.batching import MicroBatcher
    from models.text.analysis import TextAnalysis, TextModel

MB = 1024 * 1024


def analysis_nbytes(a: VisionAnalysis) -> int:
    return int(
        a.attentions.numel() * a.attentions.element_size() + a.cls_attention.nbytes + 3 * a.resolution**2
    )


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
    vision_models: dict[str, VisionModel] = field(default_factory=dict)
    vision_lock: threading.Lock = field(default_factory=threading.Lock)
    text_models: dict[str, TextModel] = field(default_factory=dict)
    text_lock: threading.Lock = field(default_factory=threading.Lock)
    vision_batcher: MicroBatcher | None = None  # app/batching.py, created on first use when batching is on

    @classmethod
    def create(cls, settings: Settings) -> AppState:
        device = resolve_device(settings.server.device)
        secret = (
            settings.server.secret_key.encode() if settings.server.secret_key else secrets.token_bytes(32)
        )
        return cls(
            settings=settings,
            device=device,
            dtype=resolve_dtype(settings.server.dtype, device),
            queue=ComputeQueue(
                settings.limits.queue_size,
                max_cost=settings.limits.queue_mb * MB,
                retry_after_s=settings.limits.retry_after_s,
                nice=settings.limits.worker_nice,
            ),
            cpu=CpuPool(
                settings.limits.cpu_pool_size,
                settings.limits.cpu_workers,
                retry_after_s=settings.limits.retry_after_s,
                nice=settings.limits.worker_nice,
            ),
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
        )

    def keyed_id(self, *parts: str) -> str:
        """An id for content: HMAC-SHA256 under the server secret, so nobody can derive it offline."""
        message = "\x00".join(parts).encode("utf-8", "surrogatepass")
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()[:24]

    def vision_model(self, model_id: str | None) -> VisionModel:
        """The allowlisted model, loaded once per process (lazily for non-default ones)."""
        model_id = model_id or self.settings.models.default_vision_model
        specs = self.settings.models.vision_specs()
        if model_id not in specs:
            raise UnknownModel(f"Unknown vision model {model_id!r}. Available: {', '.join(specs)}.")
        with self.vision_lock:
            if model_id not in self.vision_models:
                try:
                    self.vision_models[model_id] = load_vision_model(
                        specs[model_id], self.device, self.dtype, self.settings.server.cache_dir
                    )
                except (OSError, ValueError, RuntimeError, ImportError) as e:  # e.g. a Hub repo not reachable
                    raise ModelUnavailable(f"The vision model {model_id!r} could not be loaded: {e}") from e
            return self.vision_models[model_id]

    def vision_model_at(self, model_id: str | None, resolution: int | None) -> tuple[VisionModel, int]:
        """The allowlisted model and a resolution it accepts (its default when None)."""
        vm = self.vision_model(model_id)
        try:
            return vm, vm.check_resolution(resolution)
        except ValueError as e:
            raise InvalidOption(str(e)) from e

    def vision_analysis(self, analysis_id: str) -> VisionAnalysis:
        """A cached vision analysis; :class:`AnalysisExpired` (404) once it has expired."""
        analysis = self.analyses.get(analysis_id)
        if analysis is None:
            raise AnalysisExpired("image")
        return analysis

    def loaded_vision_models(self) -> list[str]:
        with self.vision_lock:
            return list(self.vision_models)

    def loaded_text_models(self) -> list[str]:
        with self.text_lock:
            return list(self.text_models)

    def shutdown(self) -> None:
        self.distance_jobs.shutdown()
        self.queue.shutdown()
        self.cpu.shutdown()
