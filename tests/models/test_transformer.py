"""Behaviour of models/transformer.py: exact attention maths, masks, shapes, and that it can learn."""

import math

import pytest
import torch
import torch.nn.functional as F

from models.transformer import (
    MultiHeadAttention,
    PositionalEncoding,
    Seq2SeqAttention,
    Transformer,
    TransformerConfig,
    attention,
    greedy_decode,
    subsequent_mask,
)

PAD, BOS, EOS = 0, 1, 2


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/models/conftest.py


def tiny_config(**kw) -> TransformerConfig:
    base = dict(src_vocab=16, tgt_vocab=16, d_model=32, n_heads=4, d_ff=64, n_enc_layers=2, n_dec_layers=2)
    base.update(max_len=32, dropout=0.0, pad_id=PAD)
    base.update(kw)
    return TransformerConfig(**base)


def test_attention_matches_manual_computation():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, n, 8, generator=g, dtype=torch.float64) for n in (5, 7, 7))
    mask = torch.rand(2, 1, 5, 7, generator=g) > 0.3
    mask[..., 0] = True  # no fully-masked rows here
    out, probs = attention(q, k, v, mask)
    expected_probs = torch.zeros(2, 3, 5, 7, dtype=torch.float64)
    for b in range(2):
        for h in range(3):
            for i in range(5):
                s = [
                    math.exp(float(q[b, h, i] @ k[b, h, j]) / math.sqrt(8)) if mask[b, 0, i, j] else 0.0
                    for j in range(7)
                ]
                expected_probs[b, h, i] = torch.tensor(s, dtype=torch.float64) / sum(s)
    torch.testing.assert_close(probs, expected_probs)
    torch.testing.assert_close(out, expected_probs @ v)


def test_attention_masked_positions_are_exactly_zero_and_full_mask_is_safe():
    q, k, v = torch.randn(1, 4, 8), torch.randn(1, 6, 8), torch.randn(1, 6, 8)
    mask = torch.ones(1, 4, 6, dtype=torch.bool)
    mask[0, 1, 3:] = False
    mask[0, 2] = False  # a fully-masked row
    out, probs = attention(q, k, v, mask)
    assert torch.isfinite(probs).all() and torch.isfinite(out).all()
    assert (probs[0, 1, 3:] == 0).all()
    assert (probs[0, 2] == 0).all() and (out[0, 2] == 0).all()
    torch.testing.assert_close(probs[0, [0, 1, 3]].sum(-1), torch.ones(3))
    with pytest.raises(TypeError):
        attention(q, k, v, mask.float())


def test_multi_head_attention_shapes_rows_and_fused_path_agree():
    torch.manual_seed(0)
    mha = MultiHeadAttention(d_model=32, n_heads=4, use_sdpa=True)
    x, mem = torch.randn(2, 5, 32), torch.randn(2, 7, 32)
    mask = torch.ones(2, 1, 1, 7, dtype=torch.bool)
    mask[1, ..., 5:] = False
    out, probs = mha(x, mem, mem, mask)
    assert out.shape == (2, 5, 32) and probs.shape == (2, 4, 5, 7)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 4, 5))
    assert (probs[1, ..., 5:] == 0).all()
    fused, none = mha(x, mem, mem, mask, need_weights=False)
    assert none is None
    torch.testing.assert_close(fused, out, atol=1e-5, rtol=1e-5)


