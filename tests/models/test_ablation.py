"""Head ablation (models/influence/ablation.py) on tiny random models of the three families: the paper
Transformer (date task), a Hugging Face BERT and timm ViTs (one with DINOv2's LayerScale and registers).

Checked: ablating nothing changes nothing (torch.equal); zero-ablating every head of a layer equals removing
that attention sublayer's output (replaced by its bias-only term b^O, times LayerScale in a ViT block), bit
for bit; one zero-ablated head equals the sum of the other heads' W^O slices computed by hand; mean contexts
equal a hand computation of softmax(QK^T/sqrt(d_k))V."""

from __future__ import annotations

import math

import pytest
import torch

from models.influence.ablation import (
    ablating,
    all_heads,
    head_grid,
    head_means,
    output_projections,
    removing_attention,
)
from models.text.random_models import build_random_text_model
from tests.factories import make_tiny_vit

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _randomise_biases(model: torch.nn.Module, seed: int = 1) -> None:
    """Random biases (and LayerScale gammas): a zero b^O would make 'bias only' the same as 'zero'."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or name.endswith(".gamma"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)


def _dates():
    model, tok = build_random_text_model("dates")
    _randomise_biases(model)
    src = torch.tensor(
        [tok.encode("March 18th, 2022"), tok.encode("18.03.2022 (Fri)")]
    )  # (2, Ts) equal lengths
    tgt = torch.tensor([tok.encode("2022-03-18", bos=True)] * 2)  # (2, Tt)

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return model(src, tgt, need_weights=False)[0]  # (2, Tt, V)

    return model, run


def _bert():
    model, tok = build_random_text_model("bert", {"num_hidden_layers": 3})
    _randomise_biases(model)
    enc = tok(["The animal was too tired.", "A cat sat on the mat today."], padding=True, return_tensors="pt")

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return model(**enc).last_hidden_state  # (2, T, d)

    return model, run


def _vit(arch: str = "vit_tiny_patch16_224", **kw):
    model = make_tiny_vit(arch, **kw)
    _randomise_biases(model)
    x = torch.randn(2, 3, model.patch_embed.img_size[0], model.patch_embed.img_size[1],
                    generator=torch.Generator().manual_seed(3))  # fmt: skip

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return model.forward_features(x)  # (2, N, C)

    return model, run


DINO_KW = dict(img_size=28, patch_size=14, embed_dim=32, depth=3, num_heads=4, num_classes=0, init_values=1.0)
FAMILIES = {
    "dates": _dates,
    "bert": _bert,
    "vit": _vit,
    "dinov2-reg": lambda: _vit("vit_small_patch14_reg4_dinov2", **DINO_KW),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_ablating_nothing_changes_nothing(family):
    model, run = FAMILIES[family]()
    base = run()
    with ablating(model, [], "zero"):
        assert torch.equal(run(), base)
    with ablating(model, [], "mean", means=None):
        assert torch.equal(run(), base)
    assert torch.equal(run(), base)  # the hooks are gone afterwards


@pytest.mark.parametrize("family", FAMILIES)
def test_zero_ablating_a_whole_layer_removes_the_sublayer_output(family):
    model, run = FAMILIES[family]()
    base = run()
    grid = head_grid(model)
    for block, (layers, heads) in grid.items():
        for layer in range(layers):
            cut = [(block, layer, h) for h in range(heads)]
            with ablating(model, cut, "zero"):
                ablated = run()
            with removing_attention(model, [(block, layer)]):
                removed = run()
            # bit for bit: a zero input makes W^O's output exactly b^O (0 * w sums to exactly 0)
            assert torch.equal(ablated, removed), (block, layer)
            assert not torch.equal(ablated, base)


def test_layerscale_is_in_the_removed_output():
    """The DINOv2 block adds gamma * b^O when its attention is removed: check it against the residual by hand."""
    model, _ = _vit("vit_small_patch14_reg4_dinov2", **DINO_KW)
    blk = model.blocks[0]
    x = torch.randn(1, 9, 32)
    with torch.inference_mode(), removing_attention(model, [("encoder_self", 0)]):
        out = blk(x)
    with torch.inference_mode():
        y = x + blk.ls1.gamma * blk.attn.proj.bias
        want = y + blk.ls2(blk.mlp(blk.norm2(y)))
    torch.testing.assert_close(out, want, rtol=0, atol=1e-6)


def test_one_zero_ablated_head_is_the_other_heads_sum():
    """Paper 1, Section 3.2.2 by hand: MultiHead = sum_h head_h W^O_h + b^O; cutting head 1 drops its term."""
    model, _ = build_random_text_model("dates")
    _randomise_biases(model)
    mha = model.encoder.layers[0].self_attn
    x = torch.randn(1, 5, 32, generator=torch.Generator().manual_seed(0))
    H, dk = mha.n_heads, mha.d_k
    with torch.inference_mode():
        want = mha.w_o.bias.clone().expand(1, 5, 32).clone()
        for h in range(H):
            sl = slice(h * dk, (h + 1) * dk)
            q = x @ mha.w_q.weight[sl].T + mha.w_q.bias[sl]  # (1, 5, d_k)
            k = x @ mha.w_k.weight[sl].T + mha.w_k.bias[sl]
            v = x @ mha.w_v.weight[sl].T + mha.w_v.bias[sl]
            ctx = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dk), -1) @ v  # (1, 5, d_k)
            if h != 1:
                want += ctx @ mha.w_o.weight[:, sl].T
        with ablating(model, [("encoder_self", 0, 1)]):
            got, _ = mha(x, x, x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_head_means_are_the_mean_context_by_hand():
    model, tok = build_random_text_model("dates")
    src = torch.tensor([tok.encode("7 Dec '41")])  # (1, Ts)
    tgt = torch.tensor([tok.encode("2041-12-07", bos=True)])
    means = head_means(model, [lambda: model(src, tgt, need_weights=False)])
    mha = model.encoder.layers[0].self_attn
    with torch.inference_mode():
        x = model.positional_encoding(model.src_embed(src))  # (1, Ts, d)
        H, dk = mha.n_heads, mha.d_k
        for h in range(H):
            sl = slice(h * dk, (h + 1) * dk)
            q, k, v = (x @ w.weight[sl].T + w.bias[sl] for w in (mha.w_q, mha.w_k, mha.w_v))
            ctx = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dk), -1) @ v  # (1, Ts, d_k)
            torch.testing.assert_close(means[("encoder_self", 0)][h], ctx[0].mean(0), rtol=1e-5, atol=1e-6)
    assert set(means) == {(p.block, p.layer) for p in output_projections(model)}


def test_mean_ablation_with_the_input_as_reference_keeps_a_constant_head():
    """Mean-ablating with means taken on the same input changes a head only by its deviation from its mean:
    the output moves, and it moves less than zero-ablation moves it (on these weights)."""
    model, run = _dates()
    base = run()
    means = head_means(model, [run])
    heads = [("cross", 1, 0), ("decoder_self", 0, 2)]
    with ablating(model, heads, "mean", means):
        mean_out = run()
    with ablating(model, heads, "zero"):
        zero_out = run()
    assert not torch.equal(mean_out, base)
    assert (mean_out - base).norm() < (zero_out - base).norm()


def _enter(model, heads, mode="zero"):
    with ablating(model, heads, mode):
        pass


def test_unknown_heads_and_modes_are_refused():
    model, _ = _dates()
    assert len(all_heads(model)) == 3 * 2 * 4
    with pytest.raises(ValueError, match="no head 4"):
        _enter(model, [("cross", 0, 4)])
    with pytest.raises(ValueError, match="no head"):
        _enter(model, [("encoder_self", 2, 0)])
    with pytest.raises(ValueError, match="mean-ablation needs"):
        _enter(model, [("cross", 0, 0)], "mean")
    with pytest.raises(ValueError, match="'zero' or 'mean'"):
        _enter(model, [], "half")
    assert all(not p.module._forward_pre_hooks for p in output_projections(model))  # nothing left behind
