"""Value-weighted attention (Kobayashi et al. 2020; models/value_norms.py) against independent recomputation.

Brute force: hooks capture the value projection's *input* x and the attention probabilities α; in float64 we
build every vector α_ij^h · f_h(x_j), f_h(x) = γ ⊙ ((x W_V^h + b_V^h) W_O^h), from the module weights (the full
vector product, not the norm trick), take its norm, and compare with α · norms[key]. The same vectors summed
over heads and keys, plus the output bias, must give the sublayer's own output: that checks that the
decomposition (value slice, head slices of W_O, LayerScale, bias excluded) is the one the model computes.

Tolerance: the norms are float32 (an einsum over d then D terms); we allow 64 float32 ulps of the largest
value (2^-17 relative), far below any difference a chart could show and far above float32 rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.value_norms import head_value_norms, record_value_norms, special_share, value_weighted

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REL = 64 * np.finfo(np.float32).eps  # 2^-17


def close(a: np.ndarray, b: np.ndarray, scale: float | None = None) -> None:
    scale = float(np.abs(b).max()) if scale is None else scale
    np.testing.assert_allclose(a, b, rtol=0, atol=REL * max(scale, 1e-30))


@torch.no_grad()
def brute(x, w_v, b_v, w_o, alpha, n_heads, gamma=None):
    """float64 vectors α_ij f_h(x_j): (norms (H, Tq, Tk), their sum over h and j (Tq, D))."""
    x, w_v, w_o, alpha = (t.double() for t in (x, w_v, w_o, alpha))
    v = x @ w_v.T + (0 if b_v is None else b_v.double())  # (Tk, H*d)
    tk, hd = v.shape
    d = hd // n_heads
    f = torch.einsum("nhd,ohd->hno", v.view(tk, n_heads, d), w_o.view(w_o.shape[0], n_heads, d))  # (H, Tk, D)
    if gamma is not None:
        f = f * gamma.double()
    vec = alpha[:, :, :, None] * f[:, None, :, :]  # (H, Tq, Tk, D)
    return vec.norm(dim=-1).numpy(), vec.sum(dim=(0, 2)).numpy()


@torch.no_grad()
def randomise(model: torch.nn.Module, seed: int = 1) -> None:
    """Random biases and LayerScales (random init leaves them 0 and constant, which would test nothing)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith("bias") or name.endswith("gamma"):
            p.copy_(
                torch.rand(p.shape, generator=g) * 2 - 1
                if name.endswith("bias")
                else torch.rand(p.shape, generator=g) * 3
            )


# --- the math on hand-made cases --------------------------------------------------------------------------


def test_head_value_norms_hand_made():
    # two heads of width 1, D = 2: W_O = [[1, 0], [0, 2]] puts head 0 on axis 0 and head 1 (x2) on axis 1
    v = torch.tensor([[[3.0, 4.0], [1.0, -1.0]]])  # (B=1, N=2, H*d=2)
    w_o = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    norms = head_value_norms(v, w_o, 2)  # (1, 2, 2)
    assert norms[0].tolist() == [[3.0, 1.0], [8.0, 2.0]]
    gamma = torch.tensor([0.5, 3.0])
    assert head_value_norms(v, w_o, 2, gamma)[0].tolist() == [[1.5, 0.5], [24.0, 6.0]]


def test_value_weighted_and_special_share_hand_made():
    alpha = np.array([[[[0.8, 0.2], [0.5, 0.5]]]], np.float32)  # (L=1, H=1, 2, 2); key 0 is "[CLS]"
    norms = np.array([[[1.0, 4.0]]], np.float32)  # [CLS]'s value is short
    w = value_weighted(alpha, norms, renormalise=False)
    np.testing.assert_allclose(w[0, 0], [[0.8, 0.8], [0.5, 2.0]])
    r = value_weighted(alpha, norms)
    np.testing.assert_allclose(r[0, 0], [[0.5, 0.5], [0.2, 0.8]], rtol=1e-6)
    s = special_share(alpha, norms, np.array([True, False]))
    np.testing.assert_allclose(s.attention, [[0.65]], rtol=1e-6)  # mean of 0.8 and 0.5
    np.testing.assert_allclose(s.weighted, [[0.35]], rtol=1e-6)  # mean of 0.5 and 0.2
    np.testing.assert_allclose(s.survives, [[0.35 / 0.65]], rtol=1e-6)
    none = special_share(alpha, norms, np.array([False, False]))
    assert np.isnan(none.survives).all()


def test_record_keeps_the_last_call():
    lin = torch.nn.Linear(4, 4)
    from models.value_norms import ValueSite

    site = ValueSite("self", 0, lin, 2, values=lambda v: v, w_o=lambda: torch.eye(4))
    with record_value_norms([site]) as rec:
        lin(torch.ones(1, 3, 4))
        lin(torch.zeros(1, 5, 4))
    assert rec.norms[0].shape == (1, 2, 5)
    assert not lin._forward_hooks  # removed on exit


