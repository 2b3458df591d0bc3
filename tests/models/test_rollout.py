import pytest
import torch

from models.vision.rollout import attention_rollout, discard_smallest, fuse_heads, rollout_matrix


def test_two_layer_hand_computed_example() -> None:
    # 2 layers, 1 head, N = 2 tokens (CLS + 1 patch)... use N = 3 to make it non-trivial.
    a1 = torch.tensor([[[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.2, 0.2, 0.6]]])
    a2 = torch.tensor([[[0.0, 1.0, 0.0], [0.5, 0.0, 0.5], [1.0, 0.0, 0.0]]])
    attn = torch.stack([a1, a2])  # (L=2, H=1, 3, 3)
    # by hand: Ã = (A + I) / 2 (rows of A sum to 1)
    t1 = torch.tensor([[0.75, 0.25, 0.0], [0.0, 1.0, 0.0], [0.1, 0.1, 0.8]])
    t2 = torch.tensor([[0.5, 0.5, 0.0], [0.25, 0.5, 0.25], [0.5, 0.0, 0.5]])
    want = t2 @ t1
    # row 0 of t2 @ t1 = 0.5*[.75,.25,0] + 0.5*[0,1,0] = [0.375, 0.625, 0]
    torch.testing.assert_close(want[0], torch.tensor([0.375, 0.625, 0.0]))
    torch.testing.assert_close(rollout_matrix(attn), want)
    torch.testing.assert_close(attention_rollout(attn, num_prefix_tokens=1), torch.tensor([0.625, 0.0]))
    torch.testing.assert_close(rollout_matrix(attn).sum(-1), torch.ones(3))


def test_head_fusion_modes() -> None:
    attn = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]])  # (H=2, 2, 2)
    torch.testing.assert_close(fuse_heads(attn, "mean"), torch.full((2, 2), 0.5))
    torch.testing.assert_close(fuse_heads(attn, "max"), torch.ones(2, 2))
    torch.testing.assert_close(fuse_heads(attn, "min"), torch.zeros(2, 2))
    with pytest.raises(ValueError):
        fuse_heads(attn, "median")


def test_discard_never_touches_prefix_rows_or_columns() -> None:
    a = torch.arange(16, dtype=torch.float32).reshape(4, 4) + 1
    out = discard_smallest(a, 0.5, num_prefix_tokens=1)
    torch.testing.assert_close(out[0], a[0])
    torch.testing.assert_close(out[:, 0], a[:, 0])
    body = out[1:, 1:]
    assert int((body == 0).sum()) == 4  # half of the 9 patch entries, rounded down
    assert body.max() == a[1:, 1:].max()


def test_rows_renormalised_after_discard() -> None:
    torch.manual_seed(0)
    attn = torch.rand(3, 2, 5, 5).softmax(-1)
    r = rollout_matrix(attn, discard_ratio=0.6)
    torch.testing.assert_close(r.sum(-1), torch.ones(5))


@pytest.mark.parametrize("prefix", [0, 1, 2])
def test_rollout_map_is_the_matrix_row(prefix: int) -> None:
    torch.manual_seed(1)
    attn = torch.rand(4, 3, 7, 7).softmax(-1)
    r = rollout_matrix(attn, "max", 0.3, prefix)
    want = r[0, prefix:] if prefix else r.mean(0)
    torch.testing.assert_close(attention_rollout(attn, "max", 0.3, prefix), want)


@pytest.mark.parametrize("prefix", [1, 4])
def test_no_cls_with_registers_averages_patch_rows(prefix: int) -> None:
    """Registers but no [CLS]: row 0 is a register, so the map is the mean over the PATCH rows of R."""
    torch.manual_seed(2)
    attn = torch.rand(3, 2, prefix + 6, prefix + 6).softmax(-1)  # (L, H, N, N)
    r = rollout_matrix(attn, num_prefix_tokens=prefix)  # (N, N)
    want = r[prefix:, prefix:].mean(0)  # (P,)
    got = attention_rollout(attn, num_prefix_tokens=prefix, has_cls=False)
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, r[0, prefix:])  # the old (register row 0) answer differs
    # with a CLS token the map stays R[CLS, patches]
    torch.testing.assert_close(attention_rollout(attn, num_prefix_tokens=prefix), r[0, prefix:])


def test_registers_no_cls_model_rollout_from_the_analysis() -> None:
    """A tiny random timm ViT with 2 register tokens and no [CLS]: the analysis's rollout (computed block by
    block during the forward) and the view's (from the cached maps) both average the patch rows."""
    from PIL import Image

    from models.vision.analysis import analyze_image, load_vision_model
    from models.vision.registry import VisionModelSpec
    from tests.factories import random_vit

    geometry = dict(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=2, num_classes=0)
    geometry.update(class_token=False, reg_tokens=2, global_pool="avg")
    spec = random_vit(
        VisionModelSpec, "tiny_reg_nocls", "Tiny random ViT, 2 registers, no [CLS] (tests)", **geometry
    )
    vm = load_vision_model(spec)
    assert vm.info.num_prefix_tokens == 2 and not vm.info.has_cls_token
    image = Image.new("RGB", (40, 40), (120, 60, 200))
    image.paste((10, 200, 30), (0, 0, 20, 20))
    analysis = analyze_image(vm, image)
    assert not analysis.has_cls
    maps = analysis.attentions.float()  # (L, H, N, N) the cached float16 maps
    r = rollout_matrix(maps, num_prefix_tokens=2)  # (N, N)
    want = r[2:, 2:].mean(0)  # (P,)
    # float16 cache vs the float32 maps of the forward: a rounding-level difference, with margin
    torch.testing.assert_close(
        torch.from_numpy(analysis.rollout), want, rtol=0, atol=4e-3 * float(want.max())
    )
    torch.testing.assert_close(attention_rollout(maps, num_prefix_tokens=2, has_cls=False), want)
    # the vision service's derived view (other fusion / discard) reads the same rows
    from app.services.vision import rollout_map

    r_max = rollout_matrix(maps, "max", 0.2, 2)  # (N, N)
    torch.testing.assert_close(torch.from_numpy(rollout_map(analysis, "max", 0.2)), r_max[2:, 2:].mean(0))
