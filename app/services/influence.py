"""/api/influence: contributions, relevancy and curves of a cached analysis (models/influence/run.py).

Budgets: every measure runs a forward (and for relevancy a backward) pass, so it runs in the model queue
(``state.queue``, one at a time, merged in flight by key, 503 + Retry-After when full) with a declared cost,
never on the event loop; its response is cached as JSON bytes in ``state.views`` per (analysis, options).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from app.schemas.influence import ContributionsResponse, CurveSchema, CurvesResponse, RelevanceResponse
from app.serialization import typed_array
from app.services.errors import AnalysisExpired, InvalidOption
from app.services.text import check_text, get_analysis, text_model
from app.state import AppState
from models.influence import run

FLOAT = 4


def _queued(state: AppState, name: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Model-queue job: ``fn(*args)`` as JSON bytes, cached in ``state.views`` under ``name``."""
    hit = state.views.get(name)
    if hit is None:
        try:
            hit = fn(*args).model_dump_json().encode()
        except (run.UnsupportedModel, ValueError, IndexError) as e:
            raise InvalidOption(str(e)) from e
        state.views.put(name, hit)
    return hit


async def queued_json(state: AppState, key: tuple, cost: int, fn: Callable[..., Any], *args: Any) -> bytes:
    name = "|".join(str(k) for k in key)
    hit = state.views.get(name)
    if hit is not None:
        return hit
    return await state.queue.run(_queued, state, name, fn, *args, key=f"influence:{name}", cost=cost)


def _vision_analysis(state: AppState, aid: str):
    analysis = state.analyses.get(aid)
    if analysis is None:
        raise AnalysisExpired("image")
    return analysis


def _vision(state: AppState, aid: str):
    """(model, analysis): in the queue's worker (a first load blocks)."""
    analysis = _vision_analysis(state, aid)
    vm, _ = state.vision_store.get_at(analysis.model_id, analysis.resolution)
    return vm, analysis


def _text_cost(a) -> int:
    n = len(a.source) + len(a.target or [])
    return FLOAT * n * n * 64


# --------------------------------------------------------------------------------------------- builders


def build_text_contributions(state: AppState, aid: str) -> ContributionsResponse:
    a = get_analysis(state, aid)
    c = run.text_contributions(text_model(state, a.model_id), a)
    return ContributionsResponse(
        analysis_id=aid,
        family="text",
        labels=c.labels,
        layers=typed_array(c.layers),
        rollout=typed_array(c.rollout),
    )


def build_vision_contributions(state: AppState, aid: str) -> ContributionsResponse:
    vm, analysis = _vision(state, aid)
    c = run.vision_contributions(vm, analysis)
    return ContributionsResponse(
        analysis_id=aid, family="vision", labels=[], layers=typed_array(c.layers), rollout=typed_array(c.rollout),
        attention_rollout=typed_array(c.attention_rollout),
    )  # fmt: skip


def _relevance_schema(aid: str, r: run.Relevance, ms: float) -> RelevanceResponse:
    return RelevanceResponse(
        analysis_id=aid, target=r.target, value=r.value, relevance=typed_array(r.relevance),
        rollout=typed_array(r.rollout), attention=typed_array(r.attention),
        decoder=None if r.decoder is None else typed_array(r.decoder), step=r.step, token=r.token,
        query=r.query, compute_ms=ms,
    )  # fmt: skip


def text_relevance(state: AppState, aid: str, pair: str | None, step: int) -> run.Relevance:
    a = get_analysis(state, aid)
    return run.text_relevance(text_model(state, a.model_id), a, pair, step)


def build_text_relevance(state: AppState, aid: str, pair: str | None, step: int) -> RelevanceResponse:
    t0 = time.perf_counter()
    r = text_relevance(state, aid, pair, step)
    return _relevance_schema(aid, r, (time.perf_counter() - t0) * 1000)


def build_vision_relevance(state: AppState, aid: str, query: int | None) -> RelevanceResponse:
    vm, analysis = _vision(state, aid)
    t0 = time.perf_counter()
    r = run.vision_relevance(vm, analysis, query)
    return _relevance_schema(aid, r, (time.perf_counter() - t0) * 1000)


def _curves_schema(aid: str, c: run.CurvesResult, ms: float) -> CurvesResponse:
    cv = c.curves
    return CurvesResponse(
        analysis_id=aid, output=c.output, removal=c.removal, units=c.units, fractions=cv.fractions.tolist(),
        curves=[
            CurveSchema(
                ranking=k, deletion=cv.deletion[k].tolist(), insertion=cv.insertion[k].tolist(),
                deletion_auc=cv.deletion_auc[k], insertion_auc=cv.insertion_auc[k],
            )
            for k in cv.deletion
        ],
        compute_ms=ms,
    )  # fmt: skip


def build_text_curves(state: AppState, aid: str, pair: str | None, step: int, steps: int) -> CurvesResponse:
    a = get_analysis(state, aid)
    tm = text_model(state, a.model_id)
    t0 = time.perf_counter()
    rel = run.text_relevance(tm, a, pair, step)
    c = run.text_curves(tm, a, rel, pair, steps)
    return _curves_schema(aid, c, (time.perf_counter() - t0) * 1000)


def build_vision_curves(state: AppState, aid: str, steps: int) -> CurvesResponse:
    vm, analysis = _vision(state, aid)
    t0 = time.perf_counter()
    rel = run.vision_relevance(vm, analysis, None)
    c = run.vision_curves(vm, analysis, rel, steps)
    return _curves_schema(aid, c, (time.perf_counter() - t0) * 1000)


# ------------------------------------------------------------------------------------------ async doors


async def contributions(state: AppState, family: str, aid: str) -> bytes:
    if family == "text":
        cost = _text_cost(get_analysis(state, aid))
        return await queued_json(state, ("alti", aid), cost, build_text_contributions, state, aid)
    analysis = _vision_analysis(state, aid)
    n = analysis.num_tokens
    return await queued_json(state, ("alti", aid), FLOAT * n * n * 8, build_vision_contributions, state, aid)


async def relevance(
    state: AppState, family: str, aid: str, pair: str | None, step: int, query: int | None
) -> bytes:
    if family == "text":
        a = get_analysis(state, aid)
        if pair:
            check_text(state, pair, "second sentence")
        key = ("relevance", aid, pair or "", step)
        return await queued_json(state, key, _text_cost(a), build_text_relevance, state, aid, pair, step)
    analysis = _vision_analysis(state, aid)
    n = analysis.num_tokens
    key = ("relevance", aid, "cls" if query is None else query)
    return await queued_json(state, key, FLOAT * n * n * 32, build_vision_relevance, state, aid, query)


async def curves(state: AppState, family: str, aid: str, pair: str | None, step: int, steps: int) -> bytes:
    if family == "text":
        a = get_analysis(state, aid)
        if pair:
            check_text(state, pair, "second sentence")
        key = ("curves", aid, pair or "", step, steps)
        return await queued_json(
            state, key, _text_cost(a) * 4, build_text_curves, state, aid, pair, step, steps
        )
    analysis = _vision_analysis(state, aid)
    n = analysis.num_tokens
    key = ("curves", aid, steps)
    return await queued_json(state, key, FLOAT * n * n * 64, build_vision_curves, state, aid, steps)
