"""Everything one text analysis holds, as plain numpy arrays for an ``.npz`` (``python -m app export --text``).

One array per attention block of "Attention Is All You Need" Section 3.2.3 that the model has:
``encoder_self`` (L, H, Ts, Ts), ``decoder_self`` (L, H, Tt, Tt) (masked), ``cross`` (L, H, Tt, Ts),
float32, row = query token, exactly the maps the web app caches. Per block also ``<block>_stats``
(L, H + 1, S) float32: the text page's head statistics (the last head row is the mean over heads; names in
``stat_names``), with every token shown. Tokens per side: ``source_tokens``, ``source_ids``,
``source_special``, ``source_word_ids`` (-1: no word), and the same for ``target_`` when there is a decoder.
Indices are 0-based.
"""

from __future__ import annotations

import json

import numpy as np

from models.text.analysis import BLOCK_ORDER, TextAnalysis
from models.text.stats import STAT_NAMES, block_overview, build_axis

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
    for kind in (b for b in BLOCK_ORDER if b in analysis.blocks):
        block = analysis.blocks[kind]  # (L, H, Tq, Tk) float32
        q_side, k_side, _ = analysis.axes[kind]
        q, k = analysis.side(q_side), analysis.side(k_side)
        q_axis = build_axis(q.tokens, q.special, q.word_ids, False, False)
        k_axis = build_axis(k.tokens, k.special, k.word_ids, False, False)
        overview = block_overview(
            block, q_axis, k_axis, q_axis, k_axis, False, same_axis=q_side == k_side, thumb=1
        )
        arrays[kind] = block
        arrays[f"{kind}_stats"] = overview.stats  # (L, H + 1, S)
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
