"""The logit lens for the date decoder (the paper Transformer of ``models/transformer.py``).

Per stage: which output token would win if the generator read the residual stream there. Our model is
post-norm (Section 3.1: LayerNorm(x + Sublayer(x))): every sublayer ends in a LayerNorm and there is no
separate final norm, so the generator is applied directly to the output of ``norm_1`` (after masked
self-attention), ``norm_2`` (after cross-attention) and ``norm_3`` (after the FFN: the layer's output) of
each decoder layer, bias included. The last layer's ``norm_3`` stage is the model's own logits, exactly.
On the shipped checkpoint the generator's weight is the tied embedding matrix (Section 3.4).

Per head: what the head writes at each decoder position, read by the generator. Head h of a sublayer
writes o_h[t] = (sum_j alpha_tj (x_j W_V^h + b_V^h)) W_O^h, its slice of Concat(heads) W^O (Section 3.2.2;
b^O belongs to no head); its logit direction is o_h[t] W_gen^T (the generator's weight, without its bias).
The largest entries are the tokens the head promotes, the smallest those it suppresses. This is a
direction, not an effect: the LayerNorm right after the sublayer re-centres and rescales the sum, and every
later sublayer acts on it (ablation measures the effect).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from models.transformer import Transformer

STAGES = ("self", "cross", "ffn")  # norm_1, norm_2, norm_3 of each decoder layer
HEAD_BLOCKS = ("decoder_self", "cross")


@dataclass(frozen=True)
class LogitLens:
    """Logit lens of one (text, decoder input) pair. L decoder layers, S = 3 L stages, Tt decoder positions."""

    stages: list[tuple[int, str]]  # S x (layer, "self" | "cross" | "ffn")
    top_ids: np.ndarray  # (S, Tt) int64: the winning token at each stage and position
    top_prob: np.ndarray  # (S, Tt) float32: its probability there
    final_ids: np.ndarray  # (Tt,) int64: the model's own prediction (the last stage's winner)
    final_prob: np.ndarray  # (S, Tt) float32: the probability of the model's prediction at each stage
    head_promote: np.ndarray  # (2, L, H, Tt, k) int64: top-k tokens of o_h[t] W_gen^T (blocks HEAD_BLOCKS)
    head_promote_logit: np.ndarray  # (2, L, H, Tt, k) float32: their logit contributions
    head_suppress: np.ndarray  # (2, L, H, Tt, k) int64: bottom-k tokens (most negative first)
    head_suppress_logit: np.ndarray  # (2, L, H, Tt, k) float32


def head_outputs(ctx: Tensor, w_o: Tensor, n_heads: int) -> Tensor:
    """Per-head writes: ctx (Tt, H * d_k) (W^O's input), w_o (d_model, H * d_k) -> (H, Tt, d_model)."""
    tt, hd = ctx.shape
    d_k = hd // n_heads
    c = ctx.view(tt, n_heads, d_k).transpose(0, 1)  # (H, Tt, d_k)
    w = w_o.view(w_o.shape[0], n_heads, d_k).permute(1, 2, 0)  # (H, d_k, d_model)
    return c @ w  # (H, Tt, d_model)


@torch.inference_mode()
def logit_lens(model: Transformer, src_ids: Tensor, tgt_ids: Tensor, k: int = 3) -> LogitLens:
    """The lens for one source (Ts,) and decoder input (Tt,) (``<s>`` + the output so far), in eval mode.

    Runs one teacher-forced forward with hooks on each decoder layer's norms and output projections."""
    if src_ids.dim() != 1 or tgt_ids.dim() != 1:
        raise ValueError("logit_lens takes one unbatched source and decoder input")
    layers = model.decoder.layers
    normed: dict[tuple[int, str], Tensor] = {}
    ctx: dict[tuple[int, str], Tensor] = {}
    handles = []

    def keep_out(key: tuple[int, str]):
        return lambda _m, _a, out: normed.__setitem__(key, out[0].detach())  # (Tt, d_model)

    def keep_in(key: tuple[int, str]):
        return lambda _m, args: ctx.__setitem__(key, args[0][0].detach())  # (Tt, H * d_k)

    for i, lay in enumerate(layers):
        for stage, norm in zip(STAGES, (lay.norm_1, lay.norm_2, lay.norm_3), strict=True):
            handles.append(norm.register_forward_hook(keep_out((i, stage))))
        handles.append(lay.self_attn.w_o.register_forward_pre_hook(keep_in((i, "decoder_self"))))
        handles.append(lay.cross_attn.w_o.register_forward_pre_hook(keep_in((i, "cross"))))
    was_training = model.training
    model.eval()
    try:
        logits, _ = model(src_ids[None], tgt_ids[None], need_weights=False)  # (1, Tt, V)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    stages = [(i, s) for i in range(len(layers)) for s in STAGES]
    lens = torch.stack([model.generator(normed[st]) for st in stages]).float()  # (S, Tt, V)
    probs = lens.softmax(-1)  # (S, Tt, V)
    top_prob, top_ids = probs.max(-1)  # (S, Tt)
    final_ids = logits[0].argmax(-1)  # (Tt,)
    final_prob = probs.gather(-1, final_ids.expand(len(stages), -1)[..., None])[..., 0]  # (S, Tt)
    w_gen = model.generator.weight  # (V, d_model)
    per_block = []
    for block in HEAD_BLOCKS:
        per_layer = []
        for i, lay in enumerate(layers):
            mha = lay.self_attn if block == "decoder_self" else lay.cross_attn
            per_layer.append(
                head_outputs(ctx[(i, block)], mha.w_o.weight, mha.n_heads) @ w_gen.T
            )  # (H, Tt, V)
        per_block.append(torch.stack(per_layer))  # (L, H, Tt, V)
    direct = torch.stack(per_block).float()  # (2, L, H, Tt, V)
    kk = min(k, direct.shape[-1])
    up = direct.topk(kk, dim=-1)
    down = direct.topk(kk, dim=-1, largest=False)
    return LogitLens(
        stages=stages,
        top_ids=top_ids.cpu().numpy(),
        top_prob=top_prob.cpu().numpy(),
        final_ids=final_ids.cpu().numpy(),
        final_prob=final_prob.cpu().numpy(),
        head_promote=up.indices.cpu().numpy(),
        head_promote_logit=up.values.cpu().numpy(),
        head_suppress=down.indices.cpu().numpy(),
        head_suppress_logit=down.values.cpu().numpy(),
    )
