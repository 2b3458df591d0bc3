"""The head-importance sweep (models/influence/importance.py) on tiny random models: each cell is the metric
with that one head cut, the intact run scores 1.0 cosine, progress counts every run, a cancel stops it."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from models.influence.ablation import ablating, head_means
from models.influence.importance import (
    Cancelled,
    date_eval_set,
    date_measure,
    head_importance,
    pair_measure,
    sentence_pairs,
    vision_measure,
)
from models.influence.outcomes import feature_change, vision_features
from models.text.random_models import build_random_text_model
from tests.factories import make_tiny_vit

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_bundled_sets():
    rows = date_eval_set(8, seed=1)
    assert len(rows) > 8 and all(len(iso) == 10 for _, iso in rows)
    assert rows[-8:] == date_eval_set(8, seed=1)[-8:]  # fixed seed, same examples
    pairs = sentence_pairs()
    assert len(pairs) >= 20 and {label for *_, label in pairs} == {"paraphrase", "related", "unrelated"}


def test_vision_map_cells_are_single_head_ablations():
    model = make_tiny_vit()
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    m = vision_measure(model, x, num_prefix=1, has_cls=True)
    seen = []
    imap = head_importance(m, "zero", n_examples=3, progress=lambda d, t: seen.append((d, t)))
    assert imap.base == {"cls_cos": 1.0, "patch_cos": pytest.approx(1.0)}
    assert imap.values["cls_cos"]["encoder_self"].shape == (3, 4)
    assert seen[-1] == (13, 13) and [d for d, _ in seen] == list(range(1, 14))
    base = vision_features(model, x)
    with torch.inference_mode(), ablating(model, [("encoder_self", 1, 2)]):
        ch = feature_change(base, vision_features(model, x), 1)
    assert imap.values["cls_cos"]["encoder_self"][1, 2] == pytest.approx(float(ch.cls_cos.mean()), abs=1e-12)
    assert np.all(imap.values["cls_cos"]["encoder_self"] < 1.0)


def test_mean_mode_and_text_measures():
    model, tok = build_random_text_model("bert")
    m = pair_measure(model, tok, [(a, b) for a, b, _ in sentence_pairs()[:3]])
    means = head_means(model, m.reference)
    imap = head_importance(m, "mean", means=means)
    assert imap.base["mean_abs_delta_cos"] == 0.0
    assert imap.values["mean_abs_delta_cos"]["encoder_self"].shape == (2, 4)
    assert np.all(imap.values["mean_abs_delta_cos"]["encoder_self"] > 0)
    dates, dtok = build_random_text_model("dates")
    dm = date_measure(dates, dtok, date_eval_set(2, seed=0)[-2:])
    out = dm.measure([])
    assert set(out) == {"exact_match", "mean_logp"}


def test_a_cancel_stops_the_sweep():
    model = make_tiny_vit()
    m = vision_measure(model, torch.zeros(1, 3, 32, 32), 1, True)
    cancel = threading.Event()

    def progress(done, total):
        if done == 3:
            cancel.set()

    with pytest.raises(Cancelled):
        head_importance(m, progress=progress, cancel=cancel)
