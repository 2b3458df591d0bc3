"""Value-weighted attention sites of the text models (Kobayashi et al. 2020; math in ``models/value_norms.py``).

Where each family keeps W_V and W_O (f_h(x) = (x W_V^h + b_V^h) W_O^h, the output bias b_O left out):

- BERT-like encoders (all-MiniLM-L6-v2, BERT): ``attention.self.value`` and ``attention.output.dense``;
  the LayerNorm after the residual sum is not part of f_h (the 2020 paper's measure);
- GPT-2: ``attn.c_attn`` (a Conv1D giving q, k, v side by side, v last) and ``attn.c_proj``;
- Marian/BART-style seq2seq: ``self_attn`` (encoder and decoder) and ``encoder_attn`` (cross), each with
  ``v_proj`` and ``out_proj``;
- the paper Transformer of ``models/transformer.py`` (our date model): ``w_v`` and ``w_o`` of the encoder's
  ``self_attn``, the decoder's ``self_attn`` and its ``cross_attn``, whose values come from the encoder's
  output (the memory), so cross norms are one per source token.

Kinds are the analysis's block names: ``encoder_self``, ``decoder_self`` (GPT-2's masked self-attention too)
and ``cross``. Other architectures give no sites (the value-weighted view is then not offered).
"""

from __future__ import annotations

import re

from torch import nn

from models.transformer import Transformer
from models.value_norms import ValueSite

_LAYER = re.compile(r"(?:^|\.)(?:layer|layers|h)\.(\d+)\.")


def _layer(name: str) -> int:
    m = _LAYER.search(name)
    if m is None:
        raise ValueError(f"cannot read a layer index from module name {name!r}")
    return int(m.group(1))


def _linear_site(kind: str, layer: int, value: nn.Linear, out: nn.Linear, n_heads: int) -> ValueSite:
    return ValueSite(kind, layer, value, n_heads, values=lambda v: v, w_o=lambda: out.weight)


def date_value_sites(model: Transformer) -> list[ValueSite]:
    """The paper Transformer: encoder self, decoder self and cross attention of every layer."""
    sites = []
    h = model.cfg.n_heads
    for i, layer in enumerate(model.encoder.layers):
        sites.append(_linear_site("encoder_self", i, layer.self_attn.w_v, layer.self_attn.w_o, h))
    for i, layer in enumerate(model.decoder.layers):
        sites.append(_linear_site("decoder_self", i, layer.self_attn.w_v, layer.self_attn.w_o, h))
        sites.append(_linear_site("cross", i, layer.cross_attn.w_v, layer.cross_attn.w_o, h))
    return sites


def hf_value_sites(model: nn.Module) -> list[ValueSite]:
    """BERT-like, GPT-2 and Marian/BART-style Hugging Face models; [] for other architectures."""
    cfg = model.config
    heads = {
        "encoder": getattr(cfg, "encoder_attention_heads", None) or getattr(cfg, "num_attention_heads", None),
        "decoder": getattr(cfg, "decoder_attention_heads", None) or getattr(cfg, "num_attention_heads", None),
    }
    sites: list[ValueSite] = []
    for name, m in model.named_modules():
        sv, so = getattr(m, "self", None), getattr(m, "output", None)
        if isinstance(getattr(sv, "value", None), nn.Linear) and isinstance(
            getattr(so, "dense", None), nn.Linear
        ):
            if getattr(sv, "is_cross_attention", False) or "crossattention" in name:
                continue  # BERT used as a decoder: not one of our kinds
            sites.append(_linear_site("encoder_self", _layer(name), sv.value, so.dense, heads["encoder"]))
        elif hasattr(m, "c_attn") and hasattr(m, "c_proj") and not getattr(m, "is_cross_attention", False):
            sites.append(_gpt2_site(_layer(name), m, int(cfg.n_head)))
        elif isinstance(getattr(m, "v_proj", None), nn.Linear) and isinstance(
            getattr(m, "out_proj", None), nn.Linear
        ):
            side = "decoder" if ".decoder." in f".{name}." else "encoder"
            kind = "cross" if name.endswith("encoder_attn") else f"{side}_self"
            if not name.endswith(("self_attn", "encoder_attn")):
                continue
            sites.append(_linear_site(kind, _layer(name), m.v_proj, m.out_proj, heads[side]))
    return sites


def _gpt2_site(layer: int, attn: nn.Module, n_heads: int) -> ValueSite:
    """GPT-2's Conv1D computes x @ W + b with W (in, out): c_attn gives q, k, v (v last); c_proj's weight
    transposed is W_O in nn.Linear layout."""
    width = attn.c_proj.weight.shape[0]  # H * d

    return ValueSite(
        "decoder_self",
        layer,
        attn.c_attn,
        n_heads,
        values=lambda out: out[..., 2 * width :],  # (B, T, H * d)
        w_o=lambda: attn.c_proj.weight.t(),  # (D, H * d)
    )
