"""The outputs ablation is judged by (models/influence/outcomes.py), each against a hand computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.influence.ablation import ablating
from models.influence.outcomes import (
    answer_logp,
    date_outcome,
    exact_match,
    feature_change,
    pair_cosines,
    sentence_embeddings,
)
from models.text.random_models import build_random_text_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@torch.inference_mode()
def test_answer_logp_is_the_sum_of_teacher_forced_char_logps():
    model, tok = build_random_text_model("dates")
    texts, answers = ["7 Dec '41", "March 18th, 2022"], ["2041-12-07", "2022-03-18"]
    got = answer_logp(model, tok, texts, answers)
    for i, (text, ans) in enumerate(zip(texts, answers, strict=True)):
        src = torch.tensor([tok.encode(text)])  # unpadded, one at a time
        ids = tok.encode(ans, bos=True, eos=True)
        logits, _ = model(src, torch.tensor([ids[:-1]]), need_weights=False)
        lp = logits[0].double().log_softmax(-1)
        want = sum(float(lp[t, ids[t + 1]]) for t in range(len(ids) - 1))
        assert got[i] == pytest.approx(want, abs=1e-5)


def test_date_outcome_decodes_and_scores():
    model, tok = build_random_text_model("dates")
    out = date_outcome(model, tok, ["7 Dec '41"], ["2041-12-07"])
    assert len(out.decoded) == 1 and out.logp.shape == (1,) and out.logp[0] < 0
    with ablating(model, [("cross", 0, 0), ("cross", 1, 3)]):
        cut = date_outcome(model, tok, ["7 Dec '41"], ["2041-12-07"])
    assert cut.logp[0] != out.logp[0]
    assert exact_match(["a", "b"], ["a", "c"]) == 0.5


@torch.inference_mode()
def test_mean_pooling_over_the_mask_by_hand():
    model, tok = build_random_text_model("bert")
    sentences = ["A cat.", "The animal did not cross the street."]
    emb = sentence_embeddings(model, tok, sentences)
    for i, s in enumerate(sentences):  # unpadded, one at a time: the plain mean over all its tokens
        enc = tok([s], return_tensors="pt")
        want = model(**enc).last_hidden_state[0].mean(0)
        torch.testing.assert_close(emb[i], want, atol=1e-5, rtol=1e-5)
    cos = pair_cosines(model, tok, [(sentences[0], sentences[1])])
    a, b = emb[0].double(), emb[1].double()
    assert cos[0] == pytest.approx(float(a @ b / a.norm() / b.norm()), abs=1e-6)


def test_feature_change_by_hand():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(2, 5, 4, generator=g)  # (B, N, C): 1 prefix token, 4 patches
    feats = base.clone()
    feats[0, 0] = -base[0, 0]  # image 0's [CLS] flipped
    feats[1, 1:3] = -base[1, 1:3]  # image 1: two of four patches flipped
    ch = feature_change(base, feats, num_prefix=1)
    np.testing.assert_allclose(ch.cls_cos, [-1.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(ch.patch_cos, [1.0, 0.0], atol=1e-12)
    no_cls = feature_change(base, base, num_prefix=0, has_cls=False)
    np.testing.assert_allclose(no_cls.cls_cos, [1.0, 1.0], atol=1e-12)
