"""``result.ablate(heads)`` in the notebook API (app/notebook/ablation.py) on tiny random models: the same
numbers as the core's run_ablation, heads given as (layer, head) or (block, layer, head)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.notebook import show_text, show_vision
from models.influence.ablation import ablating
from models.influence.outcomes import answer_logp, pair_cosines
from models.text.random_models import build_random_text_model
from tests.factories import make_tiny_vit, photo


def test_text_result_ablate_the_date_model():
    paper, chars = build_random_text_model("dates")
    t = show_text(paper, chars, "7 Dec '41")
    run = t.ablate([("cross", 1, 0), ("cross", 1, 3)], target="2041-12-07")
    assert (
        run.kind == "dates" and run.answer == "2041-12-07" and run.heads == [("cross", 1, 0), ("cross", 1, 3)]
    )
    with ablating(paper, run.heads):
        want = float(answer_logp(paper, chars, ["7 Dec '41"], ["2041-12-07"])[0])
    assert run.logp_ablated == pytest.approx(want, abs=1e-9)
    assert run.logp_intact == pytest.approx(
        float(answer_logp(paper, chars, ["7 Dec '41"], ["2041-12-07"])[0])
    )
    with pytest.raises(ValueError, match="no head"):
        t.ablate([("cross", 5, 0)])


def test_text_result_ablate_an_encoder_pair_and_mean_mode():
    model, tok = build_random_text_model("bert")
    t = show_text(model, tok, "A cat sleeps.")
    with pytest.raises(ValueError, match="pair"):
        t.ablate([(0, 1)])
    run = t.ablate([(0, 1)], pair="The cat is asleep.")
    with ablating(model, [("encoder_self", 0, 1)]), torch.inference_mode():
        want = float(pair_cosines(model, tok, [("A cat sleeps.", "The cat is asleep.")])[0])
    assert run.cos_ablated == pytest.approx(want, abs=1e-9)
    mean = t.ablate([{"layer": 0, "head": 1}], "mean", pair="The cat is asleep.")
    assert mean.mode == "mean" and mean.cos_ablated != run.cos_ablated


def test_vision_result_ablate():
    r = show_vision(make_tiny_vit(), photo(0, (40, 30)))
    same = r.ablate([])
    assert same.cls_cos == pytest.approx(1.0) and same.patch_cos == pytest.approx(1.0)
    run = r.ablate([(2, 1)])
    assert run.patch_cos_map.shape == (4, 4) and run.cls_cos < 1.0
    assert run.patch_cos == pytest.approx(float(np.mean(run.patch_cos_map)), abs=1e-6)
