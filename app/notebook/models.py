"""The notebook's one model loader: an app model id -> the loaded model, through the app's model store.

The ids are the server's allowlist (``app.settings``: offline defaults plus the operator's ``ATLAS_EXTRA_*``
entries), resolved with the server's device rule ("auto": CUDA when present), and loaded by the same
:mod:`app.store` as the web services, the export command and the Ray replicas: one store per (family,
device) per kernel, so a model loads once. Model objects the user passes in never come here (in a notebook
the user is the operator).
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from app.services.errors import UnknownModel
from app.store import ModelStore, text_store, vision_store
from models.devices import resolve_device

Task = Literal["vision", "text"]
_STORES: dict[tuple[str, str], ModelStore] = {}  # (task, device) -> the store of that family on that device


def store(task: Task, device: str | None = None) -> ModelStore:
    """The model store of ``task`` on ``device`` (the settings' device when None), made once per kernel."""
    from app.settings import get_settings

    settings = get_settings()
    dev = resolve_device(device or settings.server.device)
    key = (task, str(dev))
    if key not in _STORES:
        _STORES[key] = (
            vision_store(settings, dev, torch.float32) if task == "vision" else text_store(settings, dev)
        )
    return _STORES[key]


def load(task: Task, model_id: str, device: str | None = None) -> Any:
    """The allowlisted ``task`` model ``model_id`` (a VisionModel or a TextModel); KeyError if unknown (a
    notebook user expects a KeyError from a lookup by name)."""
    models = store(task, device)
    try:
        return models.get(model_id)
    except UnknownModel as e:
        known = ", ".join(sorted(models.specs()))
        raise KeyError(f"unknown {task} model {model_id!r}; known: {known}") from e
