"""Norms and sinks (models/vision/norms.py) by hand on constructed cases, and against the captured stream."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.vision.mad import mean_attention_distance
from models.vision.norms import (
    distance_without,
    drop_keys,
    key_outliers,
    norm_stats,
    robust_outliers,
    rollout_without,
    sink_keys,
    sink_mass,
)
from models.vision.rollout import attention_rollout


def test_robust_outliers_by_hand() -> None:
    v = np.array([10.0, 11.0, 9.0, 10.0, 12.0, 8.0, 10.0, 100.0])
    mask, med, mad, thr = robust_outliers(v, k=10)
    assert med == 10.0  # sorted: 8 9 10 10 10 11 12 100
    assert mad == 1.0  # |v - 10| sorted: 0 0 0 1 1 2 2 90 -> median 1
    assert thr == 20.0
    np.testing.assert_array_equal(mask, v > 20)
    none, *_ = robust_outliers(v[:-1], k=10)
    assert not none.any()


def test_norm_stats_say_no_outliers_when_there_are_none() -> None:
    rng = np.random.default_rng(0)
    norms = 50 + rng.normal(size=(3, 1 + 16))  # (L, N): one prefix token
    st = norm_stats(norms, 1)
    assert st.counts.tolist() == [0, 0, 0]
    assert st.summary().startswith("No outliers")
    norms[1, 1 + 5] = 500.0  # one high-norm patch in layer 2
    st = norm_stats(norms, 1)
    assert st.counts.tolist() == [0, 1, 0] and st.outliers[1, 5]
    assert "layers 2" in st.summary()
    np.testing.assert_allclose(st.max_ratio[1], 500.0 / np.median(norms[1, 1:]), rtol=1e-6)
    np.testing.assert_allclose(st.prefix_norms[:, 0], norms[:, 0], rtol=1e-6)


def constructed_maps() -> tuple[torch.Tensor, np.ndarray]:
    """2 layers x 2 heads over N = 2 prefix ([CLS], one register) + 4 patches, with known masses.

    Every patch query row puts 0.1 on [CLS], 0.2 on the register, 0.5 on patch 3 (the outlier of layer 1's
    output, so a sink key of layer 2) and 0.2 spread over patches 0-2. Head 1 of layer 2 ignores the sinks."""
    n = 6
    a = torch.zeros(2, 2, n, n)
    row = torch.tensor([0.1, 0.2, 0.2 / 3, 0.2 / 3, 0.2 / 3, 0.5])
    a[:, :, :, :] = row
    a[1, 1, :, :] = torch.tensor([0.0, 0.0, 0.25, 0.25, 0.25, 0.25])
    outliers = np.zeros((2, 4), dtype=bool)
    outliers[0, 3] = True  # layer 1's output: patch 3 is the outlier
    return a, outliers


def test_sink_mass_by_hand() -> None:
    a, outliers = constructed_maps()
    got = sink_mass(a, 2, True, outliers)  # (L, H, 3)
    assert got.shape == (2, 2, 3)
    # layer 1: no outlier keys yet (its input is the embeddings)
    np.testing.assert_allclose(got[0, 0], [0.1, 0.2, 0.0], atol=1e-6)
    np.testing.assert_allclose(got[1, 0], [0.1, 0.2, 0.5], atol=1e-6)
    np.testing.assert_allclose(got[1, 1], [0.0, 0.0, 0.25], atol=1e-6)
    # no CLS (registers only): both prefix tokens count as registers
    np.testing.assert_allclose(sink_mass(a, 2, False, outliers)[1, 0], [0.0, 0.3, 0.5], atol=1e-6)
    keys = key_outliers(outliers, 2)
    assert keys.tolist() == [[False] * 6, [False, False, False, False, False, True]]


def test_dropping_the_sinks_renormalises_rows() -> None:
    a, outliers = constructed_maps()
    drop = sink_keys(outliers, 2)  # (L, N)
    kept = drop_keys(a[1], drop[1])  # (H, N, N)
    # layer 2, head 1: only patches 0-2 remain, each 0.2/3 of 0.2 -> 1/3
    np.testing.assert_allclose(kept[0, 3].numpy(), [0, 0, 1 / 3, 1 / 3, 1 / 3, 0], atol=1e-6)
    torch.testing.assert_close(kept.sum(-1), torch.ones(2, 6))
    # rollout without sinks equals the plain rollout of maps masked by hand
    by_hand = torch.stack([drop_keys(a[i], drop[i]) for i in range(2)])
    want = attention_rollout(by_hand, "mean", 0.0, 2, True).numpy()
    np.testing.assert_allclose(rollout_without(a, drop, 2, True), want, atol=1e-6)
    # distance without sinks: the renormalised distance of the hand-masked maps
    got = distance_without(a, drop, (2, 2), 2, 16)
    want_d = mean_attention_distance(by_hand, (2, 2), 2, 16, renormalize=True).numpy()
    np.testing.assert_allclose(got, want_d, rtol=1e-6)
    # with no sinks dropped the distance is the plain renormalised one
    none = np.zeros((2, 6), dtype=bool)
    plain = mean_attention_distance(a, (2, 2), 2, 16, renormalize=True).numpy()
    np.testing.assert_allclose(distance_without(a, none, (2, 2), 2, 16), plain, rtol=1e-6)


@pytest.mark.parametrize("k", [3.0, 10.0])
def test_norms_from_the_captured_stream(tmp_path, k: float) -> None:
    from models.vision.analysis import analyze_image, load_vision_model
    from tests.factories import photo, tiny_vit_spec

    vm = load_vision_model(tiny_vit_spec(), cache_dir=tmp_path)
    a = analyze_image(vm, photo(5))
    st = norm_stats(a.token_norms, a.num_prefix_tokens, k)
    # independently: the norm of each float16 residual vector (float16 rounding only)
    direct = torch.linalg.vector_norm(a.hidden.float(), dim=-1).numpy()  # (L, N)
    np.testing.assert_allclose(st.norms, direct[:, 1:], rtol=2e-3)
    np.testing.assert_allclose(st.prefix_norms[:, 0], direct[:, 0], rtol=2e-3)
    med = np.median(direct[:, 1:], axis=1)
    np.testing.assert_allclose(st.median, med, rtol=2e-3)


def test_sinks_view_recomputes_only_layers_with_outlier_keys(tmp_path) -> None:
    from models.vision import feature_views as fv
    from models.vision.analysis import analyze_image, load_vision_model
    from tests.factories import photo, tiny_vit_spec

    vm = load_vision_model(tiny_vit_spec(), cache_dir=tmp_path)
    a = analyze_image(vm, photo(6))
    for k in (0.5, 100.0):  # many outliers, none
        s = fv.sinks(a, 8, k)
        drop = sink_keys(s.stats.outliers, 1)
        full = distance_without(a.attentions, drop, a.grid, 1, 8)
        np.testing.assert_allclose(s.distance_without, full, rtol=1e-5)


def test_fused_without_is_the_head_mean_of_drop_keys() -> None:
    from models.vision.norms import fused_without

    a = torch.rand(3, 7, 7).softmax(-1)  # (H, N, N)
    drop = np.array([True, False, False, True, False, False, False])
    torch.testing.assert_close(fused_without(a, drop), drop_keys(a, drop).mean(0))
    torch.testing.assert_close(
        fused_without(a.half(), drop), drop_keys(a.half(), drop).mean(0), atol=1e-3, rtol=1e-3
    )


def test_register_tokens_get_their_own_sink_mass(tmp_path) -> None:
    """A random ViT with [CLS] + 4 registers (timm ``reg_tokens``, as the allowlisted ``*_reg4`` models): the
    register column of the sink mass is the patch queries' attention on tokens 1-4, summed by hand here."""
    from models.vision import feature_views as fv
    from models.vision.analysis import analyze_image, load_vision_model
    from models.vision.registry import VisionModelSpec
    from tests.factories import photo, random_vit

    geometry = dict(
        img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=10, reg_tokens=4
    )
    spec = random_vit(VisionModelSpec, "tiny_reg4", "Tiny random ViT with 4 registers", **geometry)
    vm = load_vision_model(spec, cache_dir=tmp_path)
    a = analyze_image(vm, photo(2))
    assert a.num_prefix_tokens == 5 and a.has_cls and a.hidden.shape == (2, 21, 32)
    s = fv.sinks(a, 8, 1000.0)  # k so large that no patch is an outlier
    maps = a.attentions.float().numpy()  # (L, H, N, N)
    np.testing.assert_allclose(s.mass[..., 0], maps[:, :, 5:, 0].mean(-1), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(s.mass[..., 1], maps[:, :, 5:, 1:5].sum(-1).mean(-1), rtol=1e-3, atol=1e-4)
    assert (s.mass[..., 1] > 0).all() and (s.mass[..., 2] == 0).all()
    assert fv.norms(a, 1000.0).prefix_norms.shape == (2, 5)
