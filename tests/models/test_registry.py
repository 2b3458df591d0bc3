"""Any timm ViT-family model: geometry read from the model, capture and analysis work end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.vision.analysis import analyze_image, load_vision_model
from models.vision.registry import VisionModelSpec
from tests.factories import photo

FAMILY = [
    # (arch, kwargs, expected prefix tokens, expected grid)
    ("vit_tiny_patch16_224", dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2), 1, (4, 4)),
    ("deit_tiny_distilled_patch16_224", dict(img_size=48, embed_dim=32, depth=2, num_heads=2), 2, (3, 3)),
    ("vit_small_patch14_reg4_dinov2", dict(img_size=28, embed_dim=32, depth=2, num_heads=2), 5, (2, 2)),
    ("beit_base_patch16_224", dict(img_size=32, embed_dim=32, depth=2, num_heads=2), 1, (2, 2)),
    ("vit_medium_patch16_gap_256", dict(img_size=32, embed_dim=32, depth=2, num_heads=2), 0, (2, 2)),
]


@pytest.mark.parametrize(("arch", "kwargs", "prefix", "grid"), FAMILY, ids=[f[0] for f in FAMILY])
def test_vit_family_end_to_end(tmp_path, arch, kwargs, prefix, grid) -> None:
    spec = VisionModelSpec(id=arch, arch_tag=f"{arch}.random", source="random", timm_kwargs=kwargs)
    vm = load_vision_model(spec, "cpu", torch.float32, tmp_path)
    assert vm.info.num_prefix_tokens == prefix
    assert vm.info.num_layers == 2 and vm.info.num_heads == 2
    rgb = photo(0, (70, 50), high=255)
    a = analyze_image(vm, rgb)
    n_patches = grid[0] * grid[1]
    assert a.grid == grid
    assert a.attentions.shape == (2, 2, prefix + n_patches, prefix + n_patches)
    assert a.cls_attention.shape == (2, 2, n_patches)
    assert a.rollout.shape == (n_patches,)
    assert np.isfinite(a.rollout).all()
    if prefix == 0:  # no CLS token: the map is the mean over patch queries, which sums to 1
        np.testing.assert_allclose(a.cls_attention.sum(-1), 1.0, atol=1e-3)
    assert a.patch_attention(1, None, n_patches - 1).shape == (n_patches,)


def test_file_source_loads_local_safetensors(tmp_path) -> None:
    import timm
    from safetensors.torch import save_file

    kwargs = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=0)
    torch.manual_seed(3)
    ref = timm.create_model("vit_tiny_patch16_224", pretrained=False, **kwargs).eval()
    path = tmp_path / "w.safetensors"
    save_file(ref.state_dict(), str(path))
    spec = VisionModelSpec(
        id="local", arch_tag="vit_tiny_patch16_224.local", source="file", path=str(path), timm_kwargs=kwargs
    )
    vm = load_vision_model(spec, "cpu", torch.float32, tmp_path)
    for k, v in ref.state_dict().items():
        assert torch.equal(vm.model.state_dict()[k], v)


def test_resolution_outside_the_list_is_refused(tmp_path) -> None:
    spec = VisionModelSpec(
        id="t",
        arch_tag="vit_tiny_patch16_224.random",
        source="random",
        timm_kwargs=dict(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2),
    )
    vm = load_vision_model(spec, "cpu", torch.float32, tmp_path)
    assert vm.info.resolutions == (32,)
    with pytest.raises(ValueError, match="accepts input resolutions"):
        vm.check_resolution(64)
