"""The value-weighted views (models/{text,vision}/value_views.py) against direct numpy recomputation, and the
claim the browser relies on: with special tokens hidden, weighting the drawn (renormalised) rows by the drawn
columns' norms and renormalising equals weighting the full rows and then hiding and renormalising."""

from __future__ import annotations

import numpy as np
import pytest

from models.text import views
from models.text.analysis import TextModelSpec, load_text_model
from models.text.value_views import norms_for_view, special_survival, weighted_block
from models.value_norms import value_weighted
from tests.models.test_value_norms import REL, randomise, tiny_vision

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def bert_analysis():
    tm = load_text_model(TextModelSpec("tiny-bert", "encoder", "random", "bert"))
    randomise(tm.model)
    return tm.analyze("the cat sat on the mat")


def test_text_weighted_block_and_hidden_special_commute(bert_analysis):
    a = bert_analysis
    full = weighted_block(a, "encoder_self")  # (L, H, T, T)
    direct = a.blocks["encoder_self"] * a.value_norms["encoder_self"][:, :, None, :]
    direct = direct / direct.sum(-1, keepdims=True)
    np.testing.assert_allclose(full, direct, atol=8 * REL)
    shown = views.layer_view(
        a, "encoder_self", 1, hide_special=True, merge_words=False
    )  # (H, W, W) renormalised
    in_browser = value_weighted(shown, norms_for_view(a, "encoder_self", True, False)[1])
    kept = [i for i, s in enumerate(a.source.special) if not s]
    server = full[1][:, kept][:, :, kept]
    np.testing.assert_allclose(in_browser, server / server.sum(-1, keepdims=True), atol=8 * REL)
    assert norms_for_view(a, "encoder_self", False, True) is None  # merged words: no per-column factor


def test_text_special_survival(bert_analysis):
    a = bert_analysis
    s = special_survival(a, "encoder_self")
    special = np.array(a.source.special)
    alpha = a.blocks["encoder_self"].astype(np.float64)
    w = alpha * a.value_norms["encoder_self"][:, :, None, :]
    expect_a = alpha[..., special].sum(-1).mean(-1)
    expect_w = (w[..., special].sum(-1) / w.sum(-1)).mean(-1)
    np.testing.assert_allclose(s.attention, expect_a, rtol=1e-5)
    np.testing.assert_allclose(s.weighted, expect_w, rtol=1e-5)
    np.testing.assert_allclose(s.survives, expect_w / expect_a, rtol=1e-5)


@pytest.mark.parametrize("name", ["vit", "dinov2_reg"])
def test_vision_weighted_maps(name):
    from models.vision.analysis import analyze_image
    from models.vision.value_views import patch_norms, prefix_survival, weighted_cls, weighted_patch_map
    from tests.factories import photo

    vm = tiny_vision(name)
    a = analyze_image(vm, photo(5, 40))
    p0 = a.num_prefix_tokens
    alpha = a.attentions.float().numpy().astype(np.float64)  # (L, H, N, N)
    norms = a.value_norms.astype(np.float64)  # (L, H, N)
    w = alpha * norms[:, :, None, :]
    np.testing.assert_array_equal(patch_norms(a), a.value_norms[..., p0:])
    cls = w[:, :, 0, p0:] / w[:, :, 0, p0:].sum(-1, keepdims=True)  # (L, H, P)
    np.testing.assert_allclose(weighted_cls(a), cls, atol=8 * REL)
    q = 3
    row = w[1, :, p0 + q, p0:] / w[1, :, p0 + q, p0:].sum(-1, keepdims=True)  # (H, P)
    np.testing.assert_allclose(weighted_patch_map(a, 1, 2, q), row[2], atol=8 * REL)
    np.testing.assert_allclose(weighted_patch_map(a, 1, None, q), row.mean(0), atol=8 * REL)
    s = prefix_survival(a)
    share_a = (alpha[:, :, p0:, :p0].sum(-1) / alpha[:, :, p0:].sum(-1)).mean(-1)  # float16 rows: sum ≈ 1
    share_w = (w[:, :, p0:, :p0].sum(-1) / w[:, :, p0:, :].sum(-1)).mean(-1)
    np.testing.assert_allclose(s.attention, share_a, rtol=1e-5)
    np.testing.assert_allclose(s.weighted, share_w, rtol=1e-5)
