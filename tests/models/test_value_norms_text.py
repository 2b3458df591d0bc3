"""Value norms of the text models (models/text/value_norms.py) against a brute-force recomputation.

For each attention sublayer, hooks capture the value projection's input x and the output projection's output;
from the module weights, in float64, we build every vector α_ij f_h(x_j) with f_h(x) = (x W_V^h + b_V^h) W_O^h
(the full product), compare its norm with α · norms[key] from the analysis, and check that the vectors summed
over heads and keys plus b_O give the output projection's own output (the decomposition is the model's).
Modules are located here by their family's names, independently of the code under test.
Tolerance: 64 float32 ulps of the largest value (tests/models/test_value_norms.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.text.analysis import TextModelSpec, load_text_model
from tests.models.test_value_norms import brute, close, randomise

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def seq2seq_sites(encoder_layers, decoder_layers, cross: str, value: str, output: str) -> list:
    """Sites of an encoder-decoder whose attention modules hold nn.Linear value and output projections (``value``
    and ``output`` name them; ``cross`` names a decoder layer's cross-attention; ``self_attn`` is the self one)."""
    out = []
    for side, layers in (("encoder", encoder_layers), ("decoder", decoder_layers)):
        for i, layer in enumerate(layers):
            mods = [(f"{side}_self", layer.self_attn)] + (
                [("cross", getattr(layer, cross))] if side == "decoder" else []
            )
            for kind, m in mods:
                v, o = getattr(m, value), getattr(m, output)
                out.append((kind, i, v, o, lambda v=v, o=o: (v.weight, v.bias, o.weight, o.bias)))
    return out


def sites(arch: str, model) -> list[tuple[str, int, torch.nn.Module, torch.nn.Module, callable]]:
    """(kind, layer, value module, output module, weights()) -> (W_V, b_V, W_O, b_O) in nn.Linear layout."""
    out = []
    if arch == "bert":
        for i, layer in enumerate(model.encoder.layer):
            v, o = layer.attention.self.value, layer.attention.output.dense
            out.append(("encoder_self", i, v, o, lambda v=v, o=o: (v.weight, v.bias, o.weight, o.bias)))
    elif arch == "gpt2":
        for i, block in enumerate(model.h):
            a = block.attn
            d = a.c_proj.weight.shape[0]

            def w(a=a, d=d):  # Conv1D stores (in, out): transpose to nn.Linear's (out, in)
                return a.c_attn.weight[:, 2 * d :].T, a.c_attn.bias[2 * d :], a.c_proj.weight.T, a.c_proj.bias

            out.append(("decoder_self", i, a.c_attn, a.c_proj, w))
    elif arch == "marian":
        m = model.model
        out = seq2seq_sites(m.encoder.layers, m.decoder.layers, "encoder_attn", "v_proj", "out_proj")
    elif arch == "dates":
        out = seq2seq_sites(model.encoder.layers, model.decoder.layers, "cross_attn", "w_v", "w_o")
    return out


def check(tm, arch: str, text: str, target: str | None = None) -> None:
    """Analyse with the model's own capture, then recompute every site's vectors by brute force."""
    model = tm.model
    inputs, outputs, hooks = {}, {}, []
    found = sites(arch, model)
    for kind, i, vmod, omod, _ in found:
        hooks.append(vmod.register_forward_pre_hook(lambda m, a, k=(kind, i): inputs.__setitem__(k, a[0])))
        hooks.append(omod.register_forward_hook(lambda m, a, o, k=(kind, i): outputs.__setitem__(k, o)))
    try:
        a = tm.analyze(text, target)
    finally:
        for h in hooks:
            h.remove()
    assert sorted(a.value_norms) == sorted(a.blocks)
    for kind, i, _, _, weights in found:
        alpha = torch.from_numpy(a.blocks[kind][i])  # (H, Tq, Tk)
        norms = a.value_norms[kind][i]  # (H, Tk)
        assert norms.shape == (alpha.shape[0], alpha.shape[2])
        w_v, b_v, w_o, b_o = weights()
        exact, summed = brute(inputs[(kind, i)][0], w_v, b_v, w_o, alpha, alpha.shape[0])
        close(alpha.double().numpy() * norms[:, None, :].astype(np.float64), exact)
        close(summed + b_o.detach().double().numpy(), outputs[(kind, i)][0].double().numpy())


@pytest.mark.parametrize(
    ("arch", "kind", "text", "target"),
    [
        ("bert", "encoder", "the cat sat on the mat", None),
        ("gpt2", "causal", "hello there world", None),
        ("marian", "seq2seq", "a small test", "ein kleiner"),
        ("marian", "seq2seq", "a small test", None),  # greedy output: generate's steps, then one full pass
        ("dates", "seq2seq", "3 March 2021", "2021-03-03"),
        ("dates", "seq2seq", "3 March 2021", None),
    ],
)
def test_random_text_models_match_brute_force(arch, kind, text, target):
    tm = load_text_model(TextModelSpec(f"tiny-{arch}", kind, "random", arch))
    randomise(tm.model)
    check(tm, arch, text, target)


def test_shipped_date_model():
    from models.text.analysis import DATES

    check(load_text_model(DATES), "dates", "the 4th of July, 1999")


def test_shipped_minilm_against_transformers_modules():
    """all-MiniLM-L6-v2 as shipped (offline package): f_h from transformers' own value layer output, times the
    dense weight's head slice, against the analysis's norms; and the brute-force check above."""
    from models.text.analysis import MINILM

    tm = load_text_model(MINILM)
    check(tm, "bert", "Attention is not only a weight [SEP] but also a norm.")
    layer = tm.model.encoder.layer[2].attention
    kept = {}
    hook = layer.self.value.register_forward_hook(lambda m, a, o: kept.__setitem__("v", o))
    try:
        a = tm.analyze("The value norms of [CLS] and [SEP] are small.")
    finally:
        hook.remove()
    v = kept["v"][0].double()  # (T, H * d): transformers' value layer output
    h = tm.info.num_heads
    d = v.shape[1] // h
    w = layer.output.dense.weight.detach().double()  # (D, H * d)
    f = torch.stack([v[:, k * d : (k + 1) * d] @ w[:, k * d : (k + 1) * d].T for k in range(h)])  # (H, T, D)
    close(a.value_norms["encoder_self"][2].astype(np.float64), f.norm(dim=-1).numpy())
    special = np.array(a.source.special)
    assert special.any()  # [CLS] and [SEP] are there to be measured
