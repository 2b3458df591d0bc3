"""Compact analyses through the HTTP API (docs/native-resolution.md): with the full-maps threshold at 0 every
analysis keeps only its residual stream, and every route answers as it does from full maps."""

from __future__ import annotations

import numpy as np
import pytest

from app.serialization import decode_typed_array
from models.vision import analysis as analysis_module

ATOL = 2e-3  # tests/models/test_native.py: recomputed from the float16 stream


def analyze(client, sample: str = "coffee") -> str:
    r = client.post("/api/vision/analyze", data={"sample": sample})
    assert r.status_code == 200, r.text
    return r.json()["analysis_id"]


def get(client, aid: str, view: str, **params):
    r = client.get(f"/api/vision/analysis/{aid}/{view}", params=params)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def both(client, monkeypatch):
    """(the full-maps analysis, the compact analysis's id) of the same sample: analysed once as usual, then
    forgotten and analysed again with the full-maps threshold at 0."""
    full_id = analyze(client)
    state = client.app.state.atlas
    full = state.analyses.get(full_id)
    monkeypatch.setattr(analysis_module, "FULL_MAPS_MAX_BYTES", 0)
    state.analyses.discard(full_id)  # the next analyze runs the forward again, compact
    compact_id = analyze(client)
    assert compact_id == full_id and state.analyses.get(compact_id).compact and not full.compact
    return full, compact_id


def test_patch_rows_route_matches_the_full_maps(client, both) -> None:
    full, aid = both
    body = get(client, aid, "patch", query=5)
    rows = decode_typed_array(body["values"])  # (L, H, R, C)
    L, H = full.cls_attention.shape[:2]
    assert body["recomputed"] and rows.shape == (L, H, *full.grid)
    ref = full.attentions[:, :, full.num_prefix_tokens + 5, full.num_prefix_tokens :].float().numpy()
    np.testing.assert_allclose(rows.reshape(L, H, -1), ref, atol=ATOL)
    one = decode_typed_array(get(client, aid, "attention", layer=2, head=1, query=5)["values"])
    np.testing.assert_allclose(one, rows[2, 1], atol=1e-6)
    bad = client.get(f"/api/vision/analysis/{aid}/patch", params={"query": 10_000})
    assert bad.status_code == 400 and "query patch" in bad.json()["detail"]


def test_views_that_read_every_row_work_from_the_stream(client, both) -> None:
    """Entropy, rollout with options and the renormalised distance read all rows: recomputed per layer."""
    from models.vision import views as vv

    full, aid = both
    ent = get(client, aid, "entropy", layer=1, head=0)
    np.testing.assert_allclose(
        decode_typed_array(ent["values"]), vv.entropy_map(full, 1, 0), rtol=1e-2, atol=1e-2
    )
    roll = get(client, aid, "rollout", head_fusion="max", discard_ratio=0.0)
    np.testing.assert_allclose(decode_typed_array(roll["rollout"]), vv.rollout(full, "max"), atol=ATOL)
    r = client.get(f"/api/distance/analysis/{aid}", params={"renormalize": "true"})
    assert r.status_code == 200, r.text
    patch_size = client.app.state.atlas.vision_store.get(full.model_id).info.patch_size
    ref = vv.attention_distance(full, patch_size, True)  # (L, H) pixels, the route's default unit
    np.testing.assert_allclose(decode_typed_array(r.json()["mad"]), ref, rtol=1e-2)


def test_full_maps_answer_the_patch_route_too(client) -> None:
    aid = analyze(client, "astronaut")
    body = get(client, aid, "patch", query=0)
    assert not body["recomputed"]
    rows = decode_typed_array(body["values"])
    a = client.app.state.atlas.analyses.get(aid)
    np.testing.assert_array_equal(
        rows.reshape(*rows.shape[:2], -1), a.attentions[:, :, 1, 1:].float().numpy()
    )
