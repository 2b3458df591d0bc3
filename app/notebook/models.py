"""The notebook's one model loader: an app model id -> the loaded model, once per (id, device) per kernel.

The ids are the server's allowlist (``app.settings``: offline defaults plus the operator's ``ATLAS_EXTRA_*``
entries), resolved with the server's device rule ("auto": CUDA when present). Model objects the user passes in
never come here (in a notebook the user is the operator). This is the only place the notebook loads a
model, so pointing it at a shared model store changes this one function.
"""

from __future__ import annotations

from typing import Any, Literal

from models.devices import resolve_device

Task = Literal["vision", "text"]
_LOADED: dict[tuple[str, str, str], Any] = {}  # (task, model id, device) -> loaded model


def load(task: Task, model_id: str, device: str | None = None) -> Any:
    """The allowlisted ``task`` model ``model_id`` (a VisionModel or a TextModel); KeyError if unknown."""
    from app.settings import get_settings

    settings = get_settings()
    specs = settings.vision_specs() if task == "vision" else settings.text_specs()
    if model_id not in specs:
        raise KeyError(f"unknown {task} model {model_id!r}; known: {', '.join(sorted(specs))}")
    dev = resolve_device(device or settings.device)
    key = (task, model_id, str(dev))
    if key not in _LOADED:
        if task == "vision":
            from models.vision.analysis import load_vision_model

            _LOADED[key] = load_vision_model(specs[model_id], dev, cache_dir=settings.cache_dir)
        else:
            from models.text.analysis import load_text_model

            _LOADED[key] = load_text_model(specs[model_id], dev)
    return _LOADED[key]
