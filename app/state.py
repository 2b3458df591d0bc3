"""Process-wide state created in the lifespan: loaded models, the compute queue, the caches."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import torch
from fastapi import HTTPException

from app.cache import BoundedCache
from app.compute import ComputeQueue
from app.settings import Settings
from models.devices import resolve_device, resolve_dtype
from models.vision import VisionAnalysis, VisionModel, load_vision_model


class UnknownModel(LookupError):
    """A request named a model that is not on the operator's allowlist."""


class InvalidOption(ValueError):
    """A request option the chosen model cannot take (answered with 400)."""


def analysis_nbytes(a: VisionAnalysis) -> int:
    return int(
        a.attentions.numel() * a.attentions.element_size() + a.cls_attention.nbytes + 3 * a.resolution**2
    )


@dataclass
class AppState:
    settings: Settings
    device: torch.device
    dtype: torch.dtype
    queue: ComputeQueue
    analyses: BoundedCache
    images: BoundedCache
    _vision: dict[str, VisionModel] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    extras: dict[str, Any] = field(default_factory=dict)  # other areas keep their state here

    @classmethod
    def create(cls, settings: Settings) -> AppState:
        device = resolve_device(settings.device)
        mb = 1024 * 1024
        return cls(
            settings=settings,
            device=device,
            dtype=resolve_dtype(settings.dtype, device),
            queue=ComputeQueue(settings.queue_size),
            analyses=BoundedCache(settings.analysis_cache_mb * mb, settings.analysis_ttl_s, analysis_nbytes),
            images=BoundedCache(
                settings.image_cache_mb * mb, settings.analysis_ttl_s, lambda im: 3 * im.width * im.height
            ),
        )

    def vision_model(self, model_id: str | None) -> VisionModel:
        """The allowlisted model, loaded once per process (lazily for non-default ones)."""
        model_id = model_id or self.settings.default_vision_model
        specs = self.settings.vision_specs()
        if model_id not in specs:
            raise UnknownModel(f"Unknown vision model {model_id!r}. Available: {', '.join(specs)}.")
        with self._lock:
            if model_id not in self._vision:
                self._vision[model_id] = load_vision_model(
                    specs[model_id], self.device, self.dtype, self.settings.cache_dir
                )
            return self._vision[model_id]

    def vision_model_at(self, model_id: str | None, resolution: int | None) -> tuple[VisionModel, int]:
        """The allowlisted model and a resolution it accepts (its default when None)."""
        vm = self.vision_model(model_id)
        try:
            return vm, vm.check_resolution(resolution)
        except ValueError as e:
            raise InvalidOption(str(e)) from e

    def vision_analysis(self, analysis_id: str) -> VisionAnalysis:
        """A cached vision analysis; HTTPException 404 once it has expired."""
        analysis = self.analyses.get(analysis_id)
        if analysis is None:
            raise HTTPException(
                404, "This analysis has expired from the server cache; analyse the image again."
            )
        return analysis

    def loaded_vision_models(self) -> list[str]:
        return list(self._vision)
