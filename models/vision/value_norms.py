"""Value-weighted attention sites of timm ViT-family models (Kobayashi et al. 2020; math in
``models/value_norms.py``).

timm's ``Attention``: ``qkv = Linear(D, 3 * H * d)`` gives q, k, v side by side (v is the last third), heads
concatenated, then ``proj = Linear(H * d, D)`` is W_O. In a block the sublayer output is ``ls1(attn(norm1(x)))``:
DINOv2's LayerScale ``ls1`` (γ ⊙ ·) scales what every head adds to the residual stream, so γ is part of f_h
here (f_h(x) = γ ⊙ ((x W_V^h + b_V^h) W_O^h)); for models without LayerScale ``ls1`` is the identity.

Modules where a per-key norm does not describe the output are refused with :class:`ValueNormsUnsupported`
(callers then offer no value-weighted view): a norm between attention and ``proj`` (``scale_norm``) or a
per-query gate mixes the heads' vectors before W_O, and a ``qkv`` that is not a plain ``nn.Linear`` (BEiT/EVA
keep q/v biases outside it, so a hook on it sees no bias).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from models.value_norms import ValueNormRecord, ValueSite, record_value_norms


class ValueNormsUnsupported(ValueError):
    """This architecture's attention output is not Σ_j α_ij f_h(x_j) with a per-key f_h we can read."""


def vision_value_sites(model: nn.Module) -> list[ValueSite]:
    """One :class:`ValueSite` per transformer block of a timm ViT (``model.blocks[i].attn``), kind "self"."""
    blocks = list(getattr(model, "blocks", []))
    if not blocks:
        raise ValueNormsUnsupported(f"{type(model).__name__} has no .blocks")
    return [_site(i, block) for i, block in enumerate(blocks)]


def _site(index: int, block: nn.Module) -> ValueSite:
    attn = getattr(block, "attn", None)
    qkv, proj = getattr(attn, "qkv", None), getattr(attn, "proj", None)
    name = type(attn).__name__
    if not isinstance(qkv, nn.Linear) or not isinstance(proj, nn.Linear):
        raise ValueNormsUnsupported(f"block {index}: {name} has no plain qkv / proj linear layers")
    if getattr(attn, "q_bias", None) is not None or getattr(attn, "v_bias", None) is not None:
        raise ValueNormsUnsupported(f"block {index}: {name} keeps its value bias outside qkv")
    if not isinstance(getattr(attn, "norm", nn.Identity()), nn.Identity):
        raise ValueNormsUnsupported(f"block {index}: {name} normalises the heads' output before proj")
    if getattr(attn, "gate", None) is not None:
        raise ValueNormsUnsupported(f"block {index}: {name} gates each query's output before proj")
    n_heads = int(attn.num_heads)
    width = proj.in_features  # H * d
    if qkv.out_features != 3 * width:
        raise ValueNormsUnsupported(f"block {index}: qkv gives {qkv.out_features} features, not 3 x {width}")
    ls1 = getattr(block, "ls1", nn.Identity())
    if not isinstance(ls1, nn.Identity) and not isinstance(getattr(ls1, "gamma", None), nn.Parameter):
        raise ValueNormsUnsupported(f"block {index}: ls1 is {type(ls1).__name__}, not a LayerScale")

    def gamma():
        return None if isinstance(ls1, nn.Identity) else ls1.gamma

    return ValueSite(
        kind="self",
        layer=index,
        module=qkv,
        n_heads=n_heads,
        values=lambda out: out[..., 2 * width :],  # (B, N, H * d): v, the last third of qkv
        w_o=lambda: proj.weight,  # (D, H * d)
        gamma=gamma,
    )


@contextmanager
def vision_norms_context(model: nn.Module, enabled: bool = True) -> Iterator[ValueNormRecord | None]:
    """:func:`models.value_norms.record_value_norms` on the model's sites, or None (yielded) when disabled or
    the architecture is unsupported (the analysis then has no value norms)."""
    sites = None
    if enabled:
        try:
            sites = vision_value_sites(model)
        except ValueNormsUnsupported:
            sites = None
    if sites is None:
        yield None
        return
    with record_value_norms(sites) as record:
        yield record
