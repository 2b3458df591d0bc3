"""Compact analyses (models/vision/native.py): maps recomputed from the float16 residual stream, checked against
the float32 maps the same forward computed (captured in the test), and against the full-maps analysis.

Margin: a recomputed probability may differ from the forward's float32 one by the float16 rounding of the
stored stream, propagated through norm1, qkv and softmax. Measured on DINOv2 ViT-S/14 at 518 px (astronaut):
at most 1.3e-3 absolute over every row (the float16 copy of the maps alone: 2.4e-4, one half ulp at 0.5-1).
The tests hold every probability to ATOL = 2e-3 absolute (4 float16 ulps of a probability near 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from app.state import analysis_nbytes
from models.vision import views as vv
from models.vision.analysis import analyze_image, load_vision_model
from models.vision.capture import capture_attention
from models.vision.export import full_maps
from models.vision.mad import mean_attention_distance
from models.vision.native import BlockWeights, block_query_rows, layer_maps
from models.vision.registry import DINOV2_VITS14
from models.vision.samples import sample_images
from tests.conftest import TINY_SPECS

ATOL = 2e-3


@pytest.fixture(scope="module")
def dinov2_518():
    """One 518 px analysis of a sample photo and the float32 (L, H, N, N) maps of the same forward."""
    vm = load_vision_model(DINOV2_VITS14)
    with capture_attention(vm.model) as rec:
        a = analyze_image(vm, sample_images()["astronaut"], 518)
    return vm, a, torch.cat(rec.maps)  # (L, H, N, N) float32, batch of one


def test_518_is_compact_and_small(dinov2_518) -> None:
    vm, a, full = dinov2_518
    assert a.compact and a.attentions is None and a.grid == (37, 37) and full.shape == (12, 6, 1370, 1370)
    L, N, D = 12, 1370, 384
    P = N - 1
    # docs/resource-model.md: stream (embed + hidden) + CLS maps + rollout + distance + image, and the
    # features / norms views' terms: last-layer features (N, D) f16, token norms (L, N) f32, value norms (L, H, N) f32
    expected = 2 * (L + 1) * N * D + 4 * L * 6 * P + 4 * P + 8 * L * 6 + 3 * 518**2
    expected += 2 * N * D + 4 * L * N + 4 * L * 6 * N
    assert analysis_nbytes(a) == expected
    assert 768 * 2**20 // analysis_nbytes(a) >= 30  # the default analysis cache holds >= 30 of them
    assert full.numel() * 2 > 16 * analysis_nbytes(a)  # the float16 maps it replaces: 270 MB, not 15.6 MiB


def test_518_clicked_rows_equal_the_full_maps(dinov2_518) -> None:
    _, a, full = dinov2_518
    for query in (0, 18 * 37 + 18, 1368):  # a corner, the centre, the last patch
        rows = a.patch_rows(query)  # (L, H, P): all 72 heads
        ref = full[:, :, 1 + query, 1:].numpy()
        assert rows.shape == ref.shape == (12, 6, 1369)
        np.testing.assert_allclose(rows, ref, rtol=0, atol=ATOL)
        np.testing.assert_allclose(a.patch_attention(7, None, query), ref[7].mean(0), rtol=0, atol=ATOL)
        np.testing.assert_allclose(vv.patch_rows(a, query), ref.reshape(12, 6, 37, 37), rtol=0, atol=ATOL)
    for layer in (0, 11):
        np.testing.assert_allclose(a.layer_maps(layer).numpy(), full[layer].numpy(), rtol=0, atol=ATOL)


def test_518_forward_time_views_are_exact(dinov2_518) -> None:
    vm, a, full = dinov2_518
    np.testing.assert_array_equal(a.cls_attention, full[:, :, 0, 1:].numpy())  # as the forward ran
    ref = mean_attention_distance(full, a.grid, 1, 14).double().numpy()  # (L, H)
    np.testing.assert_allclose(vv.attention_distance(a, 14), ref, rtol=1e-6)


@pytest.fixture(scope="module", params=[0, 1], ids=["vit", "deit_distilled"])
def pair(request, tmp_path_factory):
    """The same tiny-model forward stored both ways: full float16 maps, and compact."""
    vm = load_vision_model(TINY_SPECS[request.param], cache_dir=tmp_path_factory.mktemp("cache"))
    rng = np.random.default_rng(1)
    img = Image.fromarray((rng.random((40, 52, 3)) * 255).astype(np.uint8))
    full, compact = analyze_image(vm, img, keep_maps=True), analyze_image(vm, img, keep_maps=False)
    assert not full.compact and compact.compact and compact.attentions is None
    return full, compact


def test_compact_views_equal_the_full_views(pair) -> None:
    full, compact = pair
    p0 = full.num_prefix_tokens
    np.testing.assert_array_equal(compact.cls_attention, full.cls_attention)
    np.testing.assert_array_equal(compact.rollout, full.rollout)
    for q in (0, full.grid[0] * full.grid[1] - 1):
        np.testing.assert_allclose(compact.patch_rows(q), full.patch_rows(q), atol=ATOL)
        np.testing.assert_allclose(vv.patch_map(compact, 1, 0, q), vv.patch_map(full, 1, 0, q), atol=ATOL)
    for layer in range(full.num_layers):
        np.testing.assert_allclose(compact.layer_maps(layer), full.layer_maps(layer), atol=ATOL)
        assert compact.layer_maps(layer)[:, p0:].sum(-1).sub(1).abs().max() < 1e-5  # rows are softmaxes
    for fusion in ("max", "min"):  # (a discard ratio > 0 is a top-k cut: an entry near it may flip sides)
        np.testing.assert_allclose(vv.rollout(compact, fusion), vv.rollout(full, fusion), atol=ATOL)
    np.testing.assert_allclose(vv.patch_entropy(compact), vv.patch_entropy(full), rtol=1e-2, atol=1e-2)
    for key, value in vv.stats(full).items():
        np.testing.assert_allclose(vv.stats(compact)[key], value, rtol=1e-2, atol=ATOL)
    np.testing.assert_allclose(
        vv.attention_distance(compact, 16, True), vv.attention_distance(full, 16, True), rtol=1e-2
    )
    exported = full_maps(compact)  # python -m app export of a compact analysis: every map, recomputed
    assert exported.dtype == np.float16 and exported.shape == tuple(full.attentions.shape)
    np.testing.assert_allclose(exported.astype(np.float32), full.attentions.float().numpy(), atol=ATOL)
    with pytest.raises(IndexError):
        compact.patch_rows(full.grid[0] * full.grid[1])


def test_folded_and_unfolded_query_rows_equal_brute_force() -> None:
    """block_query_rows folds the keys into the query for plain blocks and projects them otherwise; both
    against softmax(q k^T * scale) written out from the qkv weights."""
    torch.manual_seed(0)
    dim, heads, n = 32, 4, 11
    qkv = torch.nn.Linear(dim, 3 * dim)
    x = torch.randn(n, dim)
    norm = torch.nn.LayerNorm(dim)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_()
        h = norm(x)
        q, k, _ = qkv(h).reshape(n, 3, heads, dim // heads).permute(1, 2, 0, 3)  # (H, N, d) each
        brute = torch.softmax(q @ k.transpose(-2, -1) * 0.3, dim=-1)  # (H, N, N)
    plain = BlockWeights(norm, qkv, torch.nn.Identity(), torch.nn.Identity(), heads, 0.3)
    assert plain.plain
    for token in (0, 5, n - 1):
        torch.testing.assert_close(block_query_rows(plain, x, token), brute[:, token], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(layer_maps(plain, x), brute, atol=1e-6, rtol=1e-5)
    qn = torch.nn.LayerNorm(dim // heads)
    normed = BlockWeights(norm, qkv, qn, qn, heads, 0.3)
    with torch.no_grad():
        ref = torch.softmax(qn(q) @ qn(k).transpose(-2, -1) * 0.3, dim=-1)
    assert not normed.plain
    torch.testing.assert_close(block_query_rows(normed, x, 3), ref[:, 3], atol=1e-6, rtol=1e-5)


def test_stream_overflowing_float16_is_kept_in_float32() -> None:
    from models.vision.native import _to_host

    small, big = _to_host(torch.tensor([1.5, -3.0])), _to_host(torch.tensor([1.0, 1e5]))
    assert small.dtype == torch.float16 and big.dtype == torch.float32 and big[1] == 1e5


def test_views_over_a_compact_analysis_make_each_layer_once(pair, monkeypatch) -> None:
    """Rollout with options, statistics and the renormalised distance read ``maps()`` lazily: each layer is
    recomputed once, and never all of them at once (at 518 px one layer is 45 MB in float32)."""
    full, compact = pair
    made: list[int] = []
    real = compact.layer_maps

    def counting(layer: int):
        made.append(layer)
        return real(layer)

    monkeypatch.setattr(compact, "layer_maps", counting)
    L = compact.num_layers
    for view in (lambda: vv.rollout(compact, "max", 0.5), lambda: vv.stats(compact)):
        made.clear()
        view()
        assert sorted(made) == list(range(L)), made
    made.clear()
    vv.attention_distance(compact, 16, True)
    assert sorted(made) == list(range(L))


def test_recomputing_maps_never_fires_the_models_hooks(pair) -> None:
    """A compact analysis recomputes its maps with the model's own modules, in the CPU pool, while another
    request's forward may hold hooks on those modules (attention capture, value norms): the recomputation
    runs them without hooks. (Under `make load` such a hook fired on a rollout's 2-D input and answered 500.)"""
    _, compact = pair
    fired: list[int] = []
    hooks = [
        m.register_forward_hook(lambda *_: fired.append(1))
        for b in compact.weights.blocks
        for m in (b.qkv, b.norm)
    ]
    try:
        for layer in range(compact.num_layers):
            compact.layer_maps(layer)
        compact.patch_rows(0)
    finally:
        for h in hooks:
            h.remove()
    assert fired == []
