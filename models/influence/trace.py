"""Record every attention layer of one forward pass in the form the influence measures read.

An attention *block* here is the attention sublayer with its residual (and, post-LN, its LayerNorm):

- post-LN (BERT, the paper Transformer, Section 3.1): ``y_i = LN(x_i + sum_h sum_j A_h[i,j] f_h(x_j) + b_O)``;
- pre-LN with LayerScale (timm ViT, DINOv2): ``y_i = x_i + g * (sum_h sum_j A_h[i,j] f_h(LN1(x_j)) + b_O)``;

with f_h(x) = (x W_V^h + b_V^h) W_O^h the head's value vector through its slice of the output projection
(Kobayashi et al. 2020, eq. 5). :class:`AttnLayer` holds x, the (H, T, d) vectors f_h, the (H, T, T)
probabilities and the block's real output y, read from the model by hooks, so a test can check that the
parts add up to the output the model computed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from torch import Tensor, nn


@dataclass
class AttnLayer:
    """One attention block of one input (batch 1). Tensors may keep their autograd graph."""

    x: Tensor  # (T, d) the residual stream entering the block (query side)
    values: Tensor  # (H, Tk, d) f_h(x_j): each head's value vector through W_O^h (no b_O)
    probs: Tensor  # (H, T, Tk) attention probabilities
    out: Tensor  # (T, d) the block's real output (after its LayerNorm when post-LN)
    out_bias: Tensor  # (d,) b_O
    scale: Tensor | None = None  # (d,) LayerScale gamma (pre-LN ViTs), None = 1
    ln: nn.LayerNorm | None = None  # post-LN: the LayerNorm after the residual sum
    graph: Tensor | None = None  # (1, H, T, Tk): the probabilities as the model used them (for gradients)

    @property
    def post_ln(self) -> bool:
        return self.ln is not None


def head_values(v: Tensor, w_o: Tensor, n_heads: int) -> Tensor:
    """v (T, d) value vectors (with b_V), w_o (d, d) the output projection's weight -> (H, T, d) f_h."""
    T, d = v.shape
    dh = d // n_heads
    v = v.view(T, n_heads, dh).transpose(0, 1)  # (H, T, dh)
    w = w_o.view(d, n_heads, dh).permute(1, 2, 0)  # (H, dh, d): W_O^h as a right factor
    return v @ w  # (H, T, d)


