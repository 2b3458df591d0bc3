"""Gradient-weighted relevancy: Chefer, Gur and Wolf 2021, "Generic Attention-model Explainability for
Interpreting Bi-Modal and Encoder-Decoder Transformers" (ICCV), Section 3.

For each attention layer, Ā = E_h[(∇A ⊙ A)^+] (eq. 5): the attention map weighted by the gradient of the
target y with respect to it, positive part, mean over heads. Relevance maps start from the identity
(self-interactions, eq. 4) and zero (cross-interactions) and are updated layer by layer, input to output:

- self-attention over x (encoder, ViT), eq. 6:               R^{xx} <- R^{xx} + Ā R^{xx}
- decoder self-attention (t attends t), eq. 6-7:           R^{tt} <- R^{tt} + Ā R^{tt},  R^{ts} <- R^{ts} + Ā R^{ts}
- cross-attention (t attends the source s), eq. 10:        R^{ts} <- R^{ts} + (R̄^{tt})^T Ā R̄^{ss}

where R̄^{xx} = (R^{xx} - I) with rows normalised to sum 1, plus I (eq. 8-9: the self-relevance without the
identity's residual, normalised). Row i of R^{xx} (or R^{ts}) is the relevance of every input for output i.

The runners compute y and its gradients with respect to the recorded attention maps in one backward pass:
:func:`vit_relevance` (a token's final feature: its length along its own direction, the first-order term of
its cosine to the unperturbed feature), :func:`pair_relevance` (the cosine of two sentences' mean-pooled
embeddings, the second held fixed) and :func:`seq2seq_relevance` (the log-probability of one decoded token).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from models.influence.trace import bert_parts, trace_post_ln, trace_vit


def weighted_attention(A: Tensor, grad: Tensor) -> Tensor:
    """Eq. 5: (H, Tq, Tk) attention and its gradient -> (Tq, Tk) mean_h (grad * A)^+."""
    return (grad * A).clamp_min(0).mean(0)


def self_rule(R: Tensor, A_bar: Tensor) -> Tensor:
    """Eq. 6: R + Ā R."""
    return R + A_bar @ R


def normalized_self(R: Tensor) -> Tensor:
    """Eq. 8-9: R̄ = rownorm(R - I) + I; a row with no relevance beyond the identity stays the identity."""
    eye = torch.eye(R.shape[-1], dtype=R.dtype, device=R.device)
    hat = R - eye
    s = hat.sum(-1, keepdim=True)
    return torch.where(s > 0, hat / s.clamp_min(1e-30), torch.zeros_like(hat)) + eye


def self_relevance(probs: Sequence[Tensor], grads: Sequence[Tensor]) -> Tensor:
    """Self-attention layers in order: (H, T, T) maps and gradients -> R (T, T), from R = I."""
    T = probs[0].shape[-1]
    R = torch.eye(T, dtype=torch.float32, device=probs[0].device)
    for A, G in zip(probs, grads, strict=True):
        R = self_rule(R, weighted_attention(A.float(), G.float()))
    return R


@dataclass
class Seq2SeqRelevance:
    ss: Tensor  # (Ts, Ts) encoder self-relevance
    tt: Tensor  # (Tt, Tt) decoder self-relevance
    ts: Tensor  # (Tt, Ts) decoder-to-source relevance


def seq2seq_rules(
    enc: Sequence[tuple[Tensor, Tensor]], dec: Sequence[tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]]
) -> Seq2SeqRelevance:
    """enc: (A, grad) per encoder layer (H, Ts, Ts); dec: ((self A, grad), (cross A, grad)) per decoder layer."""
    Ts = enc[0][0].shape[-1]
    Tt = dec[0][0][0].shape[-1]
    ss = torch.eye(Ts)
    for A, G in enc:
        ss = self_rule(ss, weighted_attention(A.float(), G.float()))
    tt, ts = torch.eye(Tt), torch.zeros(Tt, Ts)
    ss_bar = normalized_self(ss)
    for (A, G), (C, GC) in dec:
        a = weighted_attention(A.float(), G.float())  # (Tt, Tt)
        tt, ts = tt + a @ tt, ts + a @ ts
        c = weighted_attention(C.float(), GC.float())  # (Tt, Ts)
        ts = ts + normalized_self(tt).T @ c @ ss_bar
    return Seq2SeqRelevance(ss, tt, ts)


# ----------------------------------------------------------------------------------------------- runners


def feature_target(f: Tensor) -> Tensor:
    """A feature's length along its own fixed direction, <f, sg(f)> / ||sg(f)||: its gradient is the unit
    direction of f, the first-order change of f along itself. (The cosine of f to its own unperturbed value is
    at its maximum there, so its gradient is zero and would give no relevance.)"""
    ref = f.detach()
    return (f * ref).sum() / ref.norm().clamp_min(1e-12)


def vit_relevance(model: nn.Module, x: Tensor, query: int = 0) -> tuple[Tensor, float]:
    """timm ViT, input (1, 3, R, R), ``query`` a token index (0 = [CLS]) -> (R (N, N), target value).
    The map of ``query`` is row ``query`` of R."""
    with torch.enable_grad():
        layers, feats = trace_vit(model, x, values=False)
        y = feature_target(feats[query])
        grads = [g[0] for g in torch.autograd.grad(y, [layer.graph for layer in layers])]
    return self_relevance([layer.probs.detach() for layer in layers], grads), float(y.detach())


def mean_pool(h: Tensor, keep: Tensor | None = None) -> Tensor:
    """(T, d) token states -> (d,) mean over the kept tokens (sentence-transformers' pooling)."""
    if keep is None:
        return h.mean(0)
    w = keep.to(h.dtype)[:, None]
    return (h * w).sum(0) / w.sum().clamp_min(1.0)


def pair_relevance(model: nn.Module, ids: Tensor, other: Tensor) -> tuple[Tensor, float]:
    """BERT-family encoder: ids (1, T) of the first sentence, ``other`` (d,) the second's pooled embedding
    -> (R (T, T), cosine). The embedding is the mean over tokens, so its map is the mean of R's rows."""
    with torch.enable_grad():
        out: dict = {}

        def run() -> None:
            out["h"] = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0]

        layers = trace_post_ln(bert_parts(model), run)
        y = torch.nn.functional.cosine_similarity(mean_pool(out["h"]), other.detach(), dim=0)
        grads = [g[0] for g in torch.autograd.grad(y, [layer.graph for layer in layers])]
    return self_relevance([layer.probs.detach() for layer in layers], grads), float(y.detach())


