"""The neuron view (bertviz's): for one layer, head and query token, every step from q and k to the softmax.

Scaled dot-product attention, "Attention Is All You Need" Section 3.2.1:

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V

For one query row i of one head this is, key by key: the query vector q_i and the key vectors k_j (both
d_k long), their elementwise product q_i ⊙ k_j (whose sum is the dot product q_i · k_j), the scaled score
q_i · k_j / sqrt(d_k), and the softmax over the keys the mask allows. The paper's footnote 4 explains the
scaling: for q, k with independent unit-variance components, q · k has variance d_k.

q and k are not stored by the attention capture (it keeps only the probabilities), so
:func:`capture_qk` runs one more forward with hooks on the q/k projections of one layer (the module
outputs, before any reshape or scaling) and returns every head of that layer. :func:`neuron_row`
recomputes one row of the softmax from them in float64 with the mask and scaling the model itself uses:

- the paper Transformer (``models/transformer.py``, our date model) divides q by sqrt(d_k) *before* the
  product (``(query / sqrt(d_k)) @ key^T``), and masks padding keys (and future keys in the decoder);
- Hugging Face BERT, GPT-2 and Marian multiply the product by ``module.scaling`` = d_k^-1/2 and add the
  attention mask (causal for GPT-2 and the Marian decoder; padding from ``attention_mask``).

Both are the same number in exact arithmetic; :func:`row_tolerance` bounds the float32 rounding the
model's own computation can add, so a test can assert the recomputed softmax equals the captured one.
Framework-free (no FastAPI, no app imports): a notebook can call everything here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from models.transformer import Transformer

ScaleWhere = Literal["query", "scores"]
EPS32 = float(np.finfo(np.float32).eps)  # 2^-23: float32 rounding level (unit roundoff is half of it)


class _Captured(Exception):
    """Raised by the hook once q and k are in hand: the rest of the forward is not needed."""


class NeuronUnsupported(ValueError):
    """This model's attention cannot be taken apart into q and k here (unknown module layout)."""


@dataclass(frozen=True)
class LayerQK:
    """The queries and keys of every head of one attention layer, as the model computed them.

    q: (H, Tq, d_k) float32, k: (H, Tk, d_k) float32 (projection outputs, before any scaling).
    ``scale`` is the factor the model applies (1/sqrt(d_k) unless the model says otherwise) and
    ``scale_where`` where: ``"query"`` = q is divided before the product (paper Transformer),
    ``"scores"`` = the product is multiplied (Hugging Face eager attention).
    """

    q: np.ndarray
    k: np.ndarray
    scale: float
    scale_where: ScaleWhere

    @property
    def d_k(self) -> int:
        return int(self.q.shape[-1])

    @property
    def nbytes(self) -> int:
        return int(self.q.nbytes + self.k.nbytes)

    def head(self, h: int) -> LayerQK:
        """The same layer, one head: q (1, Tq, d_k), k (1, Tk, d_k)."""
        return LayerQK(self.q[h : h + 1].copy(), self.k[h : h + 1].copy(), self.scale, self.scale_where)


@dataclass(frozen=True)
class NeuronRow:
    """One query row of one head, every step of Section 3.2.1 (float64, computed from float32 q and k).

    q: (d_k,), k: (Tk, d_k), product = q ⊙ k: (Tk, d_k), dot = q · k: (Tk,), scaled = dot * scale: (Tk,),
    probs = softmax over the allowed keys: (Tk,) (masked keys exactly 0), allowed: (Tk,) bool.
    """

    q: np.ndarray
    k: np.ndarray
    product: np.ndarray
    dot: np.ndarray
    scaled: np.ndarray
    probs: np.ndarray
    allowed: np.ndarray
    scale: float


# ----------------------------------------------------------------------------- projections


@dataclass(frozen=True)
class _Projections:
    q: torch.nn.Module
    k: torch.nn.Module
    fused: bool  # GPT-2's c_attn: one (d, 3d) projection whose output splits into q, k, v
    n_heads: int
    scale: float
    scale_where: ScaleWhere


def _paper_projections(model: Transformer, kind: str, layer: int) -> _Projections:
    if kind == "encoder_self":
        mha = model.encoder.layers[layer].self_attn
    elif kind == "decoder_self":
        mha = model.decoder.layers[layer].self_attn
    else:
        mha = model.decoder.layers[layer].cross_attn
    return _Projections(mha.w_q, mha.w_k, False, mha.n_heads, 1.0 / math.sqrt(mha.d_k), "query")


