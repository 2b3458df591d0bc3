import pytest
import torch

from models.vision.capture import CaptureError, capture_attention, find_attention_modules
from tests.factories import make_tiny_vit


def manual_attention(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Recompute every block's probabilities from its qkv weights, independently of timm's forward."""
    maps = []
    h = model.patch_embed(x)
    h = model._pos_embed(h)
    h = model.norm_pre(h)
    for blk in model.blocks:
        attn = blk.attn
        y = blk.norm1(h)
        B, N, C = y.shape
        qkv = y @ attn.qkv.weight.T + attn.qkv.bias  # (B, N, 3C)
        qkv = qkv.reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)  # (3, B, H, N, hd)
        q, k, _ = qkv.unbind(0)
        probs = ((q @ k.transpose(-2, -1)) / attn.head_dim**0.5).softmax(-1)  # (B, H, N, N)
        maps.append(probs)
        h = blk(h)
    return maps


@pytest.mark.parametrize("fused", [True, False])
def test_capture_matches_manual_recomputation(fused: bool) -> None:
    model = make_tiny_vit()
    for blk in model.blocks:
        blk.attn.fused_attn = fused
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        with capture_attention(model) as rec:
            out = model.forward_features(x)
        expected = manual_attention(model, x)
        plain = model.forward_features(x)
    assert len(rec.maps) == 3
    for got, want in zip(rec.maps, expected, strict=True):
        assert got.shape == (2, 4, 17, 17)
        assert (got - want).abs().max() <= 1e-5
        torch.testing.assert_close(got.sum(-1), torch.ones(2, 4, 17))
    torch.testing.assert_close(out, plain, atol=1e-5, rtol=1e-5)
    # the switch is restored and no hooks remain
    assert all(blk.attn.fused_attn is fused for blk in model.blocks)
    assert all(not blk.attn.attn_drop._forward_hooks for blk in model.blocks)


def test_hooks_removed_when_forward_raises() -> None:
    model = make_tiny_vit()
    with pytest.raises((RuntimeError, AssertionError)), capture_attention(model):
        model.forward_features(torch.randn(1, 3, 31, 31))  # wrong size: patch embed raises
    assert all(not blk.attn.attn_drop._forward_hooks for blk in model.blocks)
    assert all(blk.attn.fused_attn for blk in model.blocks)


def test_missing_block_is_an_error_not_an_empty_result() -> None:
    model = make_tiny_vit()
    with capture_attention(model) as rec:
        pass  # no forward: nothing recorded
    with pytest.raises(CaptureError, match="no attention probabilities"):
        _ = rec.maps


def test_pattern_that_matches_nothing_raises() -> None:
    with pytest.raises(CaptureError, match="no attention modules"):
        find_attention_modules(make_tiny_vit(), "*decoder*")


def test_reduce_callback_streams_without_keeping_maps() -> None:
    model = make_tiny_vit()
    sums: dict[int, float] = {}
    with (
        torch.inference_mode(),
        capture_attention(model, reduce=lambda i, p: sums.setdefault(i, float(p.sum()))),
    ):
        model.forward_features(torch.randn(1, 3, 32, 32))
    assert sorted(sums) == [0, 1, 2]
    assert all(abs(v - 4 * 17) < 1e-3 for v in sums.values())  # each row sums to 1


def test_distilled_deit_with_two_prefix_tokens() -> None:
    import timm

    model = timm.create_model(
        "deit_tiny_distilled_patch16_224", pretrained=False, img_size=48, embed_dim=32, depth=2, num_heads=2
    ).eval()
    with torch.inference_mode(), capture_attention(model) as rec:
        model.forward_features(torch.randn(1, 3, 48, 48))
    assert [m.shape for m in rec.maps] == [(1, 2, 11, 11)] * 2
