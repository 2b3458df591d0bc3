"""The notebook door of the influence measures (issue 15): ``result.contributions()``, ``result.relevance(t)``
and ``result.curves()`` on notebook results give the same numbers as the pure functions in models/influence."""

from __future__ import annotations

import numpy as np
import torch

from app.notebook import show_text, show_vision
from models.influence import run
from models.text.random_models import build_random_text_model
from tests.factories import make_tiny_vit, photo


def test_text_result_contributions_and_relevance_bert():
    model, tok = build_random_text_model("bert", {}, "sdpa")  # the notebook switches to eager itself
    r = show_text(model, tok, "the cat sat on the mat")
    c = r.contributions()
    T = len(r.tokens)
    assert c.layers.shape == (model.config.num_hidden_layers, T, T)
    np.testing.assert_allclose(c.layers.sum(-1), 1.0, atol=1e-5)
    rel = r.relevance("a dog ran")
    with r._eager():  # the model was built for SDPA, which never materialises the probabilities
        direct = run.text_relevance(r.model, r.analysis, "a dog ran", 0)
    np.testing.assert_allclose(rel.relevance, direct.relevance, atol=1e-6)
    cv = r.curves("a dog ran", steps=4)
    assert set(cv.curves.deletion) == {"relevancy", "rollout", "attention"}


def test_text_result_relevance_date_model_step():
    model, tok = build_random_text_model("dates", {}, "eager")
    r = show_text(model, tok, "3 May 1999")
    rel = r.relevance(2)
    assert rel.step == 2 and rel.relevance.shape == (len(r.tokens),) and rel.decoder.shape == (3,)


def test_vision_result_influence():
    torch.manual_seed(0)
    r = show_vision(make_tiny_vit(), photo())
    P = r.grid[0] * r.grid[1]
    c = r.contributions()
    assert c.rollout.shape == (3, P) and c.attention_rollout.shape == (P,)
    rel = r.relevance()
    assert rel.relevance.shape == (P,) and rel.query is None
    assert r.relevance(2).query == 2
    cv = r.curves(steps=4)
    assert abs(cv.curves.deletion["relevancy"][0] - 1.0) < 1e-5
