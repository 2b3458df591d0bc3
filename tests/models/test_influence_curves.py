"""Deletion and insertion curves against a brute-force loop: every (ranking, step) evaluated alone, by
rebuilding the kept input by hand (patches dropped one image at a time; BERT tokens masked one sentence at a
time), and the areas against numpy's trapezoid rule."""

from __future__ import annotations

import numpy as np
import torch

from models.influence.curves import auc, bert_pair_score, curves, order, seq2seq_score, step_counts, vit_score
from models.text.random_models import build_random_text_model
from tests.factories import tiny_layerscale_vit


def brute(score_one, rankings, steps):
    n = len(next(iter(rankings.values())))
    counts = step_counts(n, steps)
    dele, ins = {}, {}
    for name, s in rankings.items():
        ranked = list(np.argsort(-np.asarray(s, dtype=np.float64), kind="stable"))
        dele[name] = [score_one([u for u in range(n) if u not in ranked[:k]]) for k in counts]
        ins[name] = [score_one(sorted(ranked[:k])) for k in counts]
    return np.asarray(counts) / n, dele, ins


def test_step_counts_and_auc():
    assert step_counts(4, 10) == [0, 1, 2, 3, 4]
    assert step_counts(20, 4) == [0, 5, 10, 15, 20]
    x = np.array([0.0, 0.5, 1.0])
    assert auc(x, np.array([1.0, 0.5, 0.0])) == np.trapezoid([1.0, 0.5, 0.0], x) == 0.5
    assert list(order(np.array([0.1, 0.9, 0.9, 0.3]))) == [1, 2, 3, 0]


@torch.no_grad()
def test_vit_curves_match_a_loop_over_single_images():
    vit = tiny_layerscale_vit(42)
    x = torch.randn(1, 3, 42, 42)
    P = 9
    rankings = {"a": np.random.default_rng(0).random(P), "b": np.arange(P, dtype=float)}
    got = curves(vit_score(vit, x, 1, True), rankings, steps=4)
    ref = vit.forward_features(x)[0, 0]
    tokens = vit._pos_embed(vit.patch_embed(x))[0]  # (1 + P, d)

    def one(kept: list[int]) -> float:
        seq = torch.cat([tokens[:1], tokens[1:][kept]])[None]
        f = vit.norm(vit.blocks(seq))[0, 0]
        return float(torch.nn.functional.cosine_similarity(f, ref, dim=0))

    fr, dele, ins = brute(one, rankings, 4)
    np.testing.assert_allclose(got.fractions, fr)
    for name in rankings:
        np.testing.assert_allclose(got.deletion[name], dele[name], atol=1e-5)
        np.testing.assert_allclose(got.insertion[name], ins[name], atol=1e-5)
        assert got.deletion_auc[name] == auc(fr, np.asarray(got.deletion[name]))
    assert abs(got.deletion["a"][0] - 1.0) < 1e-5 and abs(got.insertion["a"][-1] - 1.0) < 1e-5


@torch.no_grad()
def test_bert_pair_curves_match_a_loop():
    m, _ = build_random_text_model("bert", {}, "eager")
    m.eval()
    ids = torch.tensor([[2, 5, 7, 9, 11, 3]])
    special = torch.tensor([True, False, False, False, False, True])
    other = torch.randn(m.config.hidden_size)
    rankings = {"r": np.array([0.3, 0.1, 0.9, 0.5])}
    got = curves(bert_pair_score(m, ids, special, other), rankings, steps=4)

    def one(kept: list[int]) -> float:
        pos = [0, *[1 + k for k in kept], 5]  # the kept tokens as a shorter sentence, at their own positions
        h = m(input_ids=ids[:, pos], position_ids=torch.tensor([pos])).last_hidden_state[0]
        return float(torch.nn.functional.cosine_similarity(h.mean(0), other, dim=0))

    _, dele, ins = brute(one, rankings, 4)
    np.testing.assert_allclose(got.deletion["r"], dele["r"], atol=1e-5)
    np.testing.assert_allclose(got.insertion["r"], ins["r"], atol=1e-5)


@torch.no_grad()
def test_seq2seq_curves_end_points():
    model, tok = build_random_text_model("dates", {}, "eager")
    model.eval()
    src = torch.tensor([tok.encode("3 May 1999")])
    tgt = torch.tensor([tok.encode("1999", bos=True)])
    token = tok.encode("9")[0]
    got = curves(
        seq2seq_score(model, src, tgt, 2, token, tok.pad_id), {"r": np.arange(src.shape[1], dtype=float)}, 5
    )
    full = float(model(src, tgt)[0][0, 2].log_softmax(-1)[token])
    assert abs(got.deletion["r"][0] - full) < 1e-5 and abs(got.insertion["r"][-1] - full) < 1e-5
    assert np.all(np.isfinite(got.deletion["r"])) and np.all(np.isfinite(got.insertion["r"]))
