"""Head ablation, the head-importance map and the logit lens through the API (tiny random models): each answer
against the pure functions of models/influence called directly on the same model object."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.serialization import decode_typed_array
from models.influence.ablation import ablating
from models.influence.logit_lens import logit_lens
from models.influence.outcomes import answer_logp, pair_cosines
from models.text.dates import normalise_dates
from tests.conftest import wait_until

CROSS_ALL = [{"block": "cross", "layer": 1, "head": h} for h in range(4)]


def _text(client, model_id):
    return client.app.state.atlas.text_store.get(model_id)


def test_ablate_the_date_model_against_the_core(client):
    r = client.post(
        "/api/influence/ablate", json={"model": "tiny-dates", "text": "7 Dec '41", "heads": CROSS_ALL}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    tm = _text(client, "tiny-dates")
    intact = normalise_dates(tm.model, tm.tokenizer, ["7 Dec '41"])[0]
    assert body["kind"] == "dates" and body["answer"] == body["decoded_intact"] == intact
    heads = [("cross", 1, h) for h in range(4)]
    with ablating(tm.model, heads):
        want = float(answer_logp(tm.model, tm.tokenizer, ["7 Dec '41"], [intact])[0])
        assert body["decoded_ablated"] == normalise_dates(tm.model, tm.tokenizer, ["7 Dec '41"])[0]
    assert body["logp_ablated"] == pytest.approx(want, abs=1e-9)
    none = client.post(
        "/api/influence/ablate", json={"model": "tiny-dates", "text": "7 Dec '41", "target": "2041-12-07"}
    )
    b = none.json()
    assert b["answer"] == "2041-12-07" and b["logp_intact"] == b["logp_ablated"]
    assert b["decoded_intact"] == b["decoded_ablated"]


def test_ablate_a_sentence_pair_and_mean_mode(client):
    payload = {
        "model": "tiny-bert",
        "text": "A cat sleeps.",
        "pair": "The cat is asleep.",
        "heads": [{"layer": 0, "head": 1}],
    }
    body = client.post("/api/influence/ablate", json=payload).json()
    tm = _text(client, "tiny-bert")
    pair = [("A cat sleeps.", "The cat is asleep.")]
    assert body["kind"] == "pair" and body["cos_intact"] == pytest.approx(
        float(pair_cosines(tm.model, tm.tokenizer, pair)[0])
    )
    with ablating(tm.model, [("encoder_self", 0, 1)]):
        assert body["cos_ablated"] == pytest.approx(float(pair_cosines(tm.model, tm.tokenizer, pair)[0]))
    mean = client.post("/api/influence/ablate", json={**payload, "mode": "mean"}).json()
    assert mean["mode"] == "mean" and "sentence pairs" in mean["reference"]
    assert mean["cos_ablated"] != body["cos_ablated"]
    missing = client.post("/api/influence/ablate", json={**payload, "pair": ""})
    assert missing.status_code == 422 and "second sentence" in missing.json()["detail"]


def test_ablate_a_vit_on_an_analysed_image(client):
    a = client.post("/api/vision/analyze", data={"sample": "coffee", "model": "tiny_vit"}).json()
    r = client.post(
        "/api/influence/ablate",
        json={"family": "vision", "model": "tiny_vit", "analysis_id": a["analysis_id"]},
    )
    body = r.json()
    assert (
        r.status_code == 200
        and body["cls_cos"] == pytest.approx(1.0)
        and body["patch_cos"] == pytest.approx(1.0)
    )
    cut = client.post(
        "/api/influence/ablate",
        json={
            "family": "vision",
            "model": "tiny_vit",
            "analysis_id": a["analysis_id"],
            "heads": [{"layer": 2, "head": 0}],
        },
    ).json()
    cmap = decode_typed_array(cut["patch_cos_map"])
    assert cmap.shape == (4, 4) and cut["patch_cos"] == pytest.approx(float(cmap.mean()), abs=1e-6)
    assert cut["cls_cos"] < 1.0
    wrong = client.post(
        "/api/influence/ablate",
        json={"family": "vision", "model": "tiny_deit_distilled", "analysis_id": a["analysis_id"]},
    )
    assert wrong.status_code == 400


def test_refusals(client):
    gpt = client.post("/api/influence/ablate", json={"model": "tiny-gpt2", "text": "hello"})
    assert gpt.status_code == 400 and "causal" in gpt.json()["detail"]
    bad = client.post(
        "/api/influence/ablate",
        json={"model": "tiny-dates", "text": "x", "heads": [{"block": "cross", "layer": 0, "head": 9}]},
    )
    assert bad.status_code == 400 and "no head 9" in bad.json()["detail"]
    assert client.post("/api/influence/ablate", json={"model": "tiny-dates", "text": " "}).status_code == 422
    assert (
        client.post("/api/influence/logit-lens", json={"model": "tiny-bert", "text": "x"}).status_code == 400
    )
    assert client.get("/api/influence/importance/jobs/nope").status_code == 404


def test_logit_lens_against_the_core(client):
    r = client.post(
        "/api/influence/logit-lens", json={"model": "tiny-dates", "text": "7 Dec '41", "target": "2041-12-07"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    tm = _text(client, "tiny-dates")
    src = torch.tensor(tm.tokenizer.encode("7 Dec '41"))
    tgt = torch.tensor(tm.tokenizer.encode("2041-12-07", bos=True))
    lens = logit_lens(tm.model, src, tgt)
    assert body["decoder_tokens"][0] == "<s>" and len(body["decoder_tokens"]) == 11
    assert len(body["stages"]) == 6 and body["stages"][-1] == {"layer": 1, "stage": "ffn"}
    np.testing.assert_array_equal(decode_typed_array(body["top_prob"]), lens.top_prob)
    assert body["final_tokens"] == [tm.tokenizer.itos[i] for i in lens.final_ids]
    assert [h["block"] for h in body["heads"]] == ["decoder_self", "cross"]
    assert np.array(body["heads"][1]["promote"]).shape == (2, 4, 11, 3)


def test_importance_job_progress_cache_and_restart(client, app_client, settings):
    r = client.post("/api/influence/importance", json={"model": "tiny-bert"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["total"] == 2 * 4 + 1
    wait_until(lambda: client.get(job["job_url"]).json()["status"] in ("done", "failed", "cancelled"), 60)
    done = client.get(job["job_url"]).json()
    assert done["status"] == "done" and done["done"] == done["total"], done
    res = done["result"]
    assert res["headline"] == "mean_abs_delta_cos" and res["n_examples"] >= 20
    grid = decode_typed_array(res["values"]["mean_abs_delta_cos"]["encoder_self"])
    assert grid.shape == (2, 4) and np.all(grid > 0) and res["base"]["mean_abs_delta_cos"] == 0.0
    again = client.post("/api/influence/importance", json={"model": "tiny-bert"})
    assert again.status_code == 200 and again.json()["reused"] and again.json()["job_id"] is None
    files = list((settings.server.cache_dir / "influence").glob("importance-tiny-bert-zero-*.json"))
    assert len(files) == 1
    fresh = app_client(settings)  # a restart: the map comes from disk, no job
    back = fresh.post("/api/influence/importance", json={"model": "tiny-bert"}).json()
    np.testing.assert_array_equal(
        decode_typed_array(back["result"]["values"]["mean_abs_delta_cos"]["encoder_self"]), grid
    )


def test_importance_is_refused_when_the_job_slots_are_full(client):
    client.app.state.atlas.distance_jobs.max_active = 0
    r = client.post("/api/influence/importance", json={"model": "tiny-dates"})
    assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1


def test_importance_cancel(client):
    r = client.post(
        "/api/influence/importance", json={"family": "vision", "model": "tiny_vit", "mode": "mean"}
    )
    job = r.json()
    c = client.post(job["cancel_url"])
    assert c.status_code == 200 and c.json()["status"] == "cancelled"


def test_heads_info_and_cached_lookup(client):
    d = client.get("/api/influence/heads", params={"model": "tiny-dates"}).json()
    assert d["kind"] == "dates" and d["ablations"] == 3 * 2 * 4 + 1
    assert [(b["block"], b["layers"], b["heads"]) for b in d["blocks"]] == [
        ("encoder_self", 2, 4),
        ("decoder_self", 2, 4),
        ("cross", 2, 4),
    ]
    g = client.get("/api/influence/heads", params={"model": "tiny-gpt2"}).json()
    assert g["kind"] is None and "causal" in g["reason"] and g["blocks"] == []
    v = client.get("/api/influence/heads", params={"family": "vision", "model": "tiny_vit"}).json()
    assert v["kind"] == "vision" and v["blocks"] == [{"block": "encoder_self", "layers": 3, "heads": 4}]
    assert client.get("/api/influence/importance", params={"model": "tiny-dates"}).json() == {"result": None}


def test_ablation_runs_in_the_compute_queue_and_is_refused_when_it_is_full(app_client, tmp_path):
    """One model job at a time: with the queue's one slot held, an ablation and a lens are refused at once."""
    import threading

    from tests.factories import tiny_settings

    client = app_client(tiny_settings(tmp_path, queue_size=1))
    state = client.app.state.atlas
    client.get("/api/influence/heads", params={"model": "tiny-dates"})  # loaded before the queue is held
    release, started = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(10)

    state.queue.submit(hold, owner="someone-else")
    assert started.wait(5)
    try:
        r = client.post("/api/influence/ablate", json={"model": "tiny-dates", "text": "7 Dec '41"})
        assert r.status_code == 503 and int(r.headers["Retry-After"]) >= 1
        lens = client.post("/api/influence/logit-lens", json={"model": "tiny-dates", "text": "7 Dec '41"})
        assert lens.status_code == 503
    finally:
        release.set()
    wait_until(lambda: state.queue.pending == 0)
    assert (
        client.post("/api/influence/ablate", json={"model": "tiny-dates", "text": "7 Dec '41"}).status_code
        == 200
    )
