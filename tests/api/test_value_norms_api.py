"""The value-weighted attention endpoints (app/routers/value_norms.py): shapes, the view options, and the numbers
against the analysis's own norms (models/value_norms.py, tested by brute force in tests/models/)."""

from __future__ import annotations

import numpy as np
import pytest

from app.serialization import decode_typed_array

SENTENCE = "The animal didn't cross the street because it was too tired."


def blocks(j: dict) -> dict[str, dict]:
    return {b["kind"]: b for b in j["blocks"]}


@pytest.mark.parametrize("model", ["tiny-bert", "tiny-dates", "tiny-marian", "tiny-gpt2"])
def test_text_value_norms(client, model):
    a = client.post("/api/text/analyze", json={"text": SENTENCE, "model": model}).json()
    aid = a["analysis_id"]
    r = client.get(f"/api/text/analysis/{aid}/value_norms")
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["available"] and "Kobayashi" in j["caption"] and "bias" in j["caption"]
    vb, ab = blocks(j), blocks(a)
    assert list(vb) == list(ab)
    for kind, b in ab.items():
        norms = decode_typed_array(vb[kind]["norms"])
        assert norms.shape == (b["layers"], b["heads"], b["n_key"]) and (norms > 0).all()
        assert decode_typed_array(vb[kind]["special_attention"]).shape == (b["layers"], b["heads"])
    hidden = client.get(f"/api/text/analysis/{aid}/value_norms?hide_special=true").json()
    view = client.get(f"/api/text/analysis/{aid}?hide_special=true").json()
    for kind, b in blocks(view).items():
        assert decode_typed_array(blocks(hidden)[kind]["norms"]).shape[-1] == b["n_key"]
    merged = client.get(f"/api/text/analysis/{aid}/value_norms?merge_words=true").json()
    assert not merged["available"] and "merge" in merged["reason"]
    assert all(b["norms"] is None for b in merged["blocks"])


def test_text_value_norms_expired(client):
    assert client.get("/api/text/analysis/nope/value_norms").status_code == 404


def test_vision_value_norms(client):
    a = client.post("/api/vision/analyze", data={"sample": "coffee"}).json()
    j = client.get(f"/api/vision/analysis/{a['analysis_id']}/value_norms").json()
    assert j["available"]
    L, H, P = a["model"]["num_layers"], a["model"]["num_heads"], a["grid"]["rows"] * a["grid"]["cols"]
    norms = decode_typed_array(j["norms"])
    assert norms.shape == (L, H, P) and np.isfinite(norms).all()
    share = decode_typed_array(j["prefix_attention"])
    assert share.shape == (L, H) and ((share >= 0) & (share <= 1)).all()
    assert client.get("/api/vision/analysis/nope/value_norms").status_code == 404