@contextmanager
def _hooks(pairs: list[tuple[nn.Module, Callable]], pre: bool = False) -> Iterator[None]:
    handles = [
        (
            m.register_forward_pre_hook(f, with_kwargs=True)
            if pre
            else m.register_forward_hook(f, with_kwargs=True)
        )
        for m, f in pairs
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


# ----------------------------------------------------------------------------------- timm ViT (pre-LN)


def trace_vit(model: nn.Module, x: Tensor, values: bool = True) -> tuple[list[AttnLayer], Tensor]:
    """timm ViT-family model, input (1, 3, R, R) -> (one AttnLayer per block, final features (N, d) after the
    model's last norm). Runs ``forward_features`` with grad enabled when the caller enables it. ``values``
    False leaves ``AttnLayer.values`` empty (relevancy needs only the probabilities)."""
    blocks = list(model.blocks)
    rec: list[dict] = [{} for _ in blocks]

    def block_in(i: int):
        def hook(_m, args, kwargs):
            rec[i]["x"] = args[0][0]  # (N, d)

        return hook

    def attn_in(i: int):
        def hook(_m, args, kwargs):
            rec[i]["ln_x"] = args[0][0]  # (N, d) LN1(x)

        return hook

    def attn_out(i: int):
        def hook(_m, args, kwargs, out):
            rec[i]["attn"] = out[0]  # (N, d) the attention sublayer's real output (with b_O)

        return hook

    def probs_out(i: int):
        def hook(_m, args, kwargs, out):
            rec[i]["graph"] = out  # (1, H, N, N), the tensor the block multiplies with v

        return hook

    saved = [(b.attn, getattr(b.attn, "fused_attn", None)) for b in blocks]
    for b in blocks:
        if hasattr(b.attn, "fused_attn"):
            b.attn.fused_attn = False  # the probabilities exist only on the manual path
    try:
        with (
            _hooks([(b, block_in(i)) for i, b in enumerate(blocks)], pre=True),
            _hooks([(b.attn, attn_in(i)) for i, b in enumerate(blocks)], pre=True),
            _hooks([(b.attn.attn_drop, probs_out(i)) for i, b in enumerate(blocks)]),
            _hooks([(b.attn, attn_out(i)) for i, b in enumerate(blocks)]),
        ):
            feats = model.forward_features(x)[0]  # (N, d)
    finally:
        for attn, fused in saved:
            if fused is not None:
                attn.fused_attn = fused
    layers = []
    for b, r in zip(blocks, rec, strict=True):
        attn = b.attn
        d = r["x"].shape[-1]
        w_v, b_v = attn.qkv.weight[2 * d :], attn.qkv.bias[2 * d :] if attn.qkv.bias is not None else None
        v = nn.functional.linear(r["ln_x"], w_v, b_v) if values else None  # (N, d)
        gamma = getattr(b.ls1, "gamma", None) if hasattr(b, "ls1") else None
        # the block's output after the attention sublayer only: x + ls1(attn(norm1(x)))
        out = r["x"] + (gamma * r["attn"] if gamma is not None else r["attn"])
        layers.append(
            AttnLayer(
                x=r["x"],
                values=head_values(v, attn.proj.weight, attn.num_heads) if values else r["x"].new_empty(0),
                probs=r["graph"][0],
                out=out,
                out_bias=attn.proj.bias,
                scale=gamma,
                graph=r["graph"],
            )
        )
    return layers, feats


# ------------------------------------------------------------------------- post-LN encoders (BERT, paper)


@dataclass(frozen=True)
class PostLNParts:
    """Where one post-LN encoder layer keeps its attention pieces."""

    attn: nn.Module  # called with the block input as its first argument; returns (out, probs, ...)
    value: Callable[[Tensor], Tensor]  # (T, d) block input -> (T, d) value vectors (with b_V)
    out_proj: nn.Linear  # W_O, b_O
    ln_module: nn.LayerNorm  # the LayerNorm after the residual sum; its output is the block's output
    n_heads: int


def bert_parts(model: nn.Module) -> list[PostLNParts]:
    """A Hugging Face BERT-family encoder (``model.encoder.layer``)."""
    return [
        PostLNParts(
            L.attention.self,
            L.attention.self.value,
            L.attention.output.dense,
            L.attention.output.LayerNorm,
            model.config.num_attention_heads,
        )
        for L in model.encoder.layer
    ]


def paper_encoder_parts(model: nn.Module) -> list[PostLNParts]:
    """The paper Transformer's encoder (``models/transformer.py``)."""
    return [
        PostLNParts(L.self_attn, L.self_attn.w_v, L.self_attn.w_o, L.norm_1, L.self_attn.n_heads)
        for L in model.encoder.layers
    ]


def trace_post_ln(parts: list[PostLNParts], run: Callable[[], object]) -> list[AttnLayer]:
    """Run ``run()`` (one forward pass of batch 1) and read each post-LN attention block of ``parts``."""
    rec: list[dict] = [{} for _ in parts]

    def first_arg(args, kwargs) -> Tensor:
        return args[0] if args else kwargs.get("hidden_states", kwargs.get("query"))

    def attn_in(i: int):
        def hook(_m, args, kwargs):
            rec[i]["x"] = first_arg(args, kwargs)[0]  # (T, d)

        return hook

    def attn_out(i: int):
        def hook(_m, args, kwargs, out):
            rec[i]["graph"] = out[1]  # (1, H, T, T)

        return hook

    def ln_out(i: int):
        def hook(_m, args, kwargs, out):
            rec[i]["out"] = out[0]  # (T, d)

        return hook

    with (
        _hooks([(p.attn, attn_in(i)) for i, p in enumerate(parts)], pre=True),
        _hooks([(p.attn, attn_out(i)) for i, p in enumerate(parts)]),
        _hooks([(p.ln_module, ln_out(i)) for i, p in enumerate(parts)]),
    ):
        run()
    if any(r.get("graph") is None for r in rec):
        raise ValueError(
            "the attention modules returned no probabilities: run the model on its eager attention path"
        )
    return [
        AttnLayer(
            x=r["x"],
            values=head_values(p.value(r["x"]), p.out_proj.weight, p.n_heads),
            probs=r["graph"][0],
            out=r["out"],
            out_bias=p.out_proj.bias,
            ln=p.ln_module,
            graph=r["graph"],
        )
        for p, r in zip(parts, rec, strict=True)
    ]
