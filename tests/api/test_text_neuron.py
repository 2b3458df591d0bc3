"""Neuron view (issue 8 section 4): the softmax recomputed from the model's own q and k equals the captured
attention probabilities, for every model kind, mask (causal decoder, padding) and scaling convention.

Tolerance: :func:`models.text.neuron.row_tolerance`, i.e. 4 x float32 eps x (d_k x max_j sum_i |q_i k_ji| x
scale + 1 + d_k): the float32 rounding bound of a d_k-long dot product (gamma_d), a margin of 4 for the
scale, mask and exp steps. Never this CPU's exact bits.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from app.main import create_app
from app.serialization import decode_typed_array
from models.text.analysis import DATES, MINILM, TextModelSpec, load_text_model
from models.text.neuron import (
    EPS32,
    LayerQK,
    allowed_keys,
    capture_qk,
    key_keep,
    neuron_row,
    row_tolerance,
)
from tests.factories import tiny_settings

SENTENCE = "The animal didn't cross the street because it was too tired."
DATE = "Friday, March 18th, 2022"


def spec(arch: str, kind: str) -> TextModelSpec:
    return TextModelSpec(f"tiny-{arch}", kind, "random", arch, arch, 128)


def check_every_row(m, text: str, target: str | None = None) -> int:
    """Assert the recomputed softmax equals the captured one on every block, layer, head and query."""
    a = m.analyze(text, target)
    dec = a.target.ids if a.target is not None else None
    rows = 0
    for kind, (_, _, causal) in a.axes.items():
        L, H, Tq, Tk = a.blocks[kind].shape
        keep = key_keep(m.model, kind, a.source.ids, dec)
        for layer in range(L):
            qk = capture_qk(m.model, kind, layer, a.source.ids, dec)
            assert qk.q.shape[:2] == (H, Tq) and qk.k.shape[:2] == (H, Tk)  # (H, T, d_k)
            assert qk.scale == pytest.approx(1 / math.sqrt(qk.d_k), rel=1e-12)
            for h in range(H):
                for i in range(Tq):
                    row = neuron_row(qk, h, i, allowed_keys(i, Tk, causal, keep))
                    diff = np.abs(row.probs - a.blocks[kind][layer, h, i]).max()
                    assert diff <= row_tolerance(row), (kind, layer, h, i, diff)
                    np.testing.assert_allclose(row.product.sum(1), row.dot, rtol=1e-12, atol=1e-12)
                    if causal:
                        assert (row.probs[i + 1 :] == 0).all()
                    rows += 1
    return rows


@pytest.mark.parametrize(
    ("arch", "kind", "text"),
    [
        ("bert", "encoder", SENTENCE),
        ("gpt2", "causal", SENTENCE),
        ("marian", "seq2seq", DATE),
        ("dates", "seq2seq", DATE),
    ],
)
def test_softmax_from_q_k_equals_captured_tiny_models(arch, kind, text):
    m = load_text_model(spec(arch, kind))
    assert check_every_row(m, text) > 0


def test_minilm_every_head_matches_captured_probabilities():
    m = load_text_model(MINILM)
    assert check_every_row(m, SENTENCE) == 6 * 12 * len(m.tokenize(SENTENCE))
    qk = capture_qk(m.model, "encoder_self", 0, m.tokenize(SENTENCE).ids)
    assert (qk.d_k, qk.scale_where) == (32, "scores")  # BERT: q·k multiplied by 32^-1/2


def test_date_model_three_kinds_match_greedy_and_given_target():
    m = load_text_model(DATES)
    assert check_every_row(m, "July 4, 1976") > 0
    assert check_every_row(m, "July 4, 1976", "1976-07-04") > 0
    qk = capture_qk(m.model, "cross", 0, m.tokenize(DATE).ids, m.tokenize_target("2022-03-18").ids)
    assert (qk.d_k, qk.scale_where) == (16, "query")  # the paper Transformer divides q by sqrt(d_k) first


def test_padding_masks_paper_transformer():
    """Source padding (pad_id keys) is masked in encoder self and cross attention, decoder padding in
    decoder self-attention; the recomputed rows give those keys exactly 0, as the model does."""
    m = load_text_model(spec("dates", "seq2seq"))
    pad = m.model.cfg.pad_id
    src = m.tokenize(DATE).ids + [pad] * 3
    dec = m.tokenize_target("2022-03-18").ids + [pad] * 2
    with torch.inference_mode():
        _, attn = m.model(torch.tensor([src]), torch.tensor([dec]))
    captured = {"encoder_self": attn.enc_self, "decoder_self": attn.dec_self, "cross": attn.cross}
    for kind, causal in (("encoder_self", False), ("decoder_self", True), ("cross", False)):
        keep = key_keep(m.model, kind, src, dec)
        assert keep is not None and keep.count(False) == (2 if kind == "decoder_self" else 3)
        probs = captured[kind][:, 0].numpy()  # (L, H, Tq, Tk)
        for layer in range(probs.shape[0]):
            qk = capture_qk(m.model, kind, layer, src, dec)
            for h in range(probs.shape[1]):
                for i in range(probs.shape[2]):
                    row = neuron_row(qk, h, i, allowed_keys(i, probs.shape[3], causal, keep))
                    assert np.abs(row.probs - probs[layer, h, i]).max() <= row_tolerance(row)
                    assert (row.probs[~np.asarray(keep)] == 0).all()


def test_padding_masks_hugging_face_attention_mask():
    m = load_text_model(spec("bert", "encoder"))
    ids = m.tokenize(SENTENCE).ids
    keep = [True] * (len(ids) - 4) + [False] * 4
    with torch.inference_mode():
        out = m.model(
            input_ids=torch.tensor([ids]), attention_mask=torch.tensor([keep]).long(), output_attentions=True
        )
    for layer, att in enumerate(out.attentions):
        qk = capture_qk(m.model, "encoder_self", layer, ids, src_keep=keep)
        for h in range(att.shape[1]):
            for i in range(len(ids)):
                row = neuron_row(qk, h, i, allowed_keys(i, len(ids), False, keep))
                assert np.abs(row.probs - att[0, h, i].numpy()).max() <= row_tolerance(row)


def test_check_has_power_wrong_scaling_or_mask_fails():
    """Without 1/sqrt(d_k), or with the causal mask dropped, the same check fails: the tolerance is tight
    enough to tell the model's scaling and masking apart."""
    m = load_text_model(MINILM)
    a = m.analyze(SENTENCE)
    qk = capture_qk(m.model, "encoder_self", 2, a.source.ids)
    unscaled = LayerQK(qk.q, qk.k, 1.0, "scores")
    T = len(a.source)
    worst = max(
        np.abs(
            neuron_row(unscaled, h, i, allowed_keys(i, T, False)).probs - a.blocks["encoder_self"][2, h, i]
        ).max()
        / row_tolerance(neuron_row(unscaled, h, i, allowed_keys(i, T, False)))
        for h in range(12)
        for i in range(T)
    )
    assert worst > 10
    g = load_text_model(spec("gpt2", "causal"))
    ga = g.analyze(SENTENCE)
    gqk = capture_qk(g.model, "decoder_self", 0, ga.source.ids)
    row = neuron_row(gqk, 0, 0, allowed_keys(0, len(ga.source), False))  # mask forgotten
    assert np.abs(row.probs - ga.blocks["decoder_self"][0, 0, 0]).max() > 1e3 * row_tolerance(row)


