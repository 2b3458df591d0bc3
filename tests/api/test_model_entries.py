"""One description per model entry: the allowlist entries are the models' spec dataclasses, the responses
carry the loaded model's info dataclass as it is, and every choice (text kind, head fusion, distance unit,
device) is declared once and read by the schemas, the settings and the CLI."""

from __future__ import annotations

import dataclasses
from typing import get_args

import pytest
from pydantic import ValidationError

from app.cli import build_parser
from app.settings import Settings
from models.devices import DeviceName
from models.text.analysis import DATES, MINILM, TextKind, TextModelInfo, TextModelSpec
from models.vision.distance import Unit
from models.vision.registry import DINOV2_VITS14, VisionModelInfo, VisionModelSpec
from models.vision.rollout import HeadFusion


def _json(value):
    """dataclasses.asdict with tuples as lists: what JSON makes of it (the independent expectation)."""
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


def test_settings_hold_the_specs_themselves_with_their_defaults() -> None:
    s = Settings(
        vision_models=[{"id": "vit_small_patch16_224.augreg_in21k", "resolutions": [224]}],
        text_models=[
            {"id": "gpt2", "kind": "causal"},
            {"id": "d", "kind": "seq2seq", "source": "dates_checkpoint"},
        ],
    )
    (vision,) = s.models.vision_specs().values()
    assert isinstance(vision, VisionModelSpec)
    assert vision.arch_tag == vision.id and vision.source == "hub" and vision.resolutions == (224,)
    gpt2, dates = s.models.text_specs().values()
    assert isinstance(gpt2, TextModelSpec) and gpt2.name == "gpt2" and gpt2.source == "hub"
    assert dates.name == ""  # "" = the committed date checkpoint
    defaults = Settings()
    assert defaults.models.vision_specs() == {DINOV2_VITS14.id: DINOV2_VITS14}
    assert defaults.models.text_specs() == {MINILM.id: MINILM, DATES.id: DATES}


def test_entries_are_validated() -> None:
    with pytest.raises(ValidationError, match="kind"):
        Settings(text_models=[{"id": "x", "kind": "decoder"}])
    with pytest.raises(ValidationError, match="max_tokens"):
        Settings(text_models=[{"id": "x", "kind": "encoder", "max_tokens": 0}])
    with pytest.raises(ValidationError, match="source"):
        Settings(vision_models=[{"id": "x", "source": "ftp"}])


def test_vision_response_carries_the_info_dataclass(client) -> None:
    body = client.post("/api/vision/analyze", data={"sample": "coffee"}).json()
    info = client.app.state.atlas.vision_store.get(None).info
    assert isinstance(info, VisionModelInfo)
    assert body["model"] == _json(dataclasses.asdict(info))


def test_text_response_carries_the_info_dataclass(client) -> None:
    body = client.post("/api/text/analyze", json={"text": "The cat sat."}).json()
    from app.services.text import text_model

    info = text_model(client.app.state.atlas, None).info
    assert isinstance(info, TextModelInfo)
    assert body["model"] == _json(dataclasses.asdict(info))


def test_openapi_documents_the_dataclasses_fields(client) -> None:
    components = client.get("/openapi.json").json()["components"]["schemas"]
    for cls in (VisionModelInfo, TextModelInfo):
        assert set(components[cls.__name__]["properties"]) == {f.name for f in dataclasses.fields(cls)}
    assert components["TextModelInfo"]["properties"]["kind"]["enum"] == list(get_args(TextKind))


def _choices(parser, command: str, flag: str) -> tuple[str, ...]:
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return tuple(next(a for a in sub._actions if flag in a.option_strings).choices)


def test_cli_choices_come_from_the_types() -> None:
    p = build_parser()
    assert _choices(p, "export", "--head-fusion") == get_args(HeadFusion) == ("mean", "max", "min")
    assert _choices(p, "export", "--unit") == get_args(Unit) == ("pixels", "patches", "diagonal")
    assert _choices(p, "export", "--device") == _choices(p, "serve", "--device") == get_args(DeviceName)
