"""Everything one text analysis holds, as plain numpy arrays for an ``.npz`` (``python -m app export --text``).

One array per attention block of "Attention Is All You Need" Section 3.2.3 that the model has:
``encoder_self`` (L, H, Ts, Ts), ``decoder_self`` (L, H, Tt, Tt) (masked), ``cross`` (L, H, Tt, Ts),
float32, row = query token, exactly the maps the web app caches. Per block also ``<block>_stats``
(L, H + 1, S) float32: the text page's head statistics (the last head row is the mean over heads; names in
``stat_names``), with every token shown, and ``<block>_distance`` (L, H) float32, the mean token distance
(sum_j A[i, j] |j - i| over the queries i; NaN for cross-attention), both from :mod:`models.text.views` as
the page and the notebook compute them; ``<block>_value_norms`` (L, H, Tk) float32 ‖f_h(x_j)‖ per key token
(Kobayashi et al. 2020, :mod:`models.value_norms`; value-weighted maps = block * norms[:, :, None, :]) when
the model is supported. Tokens per side: ``source_tokens``, ``source_ids``,
``source_special``, ``source_word_ids`` (-1: no word), and the same for ``target_`` when there is a decoder.
Indices are 0-based.
"""

from __future__ import annotations

import json

import numpy as np

from models.text import views
from models.text.analysis import TextAnalysis
from models.text.stats import STAT_NAMES

FORMAT = "attention-atlas/text-npz/1"


def text_arrays(analysis: TextAnalysis) -> dict[str, np.ndarray]:
    """The analysis as named arrays (module docstring); ``meta`` is a JSON string."""
    arrays: dict[str, np.ndarray] = {}
    sides = {"source": analysis.source, "target": analysis.target}
    for name, seq in sides.items():
        if seq is None:
            continue
        arrays[f"{name}_tokens"] = np.array(seq.tokens)  # (T,)
        arrays[f"{name}_ids"] = np.array(seq.ids, dtype=np.int64)  # (T,)
        arrays[f"{name}_special"] = np.array(seq.special, dtype=bool)  # (T,)
        arrays[f"{name}_word_ids"] = np.array(
            [-1 if w is None else w for w in seq.word_ids], np.int32
        )  # (T,)
    overviews = views.overviews(analysis, False, False, thumb=1, keep_view=False)  # the page's statistics
    distance = views.token_distance(analysis)
    for kind, overview in overviews.items():
        arrays[kind] = analysis.blocks[kind]  # (L, H, Tq, Tk) float32
        arrays[f"{kind}_stats"] = overview.stats  # (L, H + 1, S)
        arrays[f"{kind}_distance"] = distance[kind]  # (L, H) mean token distance (NaN for cross-attention)
        if kind in analysis.value_norms:  # Kobayashi et al. 2020 (models/value_norms.py)
            arrays[f"{kind}_value_norms"] = analysis.value_norms[kind]  # (L, H, Tk) ‖f_h(x_j)‖ per key token
    arrays["stat_names"] = np.array(STAT_NAMES)
    if analysis.predicted is not None:
        arrays["predicted_tokens"] = np.array(analysis.predicted)  # (Tt,) the next token at each decoder row
    meta = {
        "format": FORMAT,
        "model": analysis.model_id,
        "kind": analysis.kind,
        "axes": {k: {"query": q, "key": kk, "causal": c} for k, (q, kk, c) in analysis.axes.items()},
        "generated_text": analysis.generated_text,
        "indexing": "0-based array indices; the pages number layers and heads from 1",
    }
    arrays["meta"] = np.array(json.dumps(meta))
    return arrays
