"""Token norms and attention sinks (Darcet et al., ICLR 2024, "Vision Transformers Need Registers").

Large ViTs grow a few background patch tokens whose norm in the residual stream is an order of magnitude
above the rest and which soak up attention (the paper's Sec. 2, Fig. 3-4); register tokens give that mass a
home. These functions measure it on whatever model is loaded, and say when there is nothing to see.

- **Norms**: ``token_norms`` (L, N) is ||x_l|| of each token after block l (models/vision/hidden.py).
- **Outliers**: a patch is an outlier in layer l when its norm exceeds median + k * MAD over that layer's
  patches, MAD = median(|x - median|) (raw, not scaled to a normal sigma), k = :data:`MAD_K` unless the caller
  says otherwise. A robust statistic, not a fixed threshold: it adapts to each model's and layer's scale.
- **Sink mass** of a head: the attention its patch queries give, on average over the P query rows, to
  [CLS], to the register tokens, and to the outlier patches. The keys of block l are computed from block l's
  *input*, so the outliers used for block l are those of layer l - 1's output (none for the first block).
- **Without the sinks**: the columns of [CLS], the registers and the outlier patches are set to zero and every
  row is renormalised to sum 1 over the remaining keys, per head, before rollout (models/vision/rollout.py)
  or the mean attention distance (models/vision/mad.py, ``renormalize=True``: rows renormalised over the
  kept patches; with no outliers this equals the plain renormalised distance).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from models.vision.mad import mean_attention_distance
from models.vision.rollout import rollout_from_residuals

MAD_K = 10.0  # outlier rule: norm > median + MAD_K * MAD (raw MAD) of the layer's patch norms
SINK_KINDS = ("cls", "registers", "outliers")


@dataclass(frozen=True)
class NormStats:
    """Per layer: patch norms (L, P), their median, MAD, the threshold, the outlier mask and max/median."""

    norms: np.ndarray  # (L, P) float32 patch-token norms
    prefix_norms: np.ndarray  # (L, num_prefix) float32: [CLS] and registers
    median: np.ndarray  # (L,)
    mad: np.ndarray  # (L,) raw median absolute deviation
    threshold: np.ndarray  # (L,) median + k * mad
    outliers: np.ndarray  # (L, P) bool
    max_ratio: np.ndarray  # (L,) max patch norm / median
    k: float

    @property
    def counts(self) -> np.ndarray:
        """(L,) int: outlier patches per layer."""
        return self.outliers.sum(axis=1)

    def summary(self) -> str:
        """One sentence for a page or a notebook: the outliers found, or "no outliers"."""
        total = int(self.counts.sum())
        peak = int(np.argmax(self.max_ratio))
        ratio = f"max/median patch norm peaks at {self.max_ratio[peak]:.2f} in layer {peak + 1}"
        if total == 0:
            return f"No outliers (norm > median + {self.k:g} x MAD) in any layer; {ratio}."
        layers = [str(i + 1) for i in np.flatnonzero(self.counts)]
        return f"{total} outlier patch norms (> median + {self.k:g} x MAD) in layers {', '.join(layers)}; {ratio}."


def robust_outliers(values: np.ndarray, k: float = MAD_K) -> tuple[np.ndarray, float, float, float]:
    """(M,) values -> (outlier mask (M,), median, raw MAD, threshold = median + k * MAD)."""
    v = np.asarray(values, np.float64)
    med = float(np.median(v))
    mad = float(np.median(np.abs(v - med)))
    thr = med + k * mad
    return v > thr, med, mad, thr


def norm_stats(token_norms: np.ndarray, num_prefix_tokens: int, k: float = MAD_K) -> NormStats:
    """(L, N) token norms (prefix tokens first) -> :class:`NormStats` over the patch tokens of each layer."""
    t = np.asarray(token_norms, np.float32)
    patches = t[:, num_prefix_tokens:]  # (L, P)
    rows = [robust_outliers(layer, k) for layer in patches]
    med = np.array([r[1] for r in rows])
    return NormStats(
        norms=patches.copy(),
        prefix_norms=t[:, :num_prefix_tokens].copy(),
        median=med,
        mad=np.array([r[2] for r in rows]),
        threshold=np.array([r[3] for r in rows]),
        outliers=np.stack([r[0] for r in rows]),
        max_ratio=patches.max(axis=1) / np.maximum(med, 1e-12),
        k=float(k),
    )


def key_outliers(outliers: np.ndarray, num_prefix_tokens: int) -> np.ndarray:
    """(L, P) outliers of each block's output -> (L, N) bool sink *keys* of each block's attention: the
    outliers of its input (the previous block's output; none for block 1), prefix columns False."""
    n_layers, p = outliers.shape
    keys = np.zeros((n_layers, num_prefix_tokens + p), dtype=bool)
    keys[1:, num_prefix_tokens:] = outliers[:-1]
    return keys


def sink_mass_layer(
    attn: torch.Tensor, num_prefix_tokens: int, has_cls: bool, outlier_keys: np.ndarray
) -> np.ndarray:
    """(H, N, N) probabilities -> (H, 3) float32: mean over the patch query rows of the mass on [CLS], on the
    registers (the other prefix tokens) and on the outlier keys ``outlier_keys`` (N,) bool."""
    p0 = num_prefix_tokens
    rows = attn[:, p0:, :].float()  # (H, P, N) patch queries
    cls_cols = 1 if has_cls and p0 > 0 else 0
    cls = rows[..., :cls_cols].sum(-1).mean(-1)  # (H,)
    regs = rows[..., cls_cols:p0].sum(-1).mean(-1)  # (H,)
    mask = torch.from_numpy(np.asarray(outlier_keys, bool))
    out = rows[..., mask].sum(-1).mean(-1)  # (H,)
    return torch.stack([cls, regs, out], dim=-1).numpy()


def sink_mass(
    attentions: Sequence[torch.Tensor], num_prefix_tokens: int, has_cls: bool, outliers: np.ndarray
) -> np.ndarray:
    """(L, H, N, N) maps (or L of (H, N, N)) and (L, P) norm outliers -> (L, H, 3) sink mass
    ([CLS], registers, outliers; see the module docstring), one layer at a time."""
    keys = key_outliers(outliers, num_prefix_tokens)
    with torch.inference_mode():
        return np.stack(
            [sink_mass_layer(a, num_prefix_tokens, has_cls, keys[i]) for i, a in enumerate(attentions)]
        )


def sink_keys(outliers: np.ndarray, num_prefix_tokens: int) -> np.ndarray:
    """(L, N) bool: the keys dropped "without the sinks": [CLS], registers and the outlier keys."""
    keys = key_outliers(outliers, num_prefix_tokens)
    keys[:, :num_prefix_tokens] = True
    return keys


def drop_keys(attn: torch.Tensor, drop: np.ndarray) -> torch.Tensor:
    """(H, N, N) -> (H, N, N) float32 with the columns in ``drop`` (N,) bool zeroed and every row
    renormalised to sum 1 over the kept keys."""
    a = attn.to(torch.float32, copy=True)  # (H, N, N): the one float32 copy of this layer
    a[..., torch.from_numpy(np.asarray(drop, bool))] = 0.0
    return a.div_(a.sum(-1, keepdim=True).clamp_min(1e-12))


def fused_without(attn: torch.Tensor, drop: np.ndarray) -> torch.Tensor:
    """The head mean of :func:`drop_keys`: (H, N, N) -> (N, N) float32, one head at a time (no (H, N, N)
    float32 copy). Each head's kept row mass is 1 minus its mass on the few dropped keys."""
    mask = torch.from_numpy(np.asarray(drop, bool))
    n_heads = attn.shape[0]
    fused = torch.zeros(attn.shape[-2:], dtype=torch.float32)  # (N, N)
    for h in range(n_heads):
        head = attn[h].float()  # (N, N)
        kept = (head.sum(-1) - head[:, mask].sum(-1)).clamp_min(1e-12)  # (N,) row mass on the kept keys
        fused.add_(head / (kept[:, None] * n_heads))
    fused[:, mask] = 0.0
    return fused


def rollout_without(
    attentions: Sequence[torch.Tensor],
    drop: np.ndarray,
    num_prefix_tokens: int,
    has_cls: bool,
) -> np.ndarray:
    """(P,) rollout (heads averaged) of the maps with each layer's ``drop`` (L, N) keys removed and every
    head's rows renormalised over the kept keys, then the identity added and rows renormalised (rollout.py)."""
    with torch.inference_mode():
        residuals = []  # L x (N, N)
        for i, a in enumerate(attentions):
            fused = fused_without(a, drop[i])
            fused += torch.eye(fused.shape[-1])  # the residual path
            residuals.append(fused / fused.sum(-1, keepdim=True))
        return rollout_from_residuals(residuals, num_prefix_tokens, has_cls).numpy()


def distance_without(
    attentions: Sequence[torch.Tensor],
    drop: np.ndarray,
    grid: tuple[int, int],
    num_prefix_tokens: int,
    patch_size: int,
) -> np.ndarray:
    """(L, H) mean attention distance in pixels, rows renormalised over the patches not in ``drop``."""
    with torch.inference_mode():
        return np.stack(
            [
                mean_attention_distance(
                    drop_keys(a, drop[i]), grid, num_prefix_tokens, patch_size, renormalize=True
                ).numpy()
                for i, a in enumerate(attentions)
            ]
        ).astype(np.float64)
