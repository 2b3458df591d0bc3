"""Value-weighted attention through the other front doors: ``python -m app export`` writes the norms the API
serves, and the notebook's ``result.value_weighted`` equals the maps recomputed from them."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.cli import main
from app.main import create_app
from app.serialization import decode_typed_array
from tests.api.conftest import ARCH, KWARGS_ARG, analyze
from tests.api.test_cli import SENTENCE, settings_from

pytestmark = pytest.mark.usefixtures("clean_env")

EXACT = 1e-6  # the same float32 ops in the same process (test_cli's FLOAT32_ROUNDING)


def test_export_writes_the_norms_the_api_serves(files, tmp_path) -> None:
    model = f"{files['ckpt']},{KWARGS_ARG},arch={ARCH}"
    out, text_out = tmp_path / "v.npz", tmp_path / "t.npz"
    common = ["export", "--config", str(files["toml"])]
    assert main([*common, "--image", str(files["image"]), "--model", model, "--out", str(out)]) == 0
    assert main([*common, "--text", SENTENCE, "--model", str(files["bert"]), "--out", str(text_out)]) == 0
    z, t = np.load(out), np.load(text_out)
    assert z["value_norms"].shape == (3, 4, 17) and z["value_norms"].dtype == np.float32
    assert t["encoder_self_value_norms"].shape == (2, 4, len(t["source_tokens"]))
    settings = settings_from(
        "--config", str(files["toml"]), "--vision-model", model, "--text-model", str(files["bert"])
    )
    with TestClient(create_app(settings)) as client:
        aid = analyze(client, files["image"], "tiny_vit")["analysis_id"]
        j = client.get(f"/api/vision/analysis/{aid}/value_norms").json()
        np.testing.assert_allclose(z["value_norms"][..., 1:], decode_typed_array(j["norms"]), atol=EXACT)
        r = client.post("/api/text/analyze", json={"text": SENTENCE, "model": "my_bert"}).json()
        tj = client.get(f"/api/text/analysis/{r['analysis_id']}/value_norms").json()
        api = decode_typed_array(tj["blocks"][0]["norms"])
        np.testing.assert_allclose(t["encoder_self_value_norms"], api, atol=EXACT)


def test_notebook_value_weighted() -> None:
    from app.notebook import show_text, show_vision
    from models.text.random_models import build_random_text_model
    from tests.factories import make_tiny_vit, photo

    r = show_vision(make_tiny_vit(), photo())
    vw = r.value_weighted(layer=1)  # (H, N, N)
    direct = r.maps[1] * r.value_norms[1][:, None, :]
    np.testing.assert_allclose(vw, direct / direct.sum(-1, keepdims=True), atol=EXACT)
    assert r.value_weighted().shape == r.maps.shape
    np.testing.assert_allclose(r.value_weighted(renormalise=False)[1], direct, rtol=EXACT)
    assert r.prefix_survival().attention.shape == r.maps.shape[:2]

    model, tok = build_random_text_model("bert")
    t = show_text(model, tok, SENTENCE)
    w = t.value_weighted()  # (L, H, T, T)
    raw = t.maps * t.value_norms["encoder_self"][:, :, None, :]
    np.testing.assert_allclose(w, raw / raw.sum(-1, keepdims=True), atol=EXACT)
    s = t.special_survival()
    assert s.attention.shape == t.maps.shape[:2] and np.isfinite(s.survives).all()
