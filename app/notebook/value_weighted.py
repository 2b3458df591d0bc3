"""Value-weighted attention in the notebook (Kobayashi et al. 2020; ``models/value_norms.py``): the methods
``VisionResult.value_weighted`` / ``TextResult.value_weighted`` and their summaries call these, which call the
core's pure functions unchanged (the numbers the web endpoints serve)."""

from __future__ import annotations

import numpy as np

from models.text import value_views as text_vw
from models.text.analysis import TextAnalysis
from models.value_norms import SpecialShare
from models.vision import value_views as vision_vw
from models.vision.analysis import VisionAnalysis


def vision_weighted(a: VisionAnalysis, layer: int | None, renormalise: bool) -> np.ndarray:
    """(H, N, N) of one layer, or (L, H, N, N) of every layer (layer None), float32."""
    if layer is not None:
        return vision_vw.weighted_layer(a, layer, renormalise)
    return np.stack([vision_vw.weighted_layer(a, i, renormalise) for i in range(vision_vw.n_layers(a))])


def vision_survival(a: VisionAnalysis) -> SpecialShare:
    return vision_vw.prefix_survival(a)


def _kind(a: TextAnalysis, kind: str | None) -> str:
    kind = kind or next(iter(a.blocks))
    if kind not in a.blocks:
        raise ValueError(f"kind must be one of {', '.join(a.blocks)}, not {kind!r}")
    return kind


def text_weighted(a: TextAnalysis, kind: str | None, renormalise: bool) -> np.ndarray:
    """(L, H, Tq, Tk) float32 of one block (default: the first, encoder self-attention when there is one)."""
    return text_vw.weighted_block(a, _kind(a, kind), renormalise)


def text_survival(a: TextAnalysis, kind: str | None) -> SpecialShare:
    return text_vw.special_survival(a, _kind(a, kind))
