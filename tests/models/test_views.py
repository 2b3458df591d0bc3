"""The derived views (models/vision/views.py, models/text/views.py) against independent brute-force
computations on tiny random models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from models.text import views as tv
from models.text.analysis import load_text_model
from models.text.export import text_arrays
from models.vision import views as vv
from models.vision.analysis import analyze_image, load_vision_model
from models.vision.rollout import attention_rollout
from tests.conftest import TINY_SPECS, tiny_text_settings

SENTENCE = "The animal didn't cross the street because it was too tired."


def photo(h: int = 40, w: int = 52) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8))


@pytest.fixture(scope="module", params=[0, 1], ids=["vit", "deit_distilled"])
def vision(request, tmp_path_factory):
    vm = load_vision_model(TINY_SPECS[request.param], cache_dir=tmp_path_factory.mktemp("cache"))
    return vm, analyze_image(vm, photo())


def brute_entropy(maps: np.ndarray, p0: int) -> np.ndarray:
    """(L, H, P) entropy of each patch query's row over the patch keys, renormalised, in float64 loops."""
    L, H, N, _ = maps.shape
    out = np.zeros((L, H, N - p0))
    for layer in range(L):
        for h in range(H):
            for i in range(N - p0):
                row = maps[layer, h, p0 + i, p0:].astype(np.float64)
                p = row / row.sum()
                out[layer, h, i] = -sum(x * math.log(x) for x in p if x > 0)
    return out


