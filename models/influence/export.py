"""The influence measures as named arrays for ``python -m app export`` (``--contributions``, ``--relevance``,
``--curves``): the numbers of models/influence/run.py under ``alti_*``, ``relevance_*`` and ``curves_*`` keys."""

from __future__ import annotations

import numpy as np

from models.influence import run


def _curves(c: run.CurvesResult) -> dict[str, np.ndarray]:
    cv = c.curves
    out = {"curves_fractions": cv.fractions}
    for k in cv.deletion:
        out[f"curves_deletion_{k}"] = cv.deletion[k]
        out[f"curves_insertion_{k}"] = cv.insertion[k]
        out[f"curves_auc_{k}"] = np.array([cv.deletion_auc[k], cv.insertion_auc[k]])  # (deletion, insertion)
    return out


def _relevance(r: run.Relevance) -> dict[str, np.ndarray]:
    out = {
        "relevance": r.relevance, "relevance_rollout": r.rollout, "relevance_attention": r.attention,
        "relevance_value": np.array(r.value),
    }  # fmt: skip
    if r.decoder is not None:
        out["relevance_decoder"] = r.decoder
    return out


def text_influence_arrays(
    tm, a, *, contributions: bool, relevance: bool, curves: bool, pair: str | None, step: int, steps: int = 10
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if contributions:
        c = run.text_contributions(tm, a)
        out |= {"alti_layers": c.layers, "alti_rollout": c.rollout}  # (L, T, T) each
    if relevance or curves:
        r = run.text_relevance(tm, a, pair, step)
        out |= _relevance(r)
        if curves:
            out |= _curves(run.text_curves(tm, a, r, pair, steps))
    return out


def vision_influence_arrays(
    vm, analysis, *, contributions: bool, relevance: bool, curves: bool, query: int | None, steps: int = 10
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if contributions:
        c = run.vision_contributions(vm, analysis)
        out |= {"alti_layers": c.layers, "alti_rollout": c.rollout}  # (L, P) [CLS] rows
    if relevance:
        out |= _relevance(run.vision_relevance(vm, analysis, query))
    if curves:
        out |= _curves(run.vision_curves(vm, analysis, run.vision_relevance(vm, analysis), steps))
    return out
