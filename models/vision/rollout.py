"""Attention rollout (Abnar & Zuidema 2020), as used for the ViT paper's Figure 6.

Convention (see shared anchors): fuse heads (mean, max or min); optionally zero the smallest
``discard_ratio`` share of entries, never those in a prefix-token (CLS) row or column; add the identity
for the residual connection (A + I); renormalise every ROW to sum 1; multiply from the first layer up,
R = Ã_L ... Ã_1. The map of the image is R[CLS, patches], or, when the model has no CLS token, the mean
over patch rows of R[patches, patches]. A model may have prefix tokens and still no CLS (register tokens
only, Darcet et al. 2024): then row 0 is a register, not a summary of the image, so ``has_cls=False`` must be
passed and the patch rows are averaged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch

HeadFusion = Literal["mean", "max", "min"]
Attentions = torch.Tensor | Sequence[torch.Tensor]  # (L, H, N, N), or L tensors of (H, N, N)


def fuse_heads(attn: torch.Tensor, head_fusion: HeadFusion = "mean") -> torch.Tensor:
    """(..., H, N, N) -> (..., N, N)."""
    if head_fusion == "mean":
        return attn.mean(dim=-3)
    if head_fusion == "max":
        return attn.amax(dim=-3)
    if head_fusion == "min":
        return attn.amin(dim=-3)
    raise ValueError(f"head_fusion must be mean, max or min, not {head_fusion!r}")


def discard_smallest(fused: torch.Tensor, ratio: float, num_prefix_tokens: int) -> torch.Tensor:
    """Zero the smallest ``ratio`` share of patch-to-patch entries of an (N, N) map."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), not {ratio}")
    if ratio == 0.0:
        return fused
    out = fused.clone()
    body = out[num_prefix_tokens:, num_prefix_tokens:]  # (P, P) view: prefix rows/cols untouched
    flat = body.reshape(-1)  # (P*P,)
    k = int(flat.numel() * ratio)
    if k > 0:
        idx = flat.topk(k, largest=False).indices
        flat = flat.clone()
        flat[idx] = 0
        out[num_prefix_tokens:, num_prefix_tokens:] = flat.view_as(body)
    return out


def residual_layer(
    layer: torch.Tensor, head_fusion: HeadFusion, discard_ratio: float, num_prefix_tokens: int
) -> torch.Tensor:
    """One layer's Ã = rownorm(fuse(A) (with discards) + I): (H, N, N) -> (N, N) float32."""
    if layer.dim() != 3:
        raise ValueError("expected (L, H, N, N) attentions: a tensor or a sequence of (H, N, N) tensors")
    a = fuse_heads(layer.float(), head_fusion)  # (N, N)
    a = discard_smallest(a, discard_ratio, num_prefix_tokens)
    a = a + torch.eye(a.shape[-1], dtype=torch.float32, device=a.device)  # (N, N) the residual path
    return a / a.sum(dim=-1, keepdim=True)


def _residual_layers(
    attentions: Attentions, head_fusion: HeadFusion, discard_ratio: float, num_prefix_tokens: int
):
    """Yield Ã_l for l = 1..L (in the order given), float32, one layer at a time (each layer's shape checked by
    :func:`residual_layer`; a lazy sequence, such as ``VisionAnalysis.maps()``, makes one layer at a time)."""
    for layer in attentions:
        yield residual_layer(layer, head_fusion, discard_ratio, num_prefix_tokens)


def _query_rows(n: int, num_prefix_tokens: int, has_cls: bool, device: torch.device) -> torch.Tensor:
    """(N,) weights of the rows of R the map is read from: one-hot on [CLS] (token 0), or the mean over the
    patch rows (prefix rows get 0) when there is no CLS token, registers or not."""
    v = torch.zeros(n, dtype=torch.float32, device=device)  # (N,)
    if has_cls and num_prefix_tokens > 0:
        v[0] = 1.0
    else:
        v[num_prefix_tokens:] = 1.0 / (n - num_prefix_tokens)
    return v


def rollout_from_residuals(
    residuals: Sequence[torch.Tensor], num_prefix_tokens: int = 1, has_cls: bool = True
) -> torch.Tensor:
    """The map (P,) from the layers' Ã_1 .. Ã_L (each (N, N), bottom first), as v^T Ã_L ... Ã_1 from the
    top down, v the [CLS] row or the mean of the patch rows (see :func:`attention_rollout`)."""
    n = residuals[0].shape[-1]
    v = _query_rows(n, num_prefix_tokens, has_cls, residuals[0].device)  # (N,): the query row(s) of R
    for a in reversed(residuals):
        v = v @ a
    return v[num_prefix_tokens:]


def rollout_matrix(
    attentions: Attentions,
    head_fusion: HeadFusion = "mean",
    discard_ratio: float = 0.0,
    num_prefix_tokens: int = 1,
) -> torch.Tensor:
    """Full rollout R = Ã_L ... Ã_1 from attentions of shape (L, H, N, N); returns (N, N) float32."""
    n = attentions[0].shape[-1]
    result = torch.eye(n, dtype=torch.float32, device=attentions[0].device)
    for a in _residual_layers(attentions, head_fusion, discard_ratio, num_prefix_tokens):
        result = a @ result
    return result


def attention_rollout(
    attentions: Attentions,
    head_fusion: HeadFusion = "mean",
    discard_ratio: float = 0.0,
    num_prefix_tokens: int = 1,
    has_cls: bool = True,
) -> torch.Tensor:
    """Rollout map over patches, shape (P,): R[CLS, patches], or the mean over patch rows of
    R[patches, patches] when the model has no CLS (``has_cls=False``, or no prefix tokens at all).

    Only one row of R is needed, so it is computed as a row vector times the layers from the top down,
    v^T Ã_L ... Ã_1: O(L N^2) instead of the O(L N^3) of the full matrix (same numbers). Layers are taken
    one at a time (top first) in float32, so the extra memory is one layer's (H, N, N) float32 copy plus
    two (N, N) maps, whatever L and the cache's dtype.
    """
    n = attentions.shape[-1] if hasattr(attentions, "shape") else attentions[-1].shape[-1]
    device = attentions.device if hasattr(attentions, "device") else attentions[-1].device
    v = _query_rows(n, num_prefix_tokens, has_cls, device)  # (N,): the query row(s) of R
    top_down = (attentions[i] for i in reversed(range(len(attentions))))  # one layer at a time
    for a in _residual_layers(top_down, head_fusion, discard_ratio, num_prefix_tokens):
        v = v @ a
    return v[num_prefix_tokens:]