def test_patch_entropy_is_the_renormalised_row_entropy(vision):
    vm, a = vision
    maps = a.attentions.float().numpy()  # (L, H, N, N)
    p0, (R, C) = a.num_prefix_tokens, a.grid
    ref = brute_entropy(maps, p0)
    ent = vv.patch_entropy(a)
    assert ent.shape == (*maps.shape[:2], R * C) and ent.dtype == np.float32
    np.testing.assert_allclose(ent, ref, rtol=1e-5, atol=1e-6)
    assert ent.max() <= vv.max_entropy(a) + 1e-5 and vv.max_entropy(a) == pytest.approx(math.log(R * C))
    np.testing.assert_allclose(vv.entropy_map(a, 1, 0), ref[1, 0].reshape(R, C), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(vv.entropy_map(a, 1, None), ref[1].mean(0).reshape(R, C), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(vv.mean_entropy(ent), ref.mean(-1), rtol=1e-5)
    with pytest.raises(IndexError):
        vv.entropy_map(a, 99, 0)


def test_uniform_and_one_hot_rows_give_log_p_and_zero(vision):
    _, a = vision
    p0, P = a.num_prefix_tokens, a.grid[0] * a.grid[1]
    att = torch.zeros_like(a.attentions)
    att[0, :, :, p0:] = 1.0 / (P + p0)  # uniform over the patches (the prefix share is renormalised away)
    att[0, :, :, :p0] = 1.0 / (P + p0)
    att[1:, :, :, p0] = 1.0  # every query looks at patch 0 only
    b = type(a)(**{**a.__dict__, "attentions": att})
    ent = vv.patch_entropy(b)
    np.testing.assert_allclose(ent[0], math.log(P), rtol=1e-3)
    np.testing.assert_array_equal(ent[1:], 0.0)


def test_vision_stats_rollout_distance_probe(vision):
    vm, a = vision
    maps = a.attentions.float().numpy()
    p0 = a.num_prefix_tokens
    s = vv.stats(a)
    rows = maps[:, :, p0:, :].astype(np.float64)  # (L, H, P, N)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(rows > 0, rows * np.log(rows), 0.0)
    np.testing.assert_allclose(s["entropy"], -plogp.sum(-1).mean(-1), rtol=1e-5)
    np.testing.assert_allclose(s["prefix_share"], rows[..., :p0].sum(-1).mean(-1), rtol=1e-5)
    P = rows.shape[2]
    diag = np.stack([rows[:, :, i, p0 + i] for i in range(P)], -1)  # (L, H, P)
    np.testing.assert_allclose(s["self_share"], diag.mean(-1), rtol=1e-5)
    np.testing.assert_array_equal(vv.rollout(a), a.rollout)
    ref = attention_rollout(a.attentions, "max", 0.5, p0, a.has_cls).numpy()
    np.testing.assert_allclose(vv.rollout(a, "max", 0.5), ref, rtol=1e-6)
    # mean attention distance by brute force: sum_j A[i, j] * |pos_i - pos_j| over patch keys, mean over i
    R, C = a.grid
    ps = vm.info.patch_size
    pos = np.stack(np.meshgrid(np.arange(R), np.arange(C), indexing="ij"), -1).reshape(-1, 2) * ps  # (P, 2)
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)  # (P, P)
    mad = (maps[:, :, p0:, p0:] * d).sum(-1).mean(-1)  # (L, H), prefix keys at distance 0
    np.testing.assert_allclose(vv.attention_distance(a, ps), mad, rtol=1e-4)
    q, step = vv.probe_rows(a, [0])
    assert q.dtype == np.uint8 and q.shape == (1, maps.shape[1], P, P)
    assert np.abs(q * step[..., None] - maps[:1, :, p0:, p0:]).max() <= 0.5 * step.max() * 1.001


# --------------------------------------------------------------------------------------------- text


@pytest.fixture(scope="module")
def text():
    spec = next(e for e in tiny_text_settings()["text_models"] if e.id == "tiny-bert")
    return load_text_model(spec).analyze(SENTENCE)


def test_token_distance_and_head_views(text):
    a = text
    block = a.blocks["encoder_self"].astype(np.float64)  # (L, H, T, T)
    T = block.shape[-1]
    ref = np.array([[np.mean([sum(block[n, h, i, j] * abs(j - i) for j in range(T)) for i in range(T)])
                     for h in range(block.shape[1])] for n in range(block.shape[0])])  # fmt: skip
    np.testing.assert_allclose(tv.token_distance(a)["encoder_self"], ref, rtol=1e-5)
    z = text_arrays(a)  # the export door: the same functions
    np.testing.assert_allclose(z["encoder_self_distance"], ref, rtol=1e-5)
    ovs0 = tv.overviews(a, False, False, thumb=1, keep_view=False)
    np.testing.assert_array_equal(z["encoder_self_stats"], ovs0["encoder_self"].stats)
    np.testing.assert_array_equal(
        tv.layer_view(a, "encoder_self", 1, False, False), a.blocks["encoder_self"][1]
    )
    mean = tv.head_view(a, "encoder_self", 1, None, False, False)
    np.testing.assert_allclose(mean, block[1].mean(0), rtol=1e-6)
    # hide_special drops [CLS] and [SEP] from both axes and renormalises each row over what is left
    keep = [i for i, s in enumerate(a.source.special) if not s]
    sub = block[0, 2][np.ix_(keep, keep)]
    np.testing.assert_allclose(
        tv.head_view(a, "encoder_self", 0, 2, True, False), sub / sub.sum(-1, keepdims=True), rtol=1e-5
    )
    ovs = tv.overviews(a, False, False, thumb=64, keep_view=True)
    np.testing.assert_array_equal(ovs["encoder_self"].view, a.blocks["encoder_self"])
    assert tv.view_bytes(a, False, False) == 4 * block.size


def test_offsets_and_lines(text):
    a = text
    block = a.blocks["encoder_self"]  # (L, H, T, T)
    T, W = block.shape[-1], 3
    means = tv.offset_view(tv.offset_means([a, a], W)["encoder_self"], W).profile  # the same input twice
    for c, d in enumerate(range(-W, W + 1), start=1):
        mass = sum(block[..., i, i + d] for i in range(T) if 0 <= i + d < T) / T  # (L, H)
        np.testing.assert_allclose(means[..., c], mass, rtol=1e-5, atol=1e-7)
    v = tv.offset_view(tv.offset_means([a], 8)["encoder_self"], W)
    profile, score, best = v.profile, v.score, v.best
    np.testing.assert_allclose(profile, means, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(score, profile[..., 1:-1].max(-1))
    np.testing.assert_array_equal(best, profile[..., 1:-1].argmax(-1) - W)
    index, weight = tv.lines_of(block, 2)  # (L, H, T, 2)
    top = np.sort(block, -1)[..., ::-1][..., :2]
    np.testing.assert_allclose(weight / 255.0, top, atol=0.5 / 255 + 1e-6)
