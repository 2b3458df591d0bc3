"""ALTI contributions (Ferrando et al. 2022, Section 3) against a brute-force recomputation: each part T_i(x_j)
built by a loop over (i, j, head) from the model's own modules, the whole y_i from calling the real attention
sublayer, d_ij = max(0, ||y_i||_1 - ||y_i - T_i(x_j)||_1) normalised over j. Tiny random models: a BERT
(post-LN), the paper Transformer's encoder (post-LN) and a DINOv2-shaped timm ViT with LayerScale (pre-LN)."""

from __future__ import annotations

import numpy as np
import torch

from models.influence.alti import (
    contribution_rollout,
    contributions,
    layer_contributions,
    transformed_vectors,
)
from models.influence.trace import bert_parts, paper_encoder_parts, trace_post_ln, trace_vit
from models.text.random_models import build_random_text_model
from tests.factories import tiny_layerscale_vit


def brute_contributions(parts: torch.Tensor, whole: torch.Tensor) -> torch.Tensor:
    """parts (T, T, d) as lists, whole (T, d): the paper's eq. 9-10 by loops."""
    T = whole.shape[0]
    c = torch.zeros(T, T)
    for i in range(T):
        d = [max(0.0, float(whole[i].abs().sum() - (whole[i] - parts[i][j]).abs().sum())) for j in range(T)]
        for j in range(T):
            c[i, j] = d[j] / sum(d)
    return c


def post_ln_brute(x, A, value, out_proj, ln, n_heads, whole):
    """Loop over (i, j, h): T_i(x_j) = L_i(sum_h A_h[i,j] (x_j W_V + b_V)_h W_O^h + [i = j] x_i)."""
    T, d = x.shape
    dh = d // n_heads
    raw = torch.zeros(T, T, d)
    for i in range(T):
        for j in range(T):
            v = value(x[j])  # (d,)
            for h in range(n_heads):
                sl = slice(h * dh, (h + 1) * dh)
                raw[i, j] += A[h, i, j] * (v[sl] @ out_proj.weight[:, sl].T)
            if i == j:
                raw[i, j] += x[i]
    pre = raw.sum(1) + out_proj.bias  # (T, d) what the LayerNorm sees
    parts = torch.zeros(T, T, d)
    for i in range(T):
        sigma = torch.sqrt(pre[i].var(unbiased=False) + ln.eps)
        for j in range(T):
            parts[i, j] = ln.weight * (raw[i, j] - raw[i, j].mean()) / sigma
    # the decomposition adds up to the real output: sum_j T_i(x_j) + L_i(b_O) + beta = y_i
    bias = torch.stack(
        [
            ln.weight
            * (out_proj.bias - out_proj.bias.mean())
            / torch.sqrt(pre[i].var(unbiased=False) + ln.eps)
            for i in range(T)
        ]
    )
    torch.testing.assert_close(parts.sum(1) + bias + ln.bias, whole, atol=2e-5, rtol=1e-4)
    return brute_contributions(parts, whole)


