"""The recording around the entropy-capturing eager attention (models/text/entropy_attention.py)."""

from __future__ import annotations

import torch

from models.text.entropy_attention import eager_attention_with_entropy, recording_entropy


def test_recording_entropy_collects_each_call_and_matches_the_definition():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, generator=gen) for _ in range(3))  # (B, H, T, d)
    module = torch.nn.Module().eval()
    with recording_entropy() as record:
        _, probs = eager_attention_with_entropy(module, q, k, v, None)
        eager_attention_with_entropy(module, q, k, v, None)
    assert len(record) == 2 and record[0].shape == (2, 3, 5)
    p = torch.softmax((q.double() @ k.double().transpose(-2, -1)) * 4**-0.5, dim=-1)  # (B, H, T, T)
    torch.testing.assert_close(probs.double(), p, rtol=1e-5, atol=1e-6)
    want = -(p * p.log()).sum(-1)  # (B, H, T): -sum_j P_j log P_j
    torch.testing.assert_close(record[0].double(), want, rtol=1e-5, atol=1e-5)
    with recording_entropy(False) as off:
        eager_attention_with_entropy(module, q, k, v, None)
    assert off == []
    eager_attention_with_entropy(module, q, k, v, None)  # outside: nothing to record into, no error
    assert len(record) == 2
