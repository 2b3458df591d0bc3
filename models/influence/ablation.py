"""Head ablation (Michel et al. 2019, "Are Sixteen Heads Really Better than One?", Section 2; Voita et al.
2019): remove chosen heads from a forward pass and watch the output.

Where a head is cut. Multi-head attention is Concat(head_1..head_H) W^O + b^O (paper 1, Section 3.2.2); the
input of W^O is the per-head context, H slices of d_k features side by side. A forward pre-hook on the output
projection replaces head h's slice:

- ``zero``: by 0, so the sublayer outputs sum_{g != h} head_g W^O_g + b^O (Michel et al.'s mask xi_h = 0);
- ``mean``: by that head's mean context over every token of a reference set (:func:`head_means`), so the head
  still writes its average, input-independent, vector (mean-ablation).

The output projection is, per family (:func:`output_projections`):

- the paper Transformer (``models/transformer.py``): ``w_o`` of ``self_attn`` (encoder and decoder) and of
  ``cross_attn``;
- a timm ViT (DINOv2): ``blocks[i].attn.proj`` (its input is after ``attn.norm``, an Identity in DINOv2);
  LayerScale ``ls1`` multiplies the sublayer's output afterwards;
- a Hugging Face BERT-like encoder (MiniLM): ``encoder.layer[i].attention.output.dense``. transformers 5
  dropped ``head_mask``, so hooks on the per-head context are the one mechanism for every family.

Blocks are named as in :mod:`models.text.analysis`: ``encoder_self`` (also a ViT's and a BERT's
self-attention), ``decoder_self`` and ``cross``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

AblationMode = Literal["zero", "mean"]
HeadKey = tuple[str, int, int]  # (block, layer, head)
HeadMeans = dict[tuple[str, int], Tensor]  # (block, layer) -> (H, d_k) mean context per head


@dataclass(frozen=True)
class Projection:
    """One attention sublayer's output projection W^O and how its input splits into heads."""

    block: str
    layer: int
    module: nn.Linear
    n_heads: int

    @property
    def d_k(self) -> int:
        return self.module.in_features // self.n_heads


