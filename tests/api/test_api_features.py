"""The features and norms routes (app/routers/features.py) hold the core's numbers (models/vision/feature_views)."""

from __future__ import annotations

import numpy as np

from app.serialization import decode_typed_array
from models.vision import feature_views as fv


def analysed(client, sample: str = "astronaut", model: str | None = None):
    data = {"sample": sample, **({"model": model} if model else {})}
    body = client.post("/api/vision/analyze", data=data).json()
    aid = body["analysis_id"]
    return aid, client.app.state.atlas.vision_analysis(aid)


def test_pca_route_holds_the_core_numbers(client) -> None:
    aid, a = analysed(client)
    r = client.get(f"/api/vision/analysis/{aid}/features", params={"threshold": 0.0})
    assert r.status_code == 200, r.text
    body = r.json()
    want = fv.features_pca(a, 0.0)
    first = decode_typed_array(body["first"])
    assert first.shape == (4, 4)
    np.testing.assert_allclose(first.reshape(-1), want.first, rtol=1e-6)
    fg = decode_typed_array(body["foreground"]).reshape(-1).astype(bool)
    np.testing.assert_array_equal(fg, want.foreground)
    rgb = decode_typed_array(body["rgb"])
    assert rgb.shape == (4, 4, 3) and rgb.dtype == np.uint8
    assert body["first_range"] == [float(want.first.min()), float(want.first.max())]
    # a threshold below every score makes every patch foreground
    low = client.get(
        f"/api/vision/analysis/{aid}/features", params={"threshold": body["first_range"][0] - 1}
    ).json()
    assert decode_typed_array(low["foreground"]).all()


def test_similarity_and_parts_routes(client) -> None:
    aid, a = analysed(client, "coffee")
    r = client.get(f"/api/vision/analysis/{aid}/similarity", params={"patch": 5, "layer": 1})
    assert r.status_code == 200, r.text
    values = decode_typed_array(r.json()["values"])
    np.testing.assert_allclose(values, fv.similarity(a, 5, 1), rtol=1e-6)
    assert values.reshape(-1)[5] == np.float32(1.0) or abs(values.reshape(-1)[5] - 1) < 1e-5
    last = client.get(f"/api/vision/analysis/{aid}/similarity", params={"patch": 0}).json()
    assert last["layer"] is None
    assert client.get(f"/api/vision/analysis/{aid}/similarity", params={"patch": 16}).status_code == 400
    assert (
        client.get(f"/api/vision/analysis/{aid}/similarity", params={"patch": 0, "layer": 3}).status_code
        == 400
    )
    p = client.get(f"/api/vision/analysis/{aid}/parts", params={"k": 3, "seed": 1}).json()
    labels = decode_typed_array(p["labels"])
    want, fit = fv.parts([a], 3, 1)
    np.testing.assert_array_equal(labels, want[0])
    assert p["iterations"] == fit.iterations and labels.max() <= 2
    assert client.get(f"/api/vision/analysis/{aid}/parts", params={"k": 1}).status_code == 422


def test_norms_and_sinks_routes(client) -> None:
    aid, a = analysed(client, "rocket", "tiny_deit_distilled")  # two prefix tokens: [CLS] and dist
    n = client.get(f"/api/vision/analysis/{aid}/norms").json()
    st = fv.norms(a)
    norms = decode_typed_array(n["norms"])
    assert norms.shape == (2, 3, 3)
    np.testing.assert_allclose(norms.reshape(2, -1), st.norms, rtol=1e-6)
    assert n["outliers"] == [int(c) for c in st.counts] and n["summary"] == st.summary()
    s = client.get(f"/api/vision/analysis/{aid}/sinks", params={"k": 3}).json()
    mass = decode_typed_array(s["mass"])
    assert mass.shape == (2, 2, 3)
    np.testing.assert_allclose(mass, fv.sinks(a, 16, 3).mass, rtol=1e-6)
    assert s["num_registers"] == 1 and s["has_cls"] is True  # the distillation token counts as a register
    assert decode_typed_array(s["rollout_without"]).shape == (3, 3)
    assert decode_typed_array(s["distance_without"]).shape == (2, 2)


def test_expired_analysis_is_404(client) -> None:
    assert client.get("/api/vision/analysis/nope/norms").status_code == 404
