"""What the pages offer: the allowlisted models, as the page data and /api/models list them."""

from __future__ import annotations

from app.settings import Settings


def vision_model_choices(settings: Settings) -> dict:
    specs = settings.models.vision_specs()
    return {
        "models": [{"id": s.id, "label": s.label or s.id, "source": s.source} for s in specs.values()],
        "default_model": settings.models.default_vision_model,
    }
