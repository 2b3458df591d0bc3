"""The date decoder's logit lens (models/influence/logit_lens.py) against a hand computation on a tiny random
Transformer: the decoder re-implemented from the paper's equations (Section 3.1, 3.2.2), the generator applied
to each post-norm stage, and each head's o_h W_gen^T from its own W_V, W_O slices."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.influence.logit_lens import STAGES, logit_lens
from models.text.random_models import build_random_text_model
from models.transformer import subsequent_mask

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny():
    model, tok = build_random_text_model(
        "dates",
        {
            "d_model": 8,
            "n_heads": 2,
            "d_ff": 16,
            "n_enc_layers": 1,
            "n_dec_layers": 2,
            "tie_embeddings": True,
        },
    )
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    src = torch.tensor(tok.encode("7 Dec '41"))  # (Ts,)
    tgt = torch.tensor(tok.encode("2041-1", bos=True))  # (Tt,)
    return model, src, tgt


def _heads_by_hand(mha, xq, xkv, mask):
    """Each head's write o_h = softmax(q k^T / sqrt(d_k)) (x W_V^h + b_V^h) W_O^h, by its weight slices."""
    outs = []
    dk = mha.d_k
    for h in range(mha.n_heads):
        sl = slice(h * dk, (h + 1) * dk)
        q = xq @ mha.w_q.weight[sl].T + mha.w_q.bias[sl]  # (Tq, d_k)
        k = xkv @ mha.w_k.weight[sl].T + mha.w_k.bias[sl]
        v = xkv @ mha.w_v.weight[sl].T + mha.w_v.bias[sl]
        s = q @ k.T / math.sqrt(dk)  # (Tq, Tk)
        if mask is not None:
            s = s.masked_fill(~mask, float("-inf"))
        outs.append(torch.softmax(s, -1) @ v @ mha.w_o.weight[:, sl].T)  # (Tq, d_model)
    return outs  # H x (Tq, d_model)


def _ln(norm, x):
    return F.layer_norm(x, (x.shape[-1],), norm.weight, norm.bias, norm.eps)


@torch.inference_mode()
def test_lens_matches_a_hand_computed_decoder():
    model, src, tgt = _tiny()
    lens = logit_lens(model, src, tgt, k=2)
    memory, _ = model.encode(src[None])
    memory = memory[0]  # (Ts, d)
    x = model.positional_encoding(model.tgt_embed(tgt[None]))[0]  # (Tt, d)
    causal = subsequent_mask(len(tgt))
    w, b = model.generator.weight, model.generator.bias
    assert torch.equal(w, model.src_embed.lut.weight)  # tied (Section 3.4)
    stage = 0
    for i, lay in enumerate(model.decoder.layers):
        self_heads = _heads_by_hand(lay.self_attn, x, x, causal)
        x = _ln(lay.norm_1, x + sum(self_heads) + lay.self_attn.w_o.bias)
        cross_heads = _heads_by_hand(lay.cross_attn, x, memory, None)
        x1 = _ln(lay.norm_2, x + sum(cross_heads) + lay.cross_attn.w_o.bias)
        ff = lay.feed_forward
        x2 = _ln(lay.norm_3, x1 + ff.w_2(torch.relu(ff.w_1(x1))))
        for y in (x, x1, x2):
            p = torch.softmax(y @ w.T + b, -1)  # (Tt, V)
            assert lens.stages[stage] == (i, STAGES[stage % 3])
            assert lens.top_ids[stage].tolist() == p.argmax(-1).tolist()
            torch.testing.assert_close(
                torch.from_numpy(lens.top_prob[stage]), p.max(-1).values, atol=1e-5, rtol=0
            )
            stage += 1
        x = x2
        for block, heads in ((0, self_heads), (1, cross_heads)):
            for h, o in enumerate(heads):
                direct = o @ w.T  # (Tt, V): the generator's weight, no bias
                top = direct.topk(2, -1)
                assert lens.head_promote[block, i, h].tolist() == top.indices.tolist()
                torch.testing.assert_close(torch.from_numpy(lens.head_promote_logit[block, i, h]), top.values,
                                           atol=1e-5, rtol=1e-5)  # fmt: skip
                low = direct.topk(2, -1, largest=False)
                assert lens.head_suppress[block, i, h].tolist() == low.indices.tolist()
    assert stage == len(lens.stages) == 3 * 2


@torch.inference_mode()
def test_last_stage_is_the_model_output_exactly():
    model, src, tgt = _tiny()
    lens = logit_lens(model, src, tgt)
    logits, _ = model(src[None], tgt[None], need_weights=False)
    probs = logits[0].softmax(-1)
    assert lens.final_ids.tolist() == logits[0].argmax(-1).tolist()
    assert lens.top_ids[-1].tolist() == lens.final_ids.tolist()
    assert torch.equal(torch.from_numpy(lens.top_prob[-1]), probs.max(-1).values)
    assert lens.head_promote.shape == (2, 2, 2, len(tgt), 3)


def test_lens_refuses_a_batch():
    model, src, tgt = _tiny()
    with pytest.raises(ValueError, match="unbatched"):
        logit_lens(model, src[None], tgt)
