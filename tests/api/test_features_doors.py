"""The features and norms views through the three front doors (web API, notebook, ``python -m app export``):
each door's numbers checked against an independent computation from that door's own arrays (numpy SVD for
the PCA axis, brute-force cosine, norms of the residual stream), and the doors against each other."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.cli import build_parser
from app.export import export_image
from app.main import create_app
from app.model_args import CliError
from app.notebook import features_pca_set, show_vision
from app.serialization import decode_typed_array
from tests.api.conftest import analyze
from tests.conftest import tiny_settings


def brute_cosine(x: np.ndarray, q: int) -> np.ndarray:
    return np.array([x[q] @ v / (np.linalg.norm(x[q]) * np.linalg.norm(v)) for v in x])


def test_features_and_norms_through_web_notebook_and_export(tmp_path, image_path, monkeypatch):
    settings = tiny_settings(tmp_path)  # tiny_vit: 3 layers x 4 heads, 4 x 4 patches + [CLS], width 32
    with TestClient(create_app(settings)) as client:
        aid = analyze(client, image_path)["analysis_id"]
        a = client.app.state.atlas.vision_analysis(aid)
        web_first = decode_typed_array(client.get(f"/api/vision/analysis/{aid}/features").json()["first"])
        web_sim = decode_typed_array(
            client.get(f"/api/vision/analysis/{aid}/similarity", params={"patch": 6, "layer": 1}).json()[
                "values"
            ]
        )
        web_norms = decode_typed_array(client.get(f"/api/vision/analysis/{aid}/norms").json()["norms"])
        web_mass = decode_typed_array(client.get(f"/api/vision/analysis/{aid}/sinks").json()["mass"])
    feats = a.features.float().numpy()[1:]  # (P, D) last layer after the final norm
    c = feats - feats.mean(0)
    axis = np.linalg.svd(c, full_matrices=False)[2][0]
    np.testing.assert_allclose(np.abs(web_first.ravel()), np.abs(c @ axis), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        web_sim.ravel(), brute_cosine(a.hidden[1].float().numpy(), 7)[1:], rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        web_norms.reshape(3, -1), np.linalg.norm(a.hidden.float().numpy(), axis=-1)[:, 1:], rtol=2e-3
    )

    import app.settings

    monkeypatch.setattr(app.settings, "get_settings", lambda: settings)
    nb = show_vision("tiny_vit", image_path)
    np.testing.assert_allclose(nb.features_pca().first, web_first.ravel(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(nb.similarity(6, 1), web_sim, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(nb.norms.norms, web_norms.reshape(3, -1), rtol=1e-6)
    np.testing.assert_allclose(nb.sink_mass, web_mass, rtol=1e-5, atol=1e-7)
    assert nb.parts(3).shape == (4, 4)
    both = features_pca_set([nb, nb])
    np.testing.assert_array_equal(both[0].foreground, both[1].foreground)

    out = tmp_path / "photo.npz"
    flags = ["--features", "--norms", "--parts", "3", "--similarity", "6"]
    args = build_parser().parse_args(
        ["export", "--image", str(image_path), "--model", "tiny_vit", "--out", str(out), *flags]
    )
    export_image(settings, args)
    z = np.load(out)
    assert z["hidden"].shape == (3, 17, 32) and z["hidden"].dtype == np.float16
    np.testing.assert_allclose(z["pca_first"], web_first.ravel(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(z["token_norms"][:, 1:], web_norms.reshape(3, -1), rtol=1e-6)
    np.testing.assert_allclose(z["sink_mass"], web_mass, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(
        z["similarity"], brute_cosine(z["features_last"].astype(np.float32), 7)[1:], rtol=1e-3, atol=1e-3
    )
    np.testing.assert_array_equal(z["parts"], nb.parts(3).ravel())
    plain = build_parser().parse_args(
        ["export", "--image", str(image_path), "--model", "tiny_vit", "--out", str(out)]
    )
    export_image(settings, plain)
    assert "hidden" not in np.load(out)  # only what the flags ask for
    bad = build_parser().parse_args(
        ["export", "--image", str(image_path), "--model", "tiny_vit", "--out", str(out), "--similarity", "99"]
    )
    with pytest.raises(CliError, match="patch must be in 0..15"):
        export_image(settings, bad)
