"""Deletion and insertion curves: how fast the output changes as the units (tokens, patches) a map ranks
highest are removed from the input, or added back to an input with all of them removed (Petsiuk et al.
2018, "RISE", Section 4.2; used to compare explanation maps in Chefer et al. 2021, Section 4).

A ranking is judged on this input by its curves: deletion should fall fast (small area), insertion rise fast
(large area). Removal here means the unit is *absent*, not replaced by a colour or a token:

- ViT patches: the patch token is dropped from the sequence (with its position embedding); [CLS] and
  registers always stay. Output: cosine of the [CLS] feature (mean patch feature without [CLS]) to the
  unperturbed one.
- BERT tokens: the token is masked out as a key (attention mask 0) and left out of the mean pooling; special
  tokens always stay. Output: cosine of the pooled embedding to the second sentence's.
- date model characters: the character becomes padding, which every attention masks as a key. Output: the
  log-probability of the decoded character at the chosen step (teacher forcing on the decoded prefix).

:func:`curves` evaluates every (ranking, step) of both curves; masks with the same number of kept units run
as one batch (deletion at k and insertion at n - k keep the same number), and identical masks run once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

ScoreFn = Callable[[Tensor], Tensor]  # keep (B, n) bool, equal counts per row -> (B,) output


def step_counts(n: int, steps: int) -> list[int]:
    """Units removed (or added) at each step: round(i * n / steps), i = 0..steps, without repeats."""
    return sorted({round(i * n / steps) for i in range(steps + 1)})


def auc(fractions: np.ndarray, values: np.ndarray) -> float:
    """Area under the curve by the trapezoid rule over the fraction axis [0, 1]."""
    return float(np.sum((fractions[1:] - fractions[:-1]) * (values[1:] + values[:-1]) / 2))


@dataclass
class Curves:
    fractions: np.ndarray  # (S,) share of units removed (deletion) or added (insertion)
    deletion: dict[str, np.ndarray]  # ranking -> (S,)
    insertion: dict[str, np.ndarray]  # ranking -> (S,)
    deletion_auc: dict[str, float]
    insertion_auc: dict[str, float]


def order(scores: np.ndarray) -> np.ndarray:
    """Units from most to least relevant (ties: the earlier unit first)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


@torch.no_grad()
def curves(score: ScoreFn, rankings: dict[str, np.ndarray], steps: int = 10) -> Curves:
    """Deletion and insertion curves of every ranking (scores over the same n units)."""
    n = len(next(iter(rankings.values())))
    counts = step_counts(n, steps)
    masks: list[tuple[str, str, int, np.ndarray]] = []  # (curve, ranking, step index, keep (n,))
    for name, s in rankings.items():
        ranked = order(s)
        for i, k in enumerate(counts):
            keep = np.ones(n, bool)
            keep[ranked[:k]] = False
            masks.append(("deletion", name, i, keep))
            masks.append(("insertion", name, i, ~keep))
    out: dict[tuple[str, str], np.ndarray] = {
        (c, name): np.zeros(len(counts)) for c in ("deletion", "insertion") for name in rankings
    }
    unique: dict[bytes, list[int]] = {}  # identical masks (the whole input, the empty one) run once
    for m, (_, _, _, keep) in enumerate(masks):
        unique.setdefault(keep.tobytes(), []).append(m)
    by_count: dict[int, list[list[int]]] = {}
    for same in unique.values():
        by_count.setdefault(int(masks[same[0]][3].sum()), []).append(same)
    for groups in by_count.values():
        keep = torch.from_numpy(np.stack([masks[same[0]][3] for same in groups]))  # (B, n)
        values = score(keep).double().cpu().numpy()  # (B,)
        for same, v in zip(groups, values, strict=True):
            for m in same:
                c, name, i, _ = masks[m]
                out[(c, name)][i] = v
    fr = np.asarray(counts, dtype=np.float64) / max(n, 1)
    dele = {name: out[("deletion", name)] for name in rankings}
    ins = {name: out[("insertion", name)] for name in rankings}
    return Curves(
        fr, dele, ins, {k: auc(fr, v) for k, v in dele.items()}, {k: auc(fr, v) for k, v in ins.items()}
    )


# ------------------------------------------------------------------------------------------ score functions


def vit_score(model: nn.Module, x: Tensor, num_prefix: int, has_cls: bool) -> ScoreFn:
    """Patch tokens dropped; output = cosine of the [CLS] (or mean patch) feature to the unperturbed one."""
    tokens = model._pos_embed(model.patch_embed(x))  # (1, N, d) with [CLS], registers, position embeddings
    prefix, patches = tokens[:, :num_prefix], tokens[0, num_prefix:]  # (1, p0, d), (P, d)

    def features(seq: Tensor) -> Tensor:
        f = model.norm(model.blocks(model.norm_pre(seq)))  # (B, N', d)
        return f[:, 0] if has_cls else f[:, num_prefix:].mean(1)

    ref = features(tokens)[0]  # (d,)

    def score(keep: Tensor) -> Tensor:
        B = keep.shape[0]
        idx = keep.nonzero()[:, 1].view(B, -1)  # (B, k) equal counts per row
        seq = torch.cat([prefix.expand(B, -1, -1), patches[idx]], dim=1)  # (B, p0 + k, d)
        if seq.shape[1] == 0 or (not has_cls and idx.shape[1] == 0):
            return torch.zeros(B)
        return nn.functional.cosine_similarity(features(seq), ref[None], dim=-1)

    return score


def bert_pair_score(model: nn.Module, ids: Tensor, special: Tensor, other: Tensor) -> ScoreFn:
    """Units = the non-special tokens of ids (1, T); removed tokens are masked as keys and left out of the
    mean pooling; output = cosine of the pooled embedding to ``other`` (d,)."""
    units = (~special).nonzero()[:, 0]  # (n,) positions of the units

    def score(keep: Tensor) -> Tensor:
        B = keep.shape[0]
        mask = special[None].expand(B, -1).clone()  # (B, T): specials always stay
        mask[:, units] = keep
        h = model(input_ids=ids.expand(B, -1), attention_mask=mask.long()).last_hidden_state  # (B, T, d)
        w = mask.to(h.dtype)[..., None]
        pooled = (h * w).sum(1) / w.sum(1).clamp_min(1.0)  # (B, d)
        return nn.functional.cosine_similarity(pooled, other[None], dim=-1)

    return score


def seq2seq_score(
    model: nn.Module, src: Tensor, tgt_in: Tensor, step: int, token: int, pad_id: int
) -> ScoreFn:
    """Units = the source characters of src (1, Ts); removed ones become padding (masked as keys);
    output = log p(token) at decoder row ``step``."""

    def score(keep: Tensor) -> Tensor:
        B = keep.shape[0]
        s = torch.where(keep, src.expand(B, -1), torch.full_like(src.expand(B, -1), pad_id))  # (B, Ts)
        logits, _ = model(
            s, tgt_in.expand(B, -1), need_weights=True
        )  # explicit softmax: all-pad rows give 0, not NaN
        return logits[:, step].log_softmax(-1)[:, token]

    return score