# --- timm ViTs: plain, LayerScale (DINOv2), registers ---------------------------------------------------

VITS = {
    "vit": (
        "vit_tiny_patch16_224.random",
        dict(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=4),
    ),
    "dinov2": (
        "vit_small_patch14_dinov2.random",
        dict(img_size=28, patch_size=14, embed_dim=32, depth=2, num_heads=4, init_values=1.0),
    ),
    "dinov2_reg": (
        "vit_small_patch14_reg4_dinov2.random",
        dict(img_size=28, patch_size=14, embed_dim=32, depth=2, num_heads=4, init_values=1.0),
    ),
}


def tiny_vision(name: str):
    from models.vision.analysis import load_vision_model
    from models.vision.registry import VisionModelSpec

    arch, kwargs = VITS[name]
    vm = load_vision_model(VisionModelSpec(id=name, arch_tag=arch, source="random", timm_kwargs=kwargs))
    randomise(vm.model)
    return vm


@pytest.mark.parametrize("name", list(VITS))
def test_vision_norms_match_brute_force(name):
    from models.vision.analysis import analyze_image
    from models.vision.capture import capture_attention
    from models.vision.value_norms import vision_value_sites
    from tests.factories import photo

    vm = tiny_vision(name)
    image = photo(3, 48)
    a = analyze_image(vm, image)
    n = a.attentions.shape[-1]
    assert a.value_norms is not None and a.value_norms.shape == (*a.attentions.shape[:2], n)

    x, _ = vm.prepare(image)
    inputs, outputs = {}, {}
    hooks = []
    for i, block in enumerate(vm.model.blocks):
        hooks.append(
            block.attn.qkv.register_forward_pre_hook(lambda m, args, i=i: inputs.__setitem__(i, args[0]))
        )
        hooks.append(block.ls1.register_forward_hook(lambda m, args, out, i=i: outputs.__setitem__(i, out)))
    try:
        with (
            torch.no_grad(),
            capture_attention(vm.model) as rec,
            record_value_norms(vision_value_sites(vm.model)) as vn,
        ):
            vm.model.forward_features(x)
    finally:
        for h in hooks:
            h.remove()
    np.testing.assert_array_equal(
        vn.stacked()[:, 0].numpy(), a.value_norms
    )  # the analysis keeps what it hooked
    for i, block in enumerate(vm.model.blocks):
        attn, dim = block.attn, block.attn.proj.in_features
        gamma = getattr(block.ls1, "gamma", None)
        qkv_b = attn.qkv.bias
        norms, summed = brute(
            inputs[i][0], attn.qkv.weight[2 * dim :], None if qkv_b is None else qkv_b[2 * dim :],
            attn.proj.weight, rec.maps[i][0], attn.num_heads, gamma,
        )  # fmt: skip
        alpha = rec.maps[i][0].double().numpy()  # (H, N, N)
        close(alpha * a.value_norms[i][:, None, :].astype(np.float64), norms)
        bias = (attn.proj.bias * (1 if gamma is None else gamma)).detach().double()
        close(summed + bias.numpy(), outputs[i][0].double().numpy())  # Σ_h Σ_j α f + γ b_O = ls1(attn(x))


def test_unsupported_vision_blocks_give_no_norms():
    from models.vision.value_norms import ValueNormsUnsupported, vision_value_sites
    from tests.factories import make_tiny_vit

    model = make_tiny_vit()
    model.blocks[1].attn.norm = torch.nn.LayerNorm(32)
    with pytest.raises(ValueNormsUnsupported, match="normalises"):
        vision_value_sites(model)


def test_cached_qr_follows_weight_changes():
    """The R factors are cached per weight state: an in-place change of W_O or γ gives fresh norms."""
    g = torch.Generator().manual_seed(0)
    v, w, gamma = (
        torch.randn(1, 5, 8, generator=g),
        torch.randn(6, 8, generator=g),
        torch.rand(6, generator=g),
    )

    def direct() -> torch.Tensor:  # the full product, per head
        f = torch.einsum("bnhd,ohd->bhno", v.view(1, 5, 2, 4), w.view(6, 2, 4)) * gamma
        return f.norm(dim=-1)

    close(head_value_norms(v, w, 2, gamma).numpy(), direct().numpy())
    with torch.no_grad():
        w.mul_(3.0)
    close(head_value_norms(v, w, 2, gamma).numpy(), direct().numpy())
    with torch.no_grad():
        gamma.add_(1.0)
    close(head_value_norms(v, w, 2, gamma).numpy(), direct().numpy())
