"""Contributions of every input token to every output token of an attention block, and their rollout:
ALTI (Ferrando, Gállego and Costa-jussà 2022, "Measuring the Mixing of Contextual Information in the
Transformer", EMNLP, Section 3).

The block's output for token i is decomposed into one *transformed vector* per input token j
(Section 3.1, eq. 5-8): T_i(x_j) = sum_h A_h[i,j] f_h(x_j), plus x_i itself for j = i (the residual), passed
through the LayerNorm's linear part when the block is post-LN (the LN's variance is the whole sum's, so the
parts add up: y_i = sum_j T_i(x_j) + L_i(b_O) + beta). LayerScale (DINOv2) multiplies the attention parts.
The contribution of j to i (Section 3.2, eq. 9-10) is how close the part is to the whole, in L1:

    d_ij = max(0, ||y_i||_1 - ||y_i - T_i(x_j)||_1),    c_ij = d_ij / sum_k d_ik.

The MLP acts on each token alone and mixes nothing, so contributions compose across layers like rollout
(Section 3.3): R = C_L ... C_1, without adding the identity (the residual is one of the parts already).
"""

from __future__ import annotations

import torch
from torch import Tensor

from models.influence.trace import AttnLayer

CHUNK_BYTES = 32 * 2**20  # float32 bytes of the (rows, Tk, d) parts held at once


def _ln_linear(layer: AttnLayer, z: Tensor, whole_pre: Tensor) -> Tensor:
    """The post-LN's linear part L_i applied to parts z (I, Tk, d), with sigma_i from whole_pre (I, d)."""
    ln = layer.ln
    sigma = (whole_pre.var(-1, unbiased=False, keepdim=True) + ln.eps).sqrt()  # (I, 1)
    w = ln.weight if ln.weight is not None else 1.0
    return w * (z - z.mean(-1, keepdim=True)) / sigma[:, None, :]  # (I, Tk, d)


def transformed_vectors(layer: AttnLayer, rows: slice | None = None) -> Tensor:
    """(I, Tk, d) T_i(x_j) for the query rows ``rows`` (default: all), in float32."""
    rows = rows or slice(None)
    A = layer.probs[:, rows].float()  # (H, I, Tk)
    F = layer.values.float()  # (H, Tk, d)
    z = A[0, :, :, None] * F[0]  # (I, Tk, d): sum_h A_h[i,j] f_h(x_j), one head at a time, in place
    for h in range(1, A.shape[0]):  # (an einsum over h may broadcast to (H, I, Tk, d) first: 3-10x slower)
        z.addcmul_(A[h, :, :, None], F[h])
    if layer.scale is not None:
        z = z * layer.scale.float()
    x = layer.x.float()
    idx = torch.arange(x.shape[0], device=x.device)[rows]  # the rows' own positions: the residual parts
    n_rows = idx.numel()
    if z.shape[1] == x.shape[0]:  # self-attention: the residual joins token i's own part
        z[torch.arange(n_rows), idx] += x[idx]
    if layer.post_ln:
        whole_pre = z.sum(1) + layer.out_bias.float()  # (I, d) x_i + attention output, before the LN
        z = _ln_linear(layer, z, whole_pre)
    return z


def contributions(layer: AttnLayer) -> Tensor:
    """(T, Tk) float32 contributions c_ij of ALTI (rows sum to 1), computed in row chunks."""
    T, Tk = layer.probs.shape[1:]
    d = layer.x.shape[-1]
    step = max(1, CHUNK_BYTES // max(1, 4 * Tk * d))
    out = torch.empty(T, Tk, dtype=torch.float32, device=layer.x.device)
    y_all = layer.out.float()
    for s in range(0, T, step):
        rows = slice(s, min(T, s + step))
        parts = transformed_vectors(layer, rows)  # (I, Tk, d)
        y = y_all[rows]  # (I, d)
        dist = parts.sub_(y[:, None, :]).abs_().sum(-1)  # (I, Tk) ||y_i - T_i(x_j)||_1, in place
        d_ij = (y.abs().sum(-1, keepdim=True) - dist).clamp_min(0.0)  # (I, Tk)
        out[rows] = d_ij / d_ij.sum(-1, keepdim=True).clamp_min(1e-12)
    return out


@torch.no_grad()
def layer_contributions(layers: list[AttnLayer]) -> Tensor:
    """(L, T, T) float32: every layer's contribution matrix."""
    return torch.stack([contributions(layer) for layer in layers])


def contribution_rollout(C: Tensor) -> Tensor:
    """C (L, T, T) -> (L, T, T): R_l = C_l ... C_1, each layer's contributions of the *input* tokens."""
    out = torch.empty_like(C)
    R = torch.eye(C.shape[-1], dtype=C.dtype, device=C.device)
    for i in range(C.shape[0]):
        R = C[i] @ R
        out[i] = R
    return out
