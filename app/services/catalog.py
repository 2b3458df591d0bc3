"""What the pages offer: the allowlisted models, as the page data and /api/models list them."""

from __future__ import annotations

from app.settings import Settings


def vision_model_choices(settings: Settings) -> dict:
    specs = settings.models.vision_specs()
    return {
        "models": [{"id": s.id, "label": s.label or s.id, "source": s.source} for s in specs.values()],
        "default_model": settings.models.default_vision_model,
    }


def text_model_choices(settings: Settings, *fields: str) -> dict:
    """The text models (id, label, kind and ``fields`` of each spec, e.g. ``max_tokens``) and the default."""
    specs = settings.models.text_specs()
    return {
        "models": [
            {"id": m.id, "label": m.label or m.id, "kind": m.kind, **{f: getattr(m, f) for f in fields}}
            for m in specs.values()
        ],
        "default_model": settings.models.default_text_model,
    }
