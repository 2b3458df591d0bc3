"""/api/influence through the app (issue 15): contributions, relevancy and curves of the tiny random models,
each response cached per (analysis, options), run in the model queue (503 + Retry-After when full)."""

from __future__ import annotations

import numpy as np

from app.serialization import decode_typed_array

SENTENCE = "the cat sat on the mat"


def text(client, model: str, text: str = SENTENCE) -> dict:
    r = client.post("/api/text/analyze", json={"text": text, "model": model})
    assert r.status_code == 200, r.text
    return r.json()


def vision(client) -> dict:
    r = client.post("/api/vision/analyze", data={"sample": "astronaut", "model": "tiny_vit"})
    assert r.status_code == 200, r.text
    return r.json()


def test_text_contributions_bert(client):
    a = text(client, "tiny-bert")
    r = client.get(f"/api/influence/text/{a['analysis_id']}/contributions")
    assert r.status_code == 200, r.text
    body = r.json()
    C = decode_typed_array(body["layers"])
    T = len(a["source"]["tokens"])
    assert C.shape[1:] == (T, T) and body["labels"] == a["source"]["tokens"]
    np.testing.assert_allclose(C.sum(-1), 1.0, atol=1e-5)
    R = decode_typed_array(body["rollout"])
    np.testing.assert_allclose(R[1], C[1] @ C[0], atol=1e-5)


def test_text_relevance_and_curves_bert_pair(client):
    a = text(client, "tiny-bert")
    aid = a["analysis_id"]
    r = client.get(f"/api/influence/text/{aid}/relevance", params={"pair": "a dog ran"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "cosine" in body["target"] and -1 <= body["value"] <= 1
    assert decode_typed_array(body["relevance"]).shape == (len(a["source"]["tokens"]),)
    r2 = client.get(f"/api/influence/text/{aid}/relevance", params={"pair": "a dog ran"})
    assert r2.content == r.content  # cached bytes
    c = client.get(f"/api/influence/text/{aid}/curves", params={"pair": "a dog ran", "steps": 4}).json()
    assert [x["ranking"] for x in c["curves"]] == ["relevancy", "rollout", "attention"]
    first = c["curves"][0]
    assert (
        abs(first["deletion"][0] - body["value"]) < 1e-4
        and abs(first["insertion"][-1] - body["value"]) < 1e-4
    )
    assert client.get(f"/api/influence/text/{aid}/relevance").status_code == 400  # no second sentence


def test_dates_relevance_contributions_and_curves(client):
    a = text(client, "tiny-dates", "3 May 1999")
    aid = a["analysis_id"]
    assert client.get(f"/api/influence/text/{aid}/contributions").status_code == 200
    body = client.get(f"/api/influence/text/{aid}/relevance", params={"step": 1}).json()
    assert body["step"] == 1 and body["value"] <= 0 and decode_typed_array(body["decoder"]).shape == (2,)
    c = client.get(f"/api/influence/text/{aid}/curves", params={"step": 1, "steps": 4})
    assert c.status_code == 200 and abs(c.json()["curves"][0]["deletion"][0] - body["value"]) < 1e-4
    big = client.get(f"/api/influence/text/{aid}/relevance", params={"step": 999})
    assert big.status_code == 400


def test_vision_contributions_relevance_and_curves(client):
    a = vision(client)
    aid, P = a["analysis_id"], a["grid"]["rows"] * a["grid"]["cols"]
    c = client.get(f"/api/influence/vision/{aid}/contributions").json()
    assert decode_typed_array(c["layers"]).shape[1] == P and decode_typed_array(
        c["attention_rollout"]
    ).shape == (P,)
    r = client.get(f"/api/influence/vision/{aid}/relevance").json()
    assert decode_typed_array(r["relevance"]).shape == (P,) and r["query"] is None
    q = client.get(f"/api/influence/vision/{aid}/relevance", params={"query": 3}).json()
    assert q["query"] == 3 and "patch 3" in q["target"]
    cv = client.get(f"/api/influence/vision/{aid}/curves", params={"steps": 4}).json()
    assert abs(cv["curves"][0]["deletion"][0] - 1.0) < 1e-4 and cv["units"] == P


def test_unknown_analysis_and_unsupported_model(client):
    assert client.get("/api/influence/vision/nope/relevance").status_code == 404
    assert client.get("/api/influence/text/nope/contributions").status_code == 404
    a = text(client, "tiny-gpt2")
    r = client.get(f"/api/influence/text/{a['analysis_id']}/contributions")
    assert r.status_code == 400 and "BERT-family" in r.json()["detail"]


def test_full_model_queue_is_503_with_retry_after(client, monkeypatch):
    from app.compute import QueueFull

    a = text(client, "tiny-bert")
    state = client.app.state.atlas

    async def full(*args, **kwargs):
        raise QueueFull("The model queue is busy; retry shortly.", 3)

    monkeypatch.setattr(state.queue, "run", full)
    r = client.get(f"/api/influence/text/{a['analysis_id']}/contributions")
    assert r.status_code == 503 and r.headers["Retry-After"] == "3"