def test_positional_encoding_matches_the_formula_and_is_a_rotation():
    d_model, max_len = 16, 50
    pe = PositionalEncoding.table(max_len, d_model)  # (max_len, d_model) float32
    for pos in (0, 1, 7, 49):
        for i in range(d_model // 2):
            angle = pos / 10000 ** (2 * i / d_model)
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    # PE(pos + k) = M_k PE(pos) with M_k block-diagonal 2x2 rotations by k * w_i (shared/anchors.md).
    k = 5
    w = torch.tensor([1 / 10000 ** (2 * i / d_model) for i in range(d_model // 2)])
    s, c = pe[10].view(-1, 2).unbind(-1)  # (d/2,) sin and cos parts
    rot_s = s * torch.cos(k * w) + c * torch.sin(k * w)
    rot_c = c * torch.cos(k * w) - s * torch.sin(k * w)
    torch.testing.assert_close(torch.stack([rot_s, rot_c], -1).view(-1), pe[10 + k], atol=1e-5, rtol=0)
    module = PositionalEncoding(d_model, max_len)
    x = torch.zeros(2, 9, d_model)
    torch.testing.assert_close(module(x), pe[:9].expand(2, 9, d_model))
    with pytest.raises(ValueError):
        module(torch.zeros(1, max_len + 1, d_model))


def test_subsequent_mask():
    m = subsequent_mask(4)
    assert m.dtype == torch.bool
    assert torch.equal(
        m, torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    )


def test_forward_attention_shapes_rows_padding_and_causality():
    torch.manual_seed(0)
    cfg = tiny_config(n_enc_layers=2, n_dec_layers=3)
    model = Transformer(cfg).eval()
    src = torch.tensor([[5, 6, 7, 8, 9, 10], [5, 6, 7, PAD, PAD, PAD]])
    tgt = torch.tensor([[BOS, 4, 5, 6, 7], [BOS, 4, 5, PAD, PAD]])
    logits, attn = model(src, tgt)
    assert isinstance(attn, Seq2SeqAttention)
    assert logits.shape == (2, 5, 16)
    assert attn.enc_self.shape == (2, 2, 4, 6, 6)
    assert attn.dec_self.shape == (3, 2, 4, 5, 5)
    assert attn.cross.shape == (3, 2, 4, 5, 6)
    torch.testing.assert_close(attn.enc_self.sum(-1), torch.ones(2, 2, 4, 6))
    torch.testing.assert_close(attn.dec_self.sum(-1), torch.ones(3, 2, 4, 5))
    torch.testing.assert_close(attn.cross.sum(-1), torch.ones(3, 2, 4, 5))
    upper = ~subsequent_mask(5)
    assert (attn.dec_self[..., upper] == 0).all()  # exactly zero, not just small
    assert (attn.enc_self[:, 1, ..., 3:] == 0).all() and (attn.cross[:, 1, ..., 3:] == 0).all()
    assert (attn.dec_self[:, 1, ..., 3:] == 0).all()  # padded target keys
    fast, none = model(src, tgt, need_weights=False)
    assert none is None
    torch.testing.assert_close(fast, logits, atol=1e-4, rtol=1e-4)
    again, attn2 = model(src, tgt)  # no hidden state: a second call gives the same answer
    torch.testing.assert_close(again, logits)
    torch.testing.assert_close(attn2.cross, attn.cross)


def test_tiny_model_overfits_a_copy_task_and_greedy_decode_returns_attention():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    src = torch.randint(4, 16, (10, 6), generator=g)  # (10, 6) content tokens only
    tgt = torch.cat([torch.full((10, 1), BOS), src, torch.full((10, 1), EOS)], dim=1)  # (10, 8)
    model = Transformer(tiny_config(n_enc_layers=1, n_dec_layers=1))
    opt = torch.optim.Adam(model.parameters(), lr=5e-3, betas=(0.9, 0.98), eps=1e-9)
    for _ in range(200):
        logits, _ = model(src, tgt[:, :-1], need_weights=False)
        loss = F.cross_entropy(logits.reshape(-1, 16), tgt[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    model.train()
    ys, attn = greedy_decode(model, src, BOS, EOS, max_len=10)
    assert model.training  # mode restored
    assert torch.equal(ys, tgt)  # every example copied exactly, then </s>
    T = tgt.size(1) - 1
    assert attn.enc_self.shape == (1, 10, 4, 6, 6)
    assert attn.dec_self.shape == (1, 10, 4, T, T)
    assert attn.cross.shape == (1, 10, 4, T, 6)
    assert (attn.dec_self[..., ~subsequent_mask(T)] == 0).all()
    ys1, attn1 = greedy_decode(model, src[3], BOS, EOS, max_len=10)  # 1-D input -> batch of one
    assert torch.equal(ys1, tgt[3:4]) and attn1.cross.shape == (1, 1, 4, T, 6)


def test_greedy_decode_pads_after_eos_and_stops_at_max_len():
    torch.manual_seed(0)
    model = Transformer(tiny_config())
    src = torch.randint(4, 16, (3, 5))
    ys, attn = greedy_decode(model, src, BOS, EOS, max_len=4)
    assert ys.shape[0] == 3 and 2 <= ys.shape[1] <= 5 and (ys[:, 0] == BOS).all()
    for row in ys.tolist():
        if EOS in row:
            assert all(t == PAD for t in row[row.index(EOS) + 1 :])
    assert attn.dec_self.shape[-1] == ys.shape[1] - 1
    ids, none = greedy_decode(model, src, BOS, EOS, max_len=4, return_attention=False)
    assert none is None and torch.equal(ids, ys)


def test_config_validation():
    with pytest.raises(ValueError):
        tiny_config(d_model=30, n_heads=4)
