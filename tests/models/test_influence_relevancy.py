"""Chefer et al. 2021 relevancy: the update rules on hand-made 2-token cases computed by hand from the paper's
equations (5-10), and the gradients the runners use against central finite differences of the target."""

from __future__ import annotations

import torch

from models.influence.relevancy import (
    normalized_self,
    self_relevance,
    seq2seq_relevance,
    seq2seq_rules,
    vit_relevance,
    weighted_attention,
)
from models.text.random_models import build_random_text_model
from tests.factories import tiny_layerscale_vit


def test_self_rule_by_hand():
    # layer 1, two heads: A and grad chosen so (grad * A)^+ is easy: head 0 [[.5,.5],[.2,.8]] * [[1,-1],[2,0]]
    A1 = torch.tensor([[[0.5, 0.5], [0.2, 0.8]], [[1.0, 0.0], [0.5, 0.5]]])
    G1 = torch.tensor([[[1.0, -1.0], [2.0, 0.0]], [[0.4, 3.0], [-2.0, 2.0]]])
    # head 0: [[.5, 0], [.4, 0]]; head 1: [[.4, 0], [0, 1]] -> mean [[.45, 0], [.2, .5]]
    torch.testing.assert_close(weighted_attention(A1, G1), torch.tensor([[0.45, 0.0], [0.2, 0.5]]))
    A2 = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
    G2 = torch.tensor([[[0.0, 2.0], [1.0, 0.0]]])  # Ā2 = [[0, 2], [1, 0]]
    # R1 = I + Ā1 = [[1.45, 0], [.2, 1.5]]; R2 = R1 + Ā2 R1 = R1 + [[.4, 3], [1.45, 0]] = [[1.85, 3], [1.65, 1.5]]
    R = self_relevance([A1, A2], [G1, G2])
    torch.testing.assert_close(R, torch.tensor([[1.85, 3.0], [1.65, 1.5]]))


def test_normalized_self_by_hand():
    R = torch.tensor([[1.5, 0.5], [0.0, 1.0]])
    # (R - I) = [[.5, .5], [0, 0]] -> rows normalised [[.5, .5], [0, 0]] (the empty row stays 0) -> + I
    torch.testing.assert_close(normalized_self(R), torch.tensor([[1.5, 0.5], [0.0, 1.0]]))
    R = torch.tensor([[1.2, 0.6], [0.3, 1.0]])  # (R - I) = [[.2, .6], [.3, 0]] -> [[.25, .75], [1, 0]] + I
    torch.testing.assert_close(normalized_self(R), torch.tensor([[1.25, 0.75], [1.0, 1.0]]))


def test_seq2seq_rules_by_hand():
    one = torch.ones(1, 2, 2)
    # encoder: one layer with Ā = [[0, 1], [0, 0]] -> R^ss = [[1, 1], [0, 1]]; R̄^ss: row 0 (R - I) = [0, 1] -> [[1, 1], [0, 1]]
    enc = [(torch.tensor([[[0.0, 1.0], [0.0, 0.0]]]), one)]
    # decoder self Ā = [[0, 0], [1, 0]] (t=1 attends t=0) -> R^tt = [[1, 0], [1, 1]], R^ts stays 0
    dec_self = (torch.tensor([[[0.0, 0.0], [1.0, 0.0]]]), one)
    # cross Ā = [[1, 0], [0, 1]]; R̄^tt = [[1, 0], [1, 1]] (row 1 of R - I is [1, 0]) -> R^ts = R̄^tt^T Ā R̄^ss
    cross = (torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]), one)
    out = seq2seq_rules(enc, [(dec_self, cross)])
    torch.testing.assert_close(out.ss, torch.tensor([[1.0, 1.0], [0.0, 1.0]]))
    torch.testing.assert_close(out.tt, torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    # [[1, 1], [0, 1]] @ I @ [[1, 1], [0, 1]] = [[1, 2], [0, 1]]
    torch.testing.assert_close(out.ts, torch.tensor([[1.0, 2.0], [0.0, 1.0]]))


def _perturbed_target(vit, x, layer, E, eps):
    """The runner's target with eps * E added to one layer's attention probabilities (finite differences)."""

    h = vit.blocks[layer].attn.attn_drop.register_forward_hook(lambda m, a, out: out + eps * E)
    try:
        for b in vit.blocks:
            b.attn.fused_attn = False
        with torch.no_grad():
            f = vit.forward_features(x)[0, 0]
    finally:
        h.remove()
    return f


def test_vit_relevance_gradients_match_finite_differences():
    vit = tiny_layerscale_vit(28).double()
    x = torch.randn(1, 3, 28, 28, dtype=torch.float64)
    from models.influence.relevancy import feature_target
    from models.influence.trace import trace_vit

    with torch.enable_grad():
        layers, feats = trace_vit(vit, x)
        y = feature_target(feats[0])
        g = [t[0] for t in torch.autograd.grad(y, [layer.graph for layer in layers])]
    f0 = feats[0].detach()
    E = torch.randn_like(layers[0].probs)[None]
    eps = 1e-5
    fp, fm = _perturbed_target(vit, x, 0, E, eps), _perturbed_target(vit, x, 0, E, -eps)
    fd = float(((fp - fm) * f0).sum() / f0.norm()) / (2 * eps)
    assert abs(fd - float((g[0] * E[0]).sum())) < 1e-6 * max(1.0, abs(fd))
    R, _ = vit_relevance(vit, x, 0)
    assert R.shape == (5, 5)  # 2 x 2 patches + [CLS]
    assert torch.all(R.diagonal() >= 1.0 - 1e-6)  # R starts from I and only adds positive parts


def test_seq2seq_relevance_runs_on_the_tiny_date_model():
    model, tok = build_random_text_model("dates", {}, "eager")
    model.eval()
    src = torch.tensor([tok.encode("3 May 1999")])
    tgt = torch.tensor([tok.encode("1999", bos=True)])
    rel, y = seq2seq_relevance(model, src, tgt, 2, tok.encode("9")[0])
    assert rel.ts.shape == (tgt.shape[1], src.shape[1]) and rel.tt.shape == (tgt.shape[1],) * 2
    assert y < 0 and torch.all(rel.ts >= 0)