def _hf_attention_module(model: torch.nn.Module, kind: str, layer: int) -> torch.nn.Module:
    base = getattr(model, "model", model)  # MarianMTModel -> MarianModel
    if hasattr(base, "h"):  # GPT-2: decoder-only, its self-attention is the "decoder_self" block
        if kind != "decoder_self":
            raise NeuronUnsupported(f"a decoder-only model has no {kind} attention")
        return base.h[layer].attn
    if kind == "encoder_self":
        enc = base.encoder
        if hasattr(enc, "layer"):  # BERT
            return enc.layer[layer].attention.self
        return enc.layers[layer].self_attn
    dec = base.decoder
    return dec.layers[layer].self_attn if kind == "decoder_self" else dec.layers[layer].encoder_attn


def _hf_projections(model: torch.nn.Module, kind: str, layer: int) -> _Projections:
    cfg = model.config
    if getattr(cfg, "position_embedding_type", "absolute") not in ("absolute", None):
        raise NeuronUnsupported(
            f"position_embedding_type={cfg.position_embedding_type!r} adds relative-position terms to q · k"
        )
    try:
        mod = _hf_attention_module(model, kind, layer)
    except (AttributeError, IndexError) as e:
        raise NeuronUnsupported(f"no {kind} attention module found at layer {layer}: {e}") from e
    heads = (
        getattr(mod, "num_attention_heads", None)
        or getattr(mod, "num_heads", None)
        or getattr(cfg, "num_attention_heads", None)
        or getattr(cfg, "n_head", None)
    )
    if hasattr(mod, "query") and hasattr(mod, "key"):
        q, k, fused = mod.query, mod.key, False
    elif hasattr(mod, "q_proj") and hasattr(mod, "k_proj"):
        q, k, fused = mod.q_proj, mod.k_proj, False
    elif hasattr(mod, "c_attn") and not getattr(mod, "is_cross_attention", False):
        q = k = mod.c_attn
        fused = True
    else:
        raise NeuronUnsupported(f"{type(mod).__name__} has no q/k projections this view knows")
    scale = getattr(mod, "scaling", None)
    if not isinstance(scale, float):
        raise NeuronUnsupported(f"{type(mod).__name__} does not expose its scaling factor")
    return _Projections(q, k, fused, int(heads), scale, "scores")


def projections(model: torch.nn.Module, kind: str, layer: int) -> _Projections:
    """The q/k projection modules of one attention layer, its head count and the scaling it applies."""
    if isinstance(model, Transformer):
        return _paper_projections(model, kind, layer)
    return _hf_projections(model, kind, layer)