def output_projections(model: nn.Module) -> list[Projection]:
    """Every attention sublayer's W^O in ``model`` (see the module docstring); ValueError when unknown."""
    from models.transformer import Transformer

    if isinstance(model, Transformer):
        h = model.cfg.n_heads
        out = [
            Projection("encoder_self", i, lay.self_attn.w_o, h) for i, lay in enumerate(model.encoder.layers)
        ]
        for i, lay in enumerate(model.decoder.layers):
            out.append(Projection("decoder_self", i, lay.self_attn.w_o, h))
            out.append(Projection("cross", i, lay.cross_attn.w_o, h))
        return out
    blocks = getattr(model, "blocks", None)
    if blocks is not None and all(hasattr(b, "attn") for b in blocks):  # timm ViT family
        return [
            Projection("encoder_self", i, b.attn.proj, int(b.attn.num_heads)) for i, b in enumerate(blocks)
        ]
    encoder = getattr(model, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if layers is not None:  # Hugging Face BERT-like (BertModel, RobertaModel, ...)
        h = int(model.config.num_attention_heads)
        return [Projection("encoder_self", i, lay.attention.output.dense, h) for i, lay in enumerate(layers)]
    raise ValueError(f"head ablation does not know where the heads of a {type(model).__name__} are")


def head_grid(model: nn.Module) -> dict[str, tuple[int, int]]:
    """block -> (layers, heads) of ``model``, in the order of :func:`output_projections`."""
    grid: dict[str, tuple[int, int]] = {}
    for p in output_projections(model):
        layers, _ = grid.get(p.block, (0, p.n_heads))
        grid[p.block] = (max(layers, p.layer + 1), p.n_heads)
    return grid


def all_heads(model: nn.Module) -> list[HeadKey]:
    """Every (block, layer, head) of ``model``."""
    return [(p.block, p.layer, h) for p in output_projections(model) for h in range(p.n_heads)]


def _group(projs: list[Projection], heads: Iterable[HeadKey]) -> dict[tuple[str, int], list[int]]:
    """(block, layer) -> sorted heads to cut; ValueError naming a head the model does not have."""
    known = {(p.block, p.layer): p.n_heads for p in projs}
    out: dict[tuple[str, int], set[int]] = {}
    for block, layer, head in heads:
        n = known.get((block, int(layer)))
        if n is None or not 0 <= int(head) < n:
            raise ValueError(f"the model has no head {head} in layer {layer} of {block!r}")
        out.setdefault((block, int(layer)), set()).add(int(head))
    return {k: sorted(v) for k, v in out.items()}


def _replace_hook(heads: list[int], n_heads: int, fill: Tensor | None) -> Callable:
    """A forward pre-hook that overwrites ``heads``' slices of W^O's input with 0 (``fill`` None) or with
    ``fill`` (H, d_k). With no heads it returns None: the input goes through untouched."""

    def hook(_module: nn.Module, args: tuple) -> tuple | None:
        if not heads:
            return None
        x = args[0].clone()  # (..., H * d_k); never write into the caller's tensor
        view = x.view(*x.shape[:-1], n_heads, x.shape[-1] // n_heads)  # (..., H, d_k)
        if fill is None:
            view[..., heads, :] = 0
        else:
            view[..., heads, :] = fill[heads].to(x.device, x.dtype)
        return (x, *args[1:])

    return hook


@contextlib.contextmanager
def ablating(
    model: nn.Module, heads: Iterable[HeadKey], mode: AblationMode = "zero", means: HeadMeans | None = None
) -> Iterator[None]:
    """Within the block, every forward of ``model`` runs with ``heads`` cut (module docstring).

    A hook is installed on every output projection, also those with no head to cut (they return their input
    untouched), so "ablating nothing" runs the same hook path. ``mode="mean"`` needs ``means`` from
    :func:`head_means`. The hooks are removed on exit, also after an exception."""
    if mode not in ("zero", "mean"):
        raise ValueError(f"ablation mode must be 'zero' or 'mean', not {mode!r}")
    projs = output_projections(model)
    cut = _group(projs, heads)
    if mode == "mean" and means is None and cut:
        raise ValueError("mean-ablation needs the heads' mean contexts (head_means)")
    handles = []
    try:
        for p in projs:
            hs = cut.get((p.block, p.layer), [])
            fill = None
            if mode == "mean" and hs:
                fill = means[(p.block, p.layer)]  # type: ignore[index]
            handles.append(p.module.register_forward_pre_hook(_replace_hook(hs, p.n_heads, fill)))
        yield
    finally:
        for handle in handles:
            handle.remove()


@torch.inference_mode()
def head_means(model: nn.Module, forwards: Iterable[Callable[[], object]]) -> HeadMeans:
    """Each head's mean context (the input slice of W^O) over every token of a reference set.

    ``forwards`` are callables that each run ``model`` once on unpadded inputs (one example, or a batch of
    equal lengths), so every position counted is a real token ([CLS], [SEP], registers and </s> included).
    Accumulated in float64. Returns (block, layer) -> (H, d_k) float32."""
    projs = output_projections(model)
    sums: dict[tuple[str, int], Tensor] = {}
    counts: dict[tuple[str, int], int] = {}
    handles = []

    def recorder(p: Projection) -> Callable:
        def hook(_module: nn.Module, args: tuple) -> None:
            x = args[0].detach().reshape(-1, p.n_heads, p.d_k).double()  # (tokens, H, d_k)
            key = (p.block, p.layer)
            sums[key] = sums.get(key, 0) + x.sum(0)
            counts[key] = counts.get(key, 0) + x.shape[0]

        return hook

    try:
        handles = [p.module.register_forward_pre_hook(recorder(p)) for p in projs]
        for run in forwards:
            run()
    finally:
        for handle in handles:
            handle.remove()
    if len(sums) != len(projs):
        raise ValueError("the reference forwards did not reach every attention sublayer")
    return {k: (s / counts[k]).float() for k, s in sums.items()}  # (H, d_k) each


def removing_attention(model: nn.Module, layers: Iterable[tuple[str, int]]) -> contextlib.ExitStack:
    """The reference the ablation tests compare with: each listed attention sublayer's output is replaced by
    its bias-only term, b^O, through a forward hook on the sublayer itself (not on W^O's input).

    What "the sublayer's output" is, per family: the paper Transformer's ``MultiHeadAttention`` returns
    (out, probs), out -> b^O; a timm ``Attention`` returns out -> b^O, which the block then multiplies by
    LayerScale (``ls1``: gamma * b^O in DINOv2) before the residual; for BERT the sublayer is
    ``attention.output.dense`` (W^O), whose output -> b^O before dropout, the residual and LayerNorm."""
    from models.transformer import Transformer

    stack = contextlib.ExitStack()
    wanted = set(layers)
    for p in output_projections(model):
        if (p.block, p.layer) not in wanted:
            continue
        if isinstance(model, Transformer):
            lay = (model.encoder.layers if p.block == "encoder_self" else model.decoder.layers)[p.layer]
            module = lay.cross_attn if p.block == "cross" else lay.self_attn
        elif hasattr(model, "blocks"):
            module = model.blocks[p.layer].attn
        else:
            module = p.module
        bias = p.module.bias

        def hook(_m: nn.Module, _args: tuple, out: object, bias: Tensor = bias) -> object:
            if isinstance(out, tuple):
                return (bias.expand_as(out[0]).clone(), *out[1:])
            return bias.expand_as(out).clone()  # type: ignore[union-attr]

        stack.callback(module.register_forward_hook(hook).remove)
    return stack
