"""Neuron view service: q and k of one (layer, head) of a cached text analysis, and one query row of
Section 3.2.1 computed from them (framework-free: no FastAPI here).

Budgets (README "Resource model"):

- the analysis keeps only attention probabilities, so q and k come from one more forward with hooks on
  the layer's q/k projections (:func:`models.text.neuron.capture_qk`), run in the model queue,
  ``await state.queue.run(..., key="text-qk|<id>|<kind>|<layer>")`` (merged in flight); every head of that
  layer is then cached in ``state.views`` per (analysis id, kind, layer, head), so the other heads of the
  layer cost no forward;
- the per-query response (d_k-long q, the (T, d_k) keys and four T-long vectors) is built in the CPU pool
  and cached per (analysis id, kind, layer, head, query).

Errors are the :mod:`app.services.errors` family (InvalidOption, AnalysisExpired).
"""

from __future__ import annotations

from app.schemas.neuron import NeuronResponse
from app.schemas.text_views import block_axes
from app.serialization import typed_array
from app.services.errors import InvalidOption
from app.services.figures import cached_json
from app.services.text import _check_block, get_analysis, text_model_async
from app.state import AppState
from models.text.analysis import BlockKind, TextAnalysis, TextModel
from models.text.neuron import LayerQK, NeuronUnsupported, capture_qk, key_keep
from models.text.views import neuron_view


def _qk_key(analysis_id: str, kind: str, layer: int, head: int) -> str:
    return f"text-qk|{analysis_id}|{kind}|{layer}|{head}"


def _dec_ids(a: TextAnalysis) -> list[int] | None:
    return a.target.ids if a.target is not None else None


def capture_layer(
    state: AppState, model: TextModel, a: TextAnalysis, analysis_id: str, kind: str, layer: int
) -> LayerQK:
    """Model-queue job: q/k of every head of one layer, each head cached in ``state.views``."""
    try:
        qk = capture_qk(model.model, kind, layer, a.source.ids, _dec_ids(a))
    except NeuronUnsupported as e:
        raise InvalidOption(f"The neuron view does not support {model.info.label}: {e}") from e
    for h in range(qk.q.shape[0]):
        state.views.put(_qk_key(analysis_id, kind, layer, h), qk.head(h))
    return qk


async def head_qk(
    state: AppState, analysis_id: str, a: TextAnalysis, kind: str, layer: int, head: int
) -> LayerQK:
    """q (1, Tq, d_k) and k (1, Tk, d_k) of one head: from ``state.views`` or one hooked forward."""
    hit = state.views.get(_qk_key(analysis_id, kind, layer, head))
    if hit is not None:
        return hit
    model = await text_model_async(state, a.model_id)
    cost = 4 * (len(a.source) + len(a.target or []))
    key = f"text-qk|{analysis_id}|{kind}|{layer}"
    qk = await state.queue.run(capture_layer, state, model, a, analysis_id, kind, layer, key=key, cost=cost)
    return qk.head(head)


def build_neuron(
    a: TextAnalysis, qk: LayerQK, keep: list[bool] | None, kind: str, layer: int, head: int, query: int
) -> NeuronResponse:
    """CPU-pool job: Section 3.2.1 for one query row, checked against the captured probabilities."""
    v = neuron_view(a, qk, keep, kind, layer, head, query)
    row = v.row
    return NeuronResponse(
        **block_axes(a, kind),
        layer=layer,
        head=head,
        query=query,
        d_k=qk.d_k,
        scale=qk.scale,
        scale_where=qk.scale_where,
        q=typed_array(qk.q[0, query]),  # (d_k,)
        k=typed_array(qk.k[0]),  # (Tk, d_k)
        dot=typed_array(row.dot),
        scaled=typed_array(row.scaled),
        probs=typed_array(row.probs),
        captured=typed_array(v.captured),
        allowed=typed_array(row.allowed, "u1"),
        max_abs_diff=v.max_abs_diff,
        tolerance=v.tolerance,
        matches=v.matches,
    )


async def neuron(
    state: AppState, analysis_id: str, kind: BlockKind, layer: int, head: int, query: int
) -> bytes:
    """The neuron view of one (kind, layer, head, query) as NeuronResponse JSON (cached)."""
    a = get_analysis(state, analysis_id)
    _check_block(a, kind, layer, head)
    n_query = a.blocks[kind].shape[2]
    if query >= n_query:
        raise InvalidOption(f"query {query} does not exist: {kind} has query tokens 0..{n_query - 1}.")
    key = f"text-neuron|{analysis_id}|{kind}|{layer}|{head}|{query}"
    hit = state.views.get(key)
    if hit is not None:
        return hit
    qk = await head_qk(state, analysis_id, a, kind, layer, head)
    model = await text_model_async(state, a.model_id)  # loaded: it made the analysis
    keep = key_keep(model.model, kind, a.source.ids, _dec_ids(a))
    return await cached_json(state, key, build_neuron, a, qk, keep, kind, layer, head, query)