@torch.no_grad()
def test_bert_layer_contributions_match_brute_force():
    m, _ = build_random_text_model("bert", {}, "eager")
    m.eval()
    ids = torch.tensor([[2, 5, 7, 9, 11, 3]])
    out = m(
        input_ids=ids, attention_mask=torch.ones_like(ids), output_attentions=True, output_hidden_states=True
    )
    layers = trace_post_ln(bert_parts(m), lambda: m(input_ids=ids, attention_mask=torch.ones_like(ids)))
    k = 1
    x = out.hidden_states[k][0]  # (T, d) the input of layer k
    A = out.attentions[k][0]  # (H, T, T)
    att = m.encoder.layer[k].attention
    whole = att(x[None])[0][0]  # the real attention sublayer (with residual and LayerNorm)
    expect = post_ln_brute(
        x, A, att.self.value, att.output.dense, att.output.LayerNorm, m.config.num_attention_heads, whole
    )
    torch.testing.assert_close(contributions(layers[k]), expect, atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_paper_encoder_layer_contributions_match_brute_force():
    model, tok = build_random_text_model("dates", {}, "eager")
    model.eval()
    src = torch.tensor([tok.encode("3 May 1999")])
    _, attn = model(src, src[:, :3], need_weights=True)
    layers = trace_post_ln(paper_encoder_parts(model), lambda: model.encode(src))
    x = model.positional_encoding(model.src_embed(src))[0]  # input of encoder layer 0
    L0 = model.encoder.layers[0]
    whole = L0.norm_1(x + L0.self_attn(x[None], x[None], x[None])[0][0])
    A = attn.enc_self[0, 0]
    expect = post_ln_brute(x, A, L0.self_attn.w_v, L0.self_attn.w_o, L0.norm_1, L0.self_attn.n_heads, whole)
    torch.testing.assert_close(contributions(layers[0]), expect, atol=1e-5, rtol=1e-4)


@torch.no_grad()
def test_vit_layerscale_contributions_match_brute_force():
    vit = tiny_layerscale_vit(28)
    x_img = torch.randn(1, 3, 28, 28)
    layers, _ = trace_vit(vit, x_img)
    blk = vit.blocks[1]
    x = layers[1].x  # (N, d) input of block 1 (checked below against the model's own stream)
    x_ref = vit.blocks[0](vit._pos_embed(vit.patch_embed(x_img)))[0]
    torch.testing.assert_close(x, x_ref)
    whole = x + blk.ls1(blk.attn(blk.norm1(x[None])))[0]
    N, d = x.shape
    H, dh = blk.attn.num_heads, d // blk.attn.num_heads
    A = layers[1].probs
    ln_x = blk.norm1(x)
    parts = torch.zeros(N, N, d)
    for i in range(N):
        for j in range(N):
            v = torch.nn.functional.linear(ln_x[j], blk.attn.qkv.weight[2 * d :], blk.attn.qkv.bias[2 * d :])
            for h in range(H):
                sl = slice(h * dh, (h + 1) * dh)
                parts[i, j] += blk.ls1.gamma * (A[h, i, j] * (v[sl] @ blk.attn.proj.weight[:, sl].T))
            if i == j:
                parts[i, j] += x[i]
    torch.testing.assert_close(parts.sum(1) + blk.ls1.gamma * blk.attn.proj.bias, whole, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(
        contributions(layers[1]), brute_contributions(parts, whole), atol=1e-5, rtol=1e-4
    )


def test_contribution_rollout_is_the_matrix_product():
    C = torch.rand(3, 5, 5)
    C = C / C.sum(-1, keepdim=True)
    R = contribution_rollout(C)
    torch.testing.assert_close(R[2], C[2] @ C[1] @ C[0])
    torch.testing.assert_close(R[2].sum(-1), torch.ones(5))


@torch.no_grad()
def test_layer_contributions_rows_sum_to_one_and_chunking_is_exact(monkeypatch):
    m, _ = build_random_text_model("bert", {}, "eager")
    m.eval()
    ids = torch.tensor([[2, 5, 7, 9, 11, 13, 17, 3]])
    layers = trace_post_ln(bert_parts(m), lambda: m(input_ids=ids))
    full = layer_contributions(layers)
    import models.influence.alti as alti

    monkeypatch.setattr(alti, "CHUNK_BYTES", 1)  # one row at a time
    torch.testing.assert_close(layer_contributions(layers), full)
    torch.testing.assert_close(full.sum(-1), torch.ones(full.shape[:2]))


@torch.no_grad()
def test_shipped_minilm_and_date_model_parts_add_up_to_the_real_outputs():
    """On the shipped weights (all-MiniLM-L6-v2 from its package, the committed date model): in every layer,
    sum_j T_i(x_j) + L_i(b_O) + beta is the attention sublayer's real output, and rows of C sum to 1."""
    from models.influence import run
    from models.text.analysis import DATES, MINILM, load_text_model

    for spec, text in ((MINILM, "The cat sat on the mat."), (DATES, "3rd of May, 1999")):
        tm = load_text_model(spec)
        ids = torch.tensor([tm.tokenize(text).ids])
        if spec is MINILM:
            layers = trace_post_ln(bert_parts(tm.model), lambda tm=tm, ids=ids: tm.model(input_ids=ids))
        else:
            layers = trace_post_ln(paper_encoder_parts(tm.model), lambda tm=tm, ids=ids: tm.model.encode(ids))
        for layer in layers:
            parts = transformed_vectors(layer)  # (T, T, d)
            pre = layer.x + torch.einsum("hij,hjd->id", layer.probs, layer.values) + layer.out_bias
            sigma = (pre.var(-1, unbiased=False, keepdim=True) + layer.ln.eps).sqrt()
            bias = layer.ln.weight * (layer.out_bias - layer.out_bias.mean()) / sigma + layer.ln.bias
            torch.testing.assert_close(parts.sum(1) + bias, layer.out, atol=5e-4, rtol=1e-4)
        c = run.text_contributions(tm, tm.analyze(text))
        np.testing.assert_allclose(c.layers.sum(-1), 1.0, atol=1e-5)