def test_tolerance_is_float32_rounding_level():
    m = load_text_model(spec("bert", "encoder"))
    ids = m.tokenize(SENTENCE).ids
    qk = capture_qk(m.model, "encoder_self", 0, ids)
    tol = row_tolerance(neuron_row(qk, 0, 0, allowed_keys(0, len(ids), False)))
    assert 4 * EPS32 < tol < 1e-4


# ----------------------------------------------------------------------------- API


def analyse(client, text: str, model: str = "tiny-bert") -> dict:
    r = client.post("/api/text/analyze", json={"text": text, "model": model})
    assert r.status_code == 200, r.text
    return r.json()


def neuron(client, aid: str, **params):
    return client.get(f"/api/text/analysis/{aid}/neuron", params=params)


def test_api_neuron_encoder_shapes_and_check(client):
    j = analyse(client, SENTENCE)
    T = len(j["source"]["tokens"])
    r = neuron(client, j["analysis_id"], kind="encoder_self", layer=1, head=2, query=3)
    assert r.status_code == 200, r.text
    n = r.json()
    assert (n["kind"], n["layer"], n["head"], n["query"], n["d_k"]) == ("encoder_self", 1, 2, 3, 8)
    assert n["scale"] == pytest.approx(8**-0.5) and n["scale_where"] == "scores" and not n["causal"]
    q, k = decode_typed_array(n["q"]), decode_typed_array(n["k"])
    assert q.shape == (8,) and k.shape == (T, 8)
    dot = decode_typed_array(n["dot"])
    np.testing.assert_allclose(dot, k.astype(np.float64) @ q.astype(np.float64), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(decode_typed_array(n["scaled"]), dot * n["scale"], rtol=1e-6, atol=1e-7)
    probs, captured = decode_typed_array(n["probs"]), decode_typed_array(n["captured"])
    assert n["matches"] and n["max_abs_diff"] <= n["tolerance"]
    assert np.abs(probs - captured).max() <= n["tolerance"] + 1e-7  # + float32 rounding of the shipped arrays
    assert decode_typed_array(n["allowed"]).tolist() == [1] * T


def test_api_neuron_other_head_of_layer_needs_no_forward(client):
    j = analyse(client, SENTENCE)
    aid = j["analysis_id"]
    state = client.app.state.atlas
    assert neuron(client, aid, kind="encoder_self", layer=0, head=0, query=0).status_code == 200
    for h in range(4):  # one hooked forward cached every head of the layer
        assert f"text-qk|{aid}|encoder_self|0|{h}" in state.views
    calls = []
    original = state.queue.run

    async def counting(*args, **kwargs):
        calls.append(kwargs.get("key"))
        return await original(*args, **kwargs)

    state.queue.run = counting
    try:
        assert neuron(client, aid, kind="encoder_self", layer=0, head=3, query=5).json()["matches"]
    finally:
        state.queue.run = original
    assert calls == []


@pytest.mark.parametrize("kind", ["encoder_self", "decoder_self", "cross"])
def test_api_neuron_seq2seq_kinds(client, kind):
    j = analyse(client, DATE, "tiny-dates")
    b = {x["kind"]: x for x in j["blocks"]}[kind]
    q = b["n_query"] - 1
    n = neuron(client, j["analysis_id"], kind=kind, layer=1, head=3, query=q).json()
    assert n["matches"], n["max_abs_diff"]
    assert n["causal"] == (kind == "decoder_self") and n["scale_where"] == "query"
    assert decode_typed_array(n["k"]).shape == (b["n_key"], n["d_k"])
    if kind == "decoder_self":
        first = neuron(client, j["analysis_id"], kind=kind, layer=0, head=0, query=0).json()
        assert decode_typed_array(first["allowed"])[1:].sum() == 0
        assert decode_typed_array(first["probs"])[1:].max() == 0


def test_api_neuron_gpt2_causal(client):
    j = analyse(client, SENTENCE, "tiny-gpt2")
    n = neuron(client, j["analysis_id"], kind="decoder_self", layer=0, head=1, query=2).json()
    assert n["matches"] and n["causal"]
    assert decode_typed_array(n["allowed"]).tolist()[:4] == [1, 1, 1, 0]


def test_api_neuron_bad_requests(client):
    j = analyse(client, SENTENCE)
    aid, T = j["analysis_id"], len(j["source"]["tokens"])
    assert neuron(client, aid, kind="encoder_self", layer=0, head=0, query=T).status_code == 400
    assert neuron(client, aid, kind="encoder_self", layer=9, head=0, query=0).status_code == 400
    assert neuron(client, aid, kind="encoder_self", layer=0, head=4, query=0).status_code == 400
    assert neuron(client, aid, kind="cross", layer=0, head=0, query=0).status_code == 400
    assert neuron(client, aid, kind="encoder_self", layer=0, head=0, query=-1).status_code == 422
    assert neuron(client, aid, kind="encoder_self", layer=0, head=0).status_code == 422
    assert neuron(client, "nope", kind="encoder_self", layer=0, head=0, query=0).status_code == 404


def test_api_concurrent_heads_of_one_layer_share_one_forward(client, monkeypatch):
    """Eight concurrent requests for four heads of one layer: one hooked forward (merged per layer)."""
    import threading
    from functools import partial

    from app.services import neuron as neuron_service
    from tests.conftest import burst

    aid = analyse(client, SENTENCE)["analysis_id"]
    calls, gate, real = [], threading.Event(), neuron_service.capture_qk

    def slow(*args, **kwargs):
        calls.append(args[1:3])
        gate.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(neuron_service, "capture_qk", slow)
    heads = [
        partial(neuron, client, aid, kind="encoder_self", layer=1, head=h % 4, query=h) for h in range(8)
    ]
    responses = burst(heads, lambda: bool(calls), gate)
    assert [r.status_code for r in responses] == [200] * 8
    assert all(r.json()["matches"] for r in responses)
    assert calls == [("encoder_self", 1)]


def test_api_full_model_queue_is_503_with_retry_after(tmp_path, monkeypatch):
    """The hooked forward takes a place in the model queue: full queue -> 503 + Retry-After, nothing run."""
    from app.compute import QueueFull

    with TestClient(create_app(tiny_settings(tmp_path))) as c:
        aid = analyse(c, SENTENCE)["analysis_id"]
        state = c.app.state.atlas

        async def full(*args, **kwargs):
            raise QueueFull("The model queue is busy; retry shortly.", 3)

        monkeypatch.setattr(state.queue, "run", full)
        r = neuron(c, aid, kind="encoder_self", layer=0, head=0, query=0)
        assert r.status_code == 503 and r.headers["Retry-After"]
