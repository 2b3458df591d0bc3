"""Attention rollout (Abnar & Zuidema 2020), as used for the ViT paper's Figure 6.

Convention (see shared anchors): fuse heads (mean, max or min); optionally zero the smallest
``discard_ratio`` share of entries, never those in a prefix-token (CLS) row or column; add the identity
for the residual connection (A + I); renormalise every ROW to sum 1; multiply from the first layer up,
R = Ã_L ... Ã_1. The map of the image is R[CLS, patches] (or the mean over patch rows when the model
has no CLS token).
"""

from __future__ import annotations

from typing import Literal

import torch

HeadFusion = Literal["mean", "max", "min"]


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


def rollout_matrix(
    attentions: torch.Tensor,
    head_fusion: HeadFusion = "mean",
    discard_ratio: float = 0.0,
    num_prefix_tokens: int = 1,
) -> torch.Tensor:
    """Full rollout R = Ã_L ... Ã_1 from attentions of shape (L, H, N, N); returns (N, N) float32."""
    if attentions.dim() != 4:
        raise ValueError(f"expected (L, H, N, N) attentions, got shape {tuple(attentions.shape)}")
    n = attentions.shape[-1]
    eye = torch.eye(n, dtype=torch.float32, device=attentions.device)
    result = eye.clone()
    for layer in attentions.float():
        a = fuse_heads(layer, head_fusion)  # (N, N)
        a = discard_smallest(a, discard_ratio, num_prefix_tokens)
        a = a + eye
        a = a / a.sum(dim=-1, keepdim=True)
        result = a @ result
    return result


def attention_rollout(
    attentions: torch.Tensor,
    head_fusion: HeadFusion = "mean",
    discard_ratio: float = 0.0,
    num_prefix_tokens: int = 1,
) -> torch.Tensor:
    """Rollout map over patches, shape (P,): R[CLS, patches], or mean over patch rows with no CLS."""
    r = rollout_matrix(attentions, head_fusion, discard_ratio, num_prefix_tokens)
    if num_prefix_tokens > 0:
        return r[0, num_prefix_tokens:]
    return r.mean(dim=0)