@torch.no_grad()
def sentence_embedding(model: nn.Module, ids: Tensor) -> Tensor:
    """(1, T) ids -> (d,) mean-pooled last hidden state."""
    return mean_pool(model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0])


def seq2seq_relevance(
    model: nn.Module, src: Tensor, tgt_in: Tensor, step: int, token: int
) -> tuple[Seq2SeqRelevance, float]:
    """The paper Transformer (models/transformer.py): src (1, Ts), decoder input tgt_in (1, Tt), target
    y = log p(token | src, tgt_in[:step + 1]) at decoder row ``step``."""
    rec: dict[str, list[Tensor]] = {"enc": [], "self": [], "cross": []}
    hooks = []

    def grab(name: str):
        def hook(_m, _args, out):
            rec[name].append(out[1])  # (1, H, Tq, Tk) as the model used it

        return hook

    for L in model.encoder.layers:
        hooks.append(L.self_attn.register_forward_hook(grab("enc")))
    for L in model.decoder.layers:
        hooks.append(L.self_attn.register_forward_hook(grab("self")))
        hooks.append(L.cross_attn.register_forward_hook(grab("cross")))
    try:
        with torch.enable_grad():
            logits, _ = model(src, tgt_in, need_weights=True)
            y = logits[0, step].log_softmax(-1)[token]
            maps = rec["enc"] + rec["self"] + rec["cross"]
            grads = [g[0] for g in torch.autograd.grad(y, maps)]
    finally:
        for h in hooks:
            h.remove()
    n_enc, n_dec = len(rec["enc"]), len(rec["self"])
    g_enc, g_self, g_cross = grads[:n_enc], grads[n_enc : n_enc + n_dec], grads[n_enc + n_dec :]
    enc = [(a[0].detach(), g) for a, g in zip(rec["enc"], g_enc, strict=True)]
    dec = [
        ((a[0].detach(), g), (c[0].detach(), gc))
        for a, g, c, gc in zip(rec["self"], g_self, rec["cross"], g_cross, strict=True)
    ]
    return seq2seq_rules(enc, dec), float(y.detach())
