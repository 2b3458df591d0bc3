"""What the pages offer (app/services/catalog.py), read against the settings' own specs."""

from __future__ import annotations

from app.services.catalog import text_model_choices
from tests.factories import tiny_settings


def test_text_model_choices_list_every_text_spec_with_the_asked_fields(tmp_path) -> None:
    settings = tiny_settings(tmp_path)
    specs = list(settings.models.text_specs().values())
    got = text_model_choices(settings, "max_tokens")
    assert got["default_model"] == settings.models.default_text_model
    assert [m["id"] for m in got["models"]] == [s.id for s in specs]
    for m, s in zip(got["models"], specs, strict=True):
        assert m == {"id": s.id, "label": s.label or s.id, "kind": s.kind, "max_tokens": s.max_tokens}
    assert all(set(m) == {"id", "label", "kind"} for m in text_model_choices(settings)["models"])
