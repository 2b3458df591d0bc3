"""One derived view, three front doors: the per-patch attention entropy (models/vision/views.py:
``patch_entropy``) reached from the web API, the notebook and ``python -m app export``, each checked against a
brute-force entropy computed here from that door's own maps, and the three against each other."""

from __future__ import annotations

import math

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.cli import build_parser
from app.export import export_image
from app.main import create_app
from app.notebook import show_vision
from app.serialization import decode_typed_array
from tests.api.conftest import analyze
from tests.conftest import tiny_settings
from tests.models.test_views import brute_entropy


def test_entropy_through_web_notebook_and_export(tmp_path, image_path, monkeypatch):
    settings = tiny_settings(tmp_path)  # tiny_vit: 3 layers x 4 heads, 4 x 4 patches + [CLS]
    L, H, R, C = 3, 4, 4, 4

    # (a) the web: POST analyze, then GET the entropy view of every layer and head
    with TestClient(create_app(settings)) as client:
        aid = analyze(client, image_path)["analysis_id"]
        maps_web = client.app.state.atlas.vision_analysis(aid).attentions.float().numpy()  # (L, H, N, N)
        web = np.zeros((L, H, R * C), np.float32)
        for layer in range(L):
            for head in range(H):
                j = client.get(f"/api/vision/analysis/{aid}/entropy", params={"layer": layer, "head": head})
                assert j.status_code == 200, j.text
                body = j.json()
                web[layer, head] = decode_typed_array(body["values"]).ravel()  # (R, C) -> (P,)
        assert body["unit"] == "nats" and body["label"] == "Tiny random ViT (tests)"
        assert body["max_entropy"] == pytest.approx(math.log(R * C))
        per_head = decode_typed_array(body["per_head"])  # (L, H)
        mean = client.get(f"/api/vision/analysis/{aid}/entropy", params={"layer": 1}).json()
        assert mean["head"] is None
        web_mean = decode_typed_array(mean["values"])  # (R, C)
        bad = client.get(f"/api/vision/analysis/{aid}/entropy", params={"layer": 7, "head": 0})
        assert bad.status_code == 400 and "layer 7" in bad.json()["detail"]
        assert client.get("/api/vision/analysis/nope/entropy", params={"layer": 0}).status_code == 404
    ref_web = brute_entropy(maps_web, 1)
    np.testing.assert_allclose(web, ref_web, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(per_head, ref_web.mean(-1), rtol=1e-5)
    np.testing.assert_allclose(web_mean, ref_web[1].mean(0).reshape(R, C), rtol=1e-5, atol=1e-6)

    # (b) the notebook: the same model id and photo
    import app.settings

    monkeypatch.setattr(app.settings, "get_settings", lambda: settings)
    nb = show_vision("tiny_vit", image_path)
    ref_nb = brute_entropy(nb.maps, nb.num_prefix_tokens)
    np.testing.assert_allclose(nb.entropy(), ref_nb, rtol=1e-5, atol=1e-6)  # (L, H, P)
    np.testing.assert_allclose(nb.entropy(2, 3), ref_nb[2, 3].reshape(R, C), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(nb.entropy(1), ref_nb[1].mean(0).reshape(R, C), rtol=1e-5, atol=1e-6)
    drawn = decode_typed_array(nb.payload()["entropy"])  # what the notebook output draws
    np.testing.assert_array_equal(drawn, nb.entropy())

    # (c) python -m app export: the .npz holds `entropy` (L, H, P)
    out = tmp_path / "photo.npz"
    args = build_parser().parse_args(
        ["export", "--image", str(image_path), "--model", "tiny_vit", "--out", str(out)]
    )
    export_image(settings, args)
    z = np.load(out)
    assert z["entropy"].shape == (L, H, R * C) and z["entropy"].dtype == np.float32
    np.testing.assert_allclose(z["entropy"], brute_entropy(z["attentions"], 1), rtol=1e-5, atol=1e-6)

    # one function behind the three doors: the same photo and model give the same numbers everywhere
    np.testing.assert_array_equal(web, z["entropy"])
    np.testing.assert_array_equal(nb.entropy(), z["entropy"])


def test_web_entropy_is_computed_once_per_analysis(client, monkeypatch):
    """Every layer and head of one analysis come from one (L, H, P) computation in the pool, then the cache."""
    from models.vision import views

    calls: list[int] = []
    real = views.patch_entropy
    monkeypatch.setattr(views, "patch_entropy", lambda *a, **k: calls.append(1) or real(*a, **k))
    aid = client.post("/api/vision/analyze", data={"sample": "coffee"}).json()["analysis_id"]
    for _ in range(2):
        for layer, head in ((0, 0), (2, 3), (1, None)):
            params = {"layer": layer} | ({} if head is None else {"head": head})
            assert client.get(f"/api/vision/analysis/{aid}/entropy", params=params).status_code == 200
    assert calls == [1]
