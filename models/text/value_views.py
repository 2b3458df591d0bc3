"""Value-weighted views of one text analysis (Kobayashi et al. 2020; math in ``models/value_norms.py``).

The analysis keeps, per block, the (L, H, Tk) norms ‖f_h(x_j)‖ of the forward that captured α
(``TextAnalysis.value_norms``); here they become what the front doors show:

- :func:`weighted_block`: the (L, H, Tq, Tk) value-weighted maps α_ij ‖f_h(x_j)‖, each row renormalised to sum
  1 by default (the share of the row's value-weighted mass each key brings), as the pages draw them;
- :func:`norms_for_view`: the norms of the key columns a page draws under the view options. Hiding special
  tokens keeps one column per kept token, and renormalising a row of α over the kept keys and then weighting
  and renormalising again equals weighting and renormalising over the kept keys: the browser can multiply.
  Merged words sum several keys into one column; Σ_j α_ij n_j is not (Σ_j α_ij)·n for any one n, so there
  is no per-column factor (None);
- :func:`special_survival`: per head, the share of each row's mass on the special tokens ([CLS], [SEP],
  </s>, ...) in α and in the value-weighted map (:func:`models.value_norms.special_share`).
"""

from __future__ import annotations

import numpy as np

from models.text.analysis import TextAnalysis
from models.text.views import axis
from models.value_norms import SpecialShare, special_share, value_weighted


def has_norms(a: TextAnalysis, kind: str) -> bool:
    return kind in a.value_norms


def _norms(a: TextAnalysis, kind: str) -> np.ndarray:
    if kind not in a.value_norms:
        raise ValueError(
            f"this analysis has no value norms for {kind} (model {a.model_id!r} is not supported)"
        )
    return a.value_norms[kind]  # (L, H, Tk)


def weighted_block(a: TextAnalysis, kind: str, renormalise: bool = True) -> np.ndarray:
    """(L, H, Tq, Tk) float32 value-weighted maps of one block (rows renormalised unless told not to)."""
    return value_weighted(a.blocks[kind], _norms(a, kind), renormalise)


def norms_for_view(a: TextAnalysis, kind: str, hide_special: bool, merge_words: bool) -> np.ndarray | None:
    """(L, H, Wk) float32 norms of the key columns drawn under the view options; None with merged words."""
    if merge_words:
        return None
    _, k, _ = a.axes[kind]
    keys = [s for s, _ in axis(a.side(k), hide_special, False).spans]  # one token per column
    return np.ascontiguousarray(_norms(a, kind)[..., keys], dtype=np.float32)  # (L, H, Wk)


def special_survival(a: TextAnalysis, kind: str) -> SpecialShare:
    """Per head (L, H): the mean share of a row's mass on the key side's special tokens, in α and in the
    value-weighted map, and their ratio (the share of that attention that survives value weighting)."""
    _, k, _ = a.axes[kind]
    keys = np.array(a.side(k).special, bool)  # (Tk,)
    return special_share(a.blocks[kind], _norms(a, kind), keys)