def _split_heads(x: torch.Tensor, n_heads: int) -> np.ndarray:
    """(1, T, H * d_k) -> (H, T, d_k) float32 numpy."""
    _, T, D = x.shape
    return x[0].reshape(T, n_heads, D // n_heads).transpose(0, 1).float().cpu().numpy()  # (H, T, d_k)


@torch.inference_mode()
def capture_qk(
    model: torch.nn.Module,
    kind: str,
    layer: int,
    src_ids: list[int],
    dec_ids: list[int] | None = None,
    src_keep: list[bool] | None = None,
) -> LayerQK:
    """One forward with hooks on one layer's q/k projections: q (H, Tq, d_k) and k (H, Tk, d_k).

    ``model`` is the paper :class:`Transformer` (padding = ``cfg.pad_id`` in the ids) or a Hugging Face
    BERT / GPT-2 / Marian model; ``dec_ids`` is the decoder input of an encoder-decoder; ``src_keep``
    (HF only) becomes ``attention_mask`` (False = padding). The forward stops as soon as both projections
    have run (layers above this one are never computed); hooks are removed in ``finally``.
    """
    if isinstance(model, Transformer) and kind != "encoder_self" and dec_ids is None:
        raise ValueError(f"{kind} attention needs the decoder ids")
    proj = projections(model, kind, layer)
    seen: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def fn(_m: torch.nn.Module, _inp: Any, out: torch.Tensor) -> None:
            seen.setdefault(name, out.detach())  # the first call is this forward's (no cache re-entry)
            if "q" in seen and ("k" in seen or proj.fused):
                raise _Captured

        return fn

    handles = [proj.q.register_forward_hook(hook("q"))]
    if not proj.fused:
        handles.append(proj.k.register_forward_hook(hook("k")))
    device = next(model.parameters()).device
    src = torch.tensor([src_ids], device=device)  # (1, Ts)
    try:
        if isinstance(model, Transformer):
            if dec_ids is None:
                model.encode(src, need_weights=False)
            else:
                model(src, torch.tensor([dec_ids], device=device), need_weights=False)  # (1, Tt)
        else:
            mask = torch.ones_like(src) if src_keep is None else torch.tensor([src_keep], device=device)
            kwargs: dict[str, Any] = {"input_ids": src, "attention_mask": mask.long()}
            if dec_ids is not None:
                kwargs["decoder_input_ids"] = torch.tensor([dec_ids], device=device)  # (1, Tt)
            model(**kwargs)
    except _Captured:
        pass
    finally:
        for h in handles:
            h.remove()
    if "q" not in seen or ("k" not in seen and not proj.fused):
        raise NeuronUnsupported(f"the {kind} projections of layer {layer} did not run in the forward pass")
    if proj.fused:  # GPT-2: (1, T, 3 * d) = [q | k | v]
        q_out, k_out, _ = seen["q"].chunk(3, dim=-1)  # each (1, T, d)
    else:
        q_out, k_out = seen["q"], seen["k"]
    return LayerQK(
        _split_heads(q_out, proj.n_heads), _split_heads(k_out, proj.n_heads), proj.scale, proj.scale_where
    )


def key_keep(
    model: torch.nn.Module, kind: str, src_ids: list[int], dec_ids: list[int] | None = None
) -> list[bool] | None:
    """(Tk,) False where the model masks a key as padding, None when it masks none.

    The paper Transformer masks every ``cfg.pad_id`` in the ids (source keys for encoder self and cross
    attention, decoder keys for decoder self-attention): a random or badly trained model can emit the pad
    id as a token, and then it is masked. The Hugging Face models here are run with an all-ones
    ``attention_mask`` and no decoder mask, so they mask no key as padding.
    """
    if not isinstance(model, Transformer):
        return None
    ids = dec_ids if kind == "decoder_self" else src_ids
    if ids is None:
        raise ValueError("decoder self-attention needs the decoder ids")
    keep = [i != model.cfg.pad_id for i in ids]
    return None if all(keep) else keep


def allowed_keys(query: int, n_keys: int, causal: bool, key_keep: list[bool] | None = None) -> np.ndarray:
    """(Tk,) bool: the keys query row ``query`` may attend to (causal: keys <= query; minus padding)."""
    allowed = np.ones(n_keys, dtype=bool)  # (Tk,)
    if causal:
        allowed[query + 1 :] = False
    if key_keep is not None:
        allowed &= np.asarray(key_keep, dtype=bool)
    return allowed


def neuron_row(qk: LayerQK, head: int, query: int, allowed: np.ndarray) -> NeuronRow:
    """Every step of Section 3.2.1 for one (head, query) in float64 from the model's float32 q and k.

    Masked keys get probability exactly 0 (the model's -inf / large negative mask); a row with no allowed
    key gets all zeros (as ``models.transformer.attention`` does).
    """
    q = qk.q[head, query].astype(np.float64)  # (d_k,)
    k = qk.k[head].astype(np.float64)  # (Tk, d_k)
    product = k * q[None, :]  # (Tk, d_k): q ⊙ k_j per key
    dot = product.sum(axis=1)  # (Tk,)
    scaled = dot * qk.scale  # (Tk,)
    probs = np.zeros_like(scaled)  # (Tk,)
    if allowed.any():
        s = scaled[allowed]
        e = np.exp(s - s.max())
        probs[allowed] = e / e.sum()
    return NeuronRow(q, k, product, dot, scaled, probs, allowed, qk.scale)


def row_tolerance(row: NeuronRow, margin: float = 4.0) -> float:
    """Largest |softmax difference| float32 rounding in the model can explain for this row.

    A float32 dot product of length d_k is off by at most about d_k * u * sum_i |q_i k_i| (u = eps/2, the
    classic bound gamma_d), scaled by ``scale``; a softmax probability moves by at most twice the largest
    score error, plus a few roundings of the exp / sum / divide. So the bound is
        margin * eps32 * (d_k * max_j sum_i |q_i k_ji| * scale + 1 + d_k),
    with ``margin`` (default 4) covering the scaling step, the mask addition and the exp's own error.
    """
    d_k = int(row.q.shape[0])
    spread = float(np.abs(row.product).sum(axis=1).max()) * abs(row.scale) if row.product.size else 0.0
    return margin * EPS32 * (d_k * spread + 1.0 + d_k)
