"""The residual stream capture (models/vision/hidden.py) against a block-by-block forward written here."""

from __future__ import annotations

import pytest
import torch

from models.vision.analysis import analyze_image, load_vision_model
from models.vision.hidden import HiddenCaptureError, capture_hidden
from tests.factories import make_tiny_vit, photo, tiny_vit_spec

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def manual_stream(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """x_l after each block, computed by calling the blocks one by one (no hooks)."""
    h = model.norm_pre(model._pos_embed(model.patch_embed(x)))  # (B, N, D)
    out = []
    for blk in model.blocks:
        h = blk(h)
        out.append(h)
    return out


def test_hidden_and_norms_match_a_manual_forward() -> None:
    model = make_tiny_vit()
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        with capture_hidden(model) as rec:
            feats = model.forward_features(x)
        want = manual_stream(model, x)
        final = model.norm(want[-1])
    hidden, norms = rec.all_hidden(), rec.all_norms()
    assert hidden.shape == (2, 3, 17, 32) and hidden.dtype == torch.float16
    for layer, w in enumerate(want):
        torch.testing.assert_close(hidden[:, layer].float(), w, atol=2e-3, rtol=2e-3)  # float16 rounding
        # norms come from the float32 stream: exact to float32
        torch.testing.assert_close(norms[:, layer], torch.linalg.vector_norm(w, dim=-1))
    torch.testing.assert_close(feats, final)
    assert all(not blk._forward_hooks for blk in model.blocks)


def test_hooks_removed_when_forward_raises() -> None:
    model = make_tiny_vit()
    with pytest.raises(RuntimeError), capture_hidden(model):
        model.forward_features(torch.randn(1, 4, 32, 32))  # 4 channels: the patch embed raises
    assert all(not blk._forward_hooks for blk in model.blocks)


def test_a_model_without_blocks_is_refused() -> None:
    with pytest.raises(HiddenCaptureError), capture_hidden(torch.nn.Linear(2, 2)):
        pass


def test_analysis_keeps_the_stream(tmp_path) -> None:
    vm = load_vision_model(tiny_vit_spec(), cache_dir=tmp_path)
    a = analyze_image(vm, photo(3))
    assert a.hidden.shape == (3, 17, 32) and a.hidden.dtype == torch.float16
    assert a.features.shape == (17, 32) and a.token_norms.shape == (3, 17)
    x, _ = vm.preprocess(photo(3))
    with torch.inference_mode():
        want = manual_stream(vm.model, x)
    for layer, w in enumerate(want):
        torch.testing.assert_close(
            torch.from_numpy(a.token_norms[layer]), torch.linalg.vector_norm(w[0], dim=-1)
        )


def test_a_batch_keeps_each_image_its_own_stream(tmp_path) -> None:
    from models.vision.analysis import analyze_images

    vm = load_vision_model(tiny_vit_spec(), cache_dir=tmp_path)
    both = analyze_images(vm, [photo(1), photo(2)])
    for b, seed in enumerate((1, 2)):
        one = analyze_image(vm, photo(seed))
        torch.testing.assert_close(both[b].hidden.float(), one.hidden.float(), atol=2e-3, rtol=2e-3)
        torch.testing.assert_close(both[b].features.float(), one.features.float(), atol=2e-3, rtol=2e-3)
        torch.testing.assert_close(torch.from_numpy(both[b].token_norms), torch.from_numpy(one.token_norms))
