"""Text API: analyse a sentence once (every layer, head and attention kind), then serve views and slices
of the cached maps per layer / head. Small inputs ship whole; large ones ship thumbnails, statistics and
the first view's layer, and the rest is fetched on demand (bertviz inlines everything as JSON lists)."""

from __future__ import annotations

import hashlib
import logging
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, HTTPException, Query

from app.cache import BoundedCache
from app.deps import StateDep
from app.schemas.common import ErrorResponse
from app.schemas.text import (
    BlockKind,
    BlockSchema,
    HeadSchema,
    LayerSchema,
    TextAnalysisResponse,
    TextAnalyzeRequest,
    TextModelInfoSchema,
    TokenSide,
    ViewAxisSchema,
    ViewOptions,
)
from app.serialization import typed_array
from app.state import AppState, UnknownModel
from models.text.analysis import (
    BLOCK_ORDER,
    TextAnalysis,
    TextInputError,
    TextModel,
    TokenSeq,
    load_text_model,
)
from models.text.stats import (
    STAT_LABELS,
    STAT_NAMES,
    Axis,
    apply_view,
    build_axis,
    head_stats,
    pool_max,
    quantise_u8,
    with_head_mean,
)

router = APIRouter(prefix="/api/text", tags=["text"])
ERRORS = {c: {"model": ErrorResponse} for c in (400, 404, 413, 422, 503)}
log = logging.getLogger("atlas.text")


# ----------------------------------------------------------------------------- models and cache


def text_model(state: AppState, model_id: str | None) -> TextModel:
    """The allowlisted text model, loaded once per process; UnknownModel (400) for anything else."""
    model_id = model_id or state.settings.default_text_model
    specs = state.settings.text_specs()
    if model_id not in specs:
        raise UnknownModel(f"Unknown text model {model_id!r}. Available: {', '.join(specs)}.")
    loaded = state.text_models
    with state.text_lock:
        if model_id not in loaded:
            try:
                loaded[model_id] = load_text_model(specs[model_id], state.device)
            except (OSError, ValueError, RuntimeError, ImportError) as e:
                raise HTTPException(503, f"The text model {model_id!r} could not be loaded: {e}") from e
        return loaded[model_id]


def preload(state: AppState) -> None:
    """Lifespan hook: load the default encoder and encoder-decoder so the first request is fast."""
    for model_id in (state.settings.default_text_model, state.settings.default_seq2seq_model):
        if model_id in state.settings.text_specs():
            try:
                text_model(state, model_id)
            except HTTPException as e:  # the app still serves everything else; requests get the 503
                log.warning("text model %s not preloaded: %s", model_id, e.detail)


def _cache(state: AppState) -> BoundedCache:
    return state.text_analyses


def _analysis(state: AppState, analysis_id: str) -> TextAnalysis:
    a = _cache(state).get(analysis_id)
    if a is None:
        raise HTTPException(404, "This analysis has expired from the server cache; analyse the text again.")
    return a


# ----------------------------------------------------------------------------- views


def _axis(seq: TokenSeq, options: ViewOptions, hide: bool | None = None) -> Axis:
    hide = options.hide_special if hide is None else hide
    return build_axis(seq.tokens, seq.special, seq.word_ids, hide, options.merge_words)


def _block(a: TextAnalysis, kind: str) -> tuple[np.ndarray, str, str, bool]:
    if kind not in a.blocks:
        raise HTTPException(400, f"This model has no {kind} attention; it has: {', '.join(a.blocks)}.")
    q, k, causal = a.axes[kind]
    return a.blocks[kind], q, k, causal


def _view(a: TextAnalysis, kind: str, options: ViewOptions, maps: np.ndarray | None = None) -> np.ndarray:
    """The block (or the given slice of it, (..., Tq, Tk)) under the view options."""
    block, q, k, _ = _block(a, kind)
    qa, ka = _axis(a.side(q), options), _axis(a.side(k), options)
    return apply_view(block if maps is None else maps, qa, ka, renormalise=options.hide_special)


def _check_layer(a: TextAnalysis, kind: str, layer: int, head: int | None = None) -> None:
    block = a.blocks[kind]
    if layer >= block.shape[0]:
        raise HTTPException(400, f"layer {layer} does not exist: {kind} has layers 0..{block.shape[0] - 1}.")
    if head is not None and head >= block.shape[1]:
        raise HTTPException(400, f"head {head} does not exist: {kind} has heads 0..{block.shape[1] - 1}.")


def _block_schema(a: TextAnalysis, kind: str, options: ViewOptions, thumb: int, inline: bool) -> BlockSchema:
    block, q, k, causal = _block(a, kind)
    view = _view(a, kind, options)  # (L, H, Wq, Wk)
    qs, ks = a.side(q), a.side(k)
    uq, uk = _axis(qs, options, hide=False), _axis(ks, options, hide=False)
    unhidden = apply_view(block, uq, uk, renormalise=False) if options.hide_special else view
    stats = head_stats(
        with_head_mean(view), with_head_mean(unhidden), np.array(uk.special), np.array(uq.special), q == k
    )  # (L, H + 1, S)
    thumbs, scale = quantise_u8(pool_max(with_head_mean(view), thumb), per_map=True)
    L, H, wq, wk = view.shape
    return BlockSchema(
        kind=kind,
        query_side=q,
        key_side=k,
        causal=causal,
        layers=L,
        heads=H,
        n_query=wq,
        n_key=wk,
        thumbs=typed_array(thumbs, "u1"),
        thumb_scale=typed_array(scale),
        stats=typed_array(stats),
        data=typed_array(view) if inline else None,
    )


def _overview(
    state: AppState,
    aid: str,
    a: TextAnalysis,
    options: ViewOptions,
    kind: str | None,
    layer: int,
    cached: bool,
) -> TextAnalysisResponse:
    kinds = [b for b in BLOCK_ORDER if b in a.blocks]
    kind = kind or kinds[0]
    _block(a, kind)
    _check_layer(a, kind, layer)
    axes = {"source": _axis(a.source, options)}
    if a.target is not None:
        axes["target"] = _axis(a.target, options)
    view_bytes = sum(
        4
        * a.blocks[b].shape[0]
        * a.blocks[b].shape[1]
        * len(axes[a.axes[b][0]].labels)
        * len(axes[a.axes[b][1]].labels)
        for b in kinds
    )
    inline = view_bytes <= state.settings.text_inline_kb * 1024
    thumb = state.settings.text_thumb_size
    first = None
    if not inline:
        data, _ = quantise_u8(_view(a, kind, options, a.blocks[kind][layer]), per_map=False)
        first = LayerSchema(kind=kind, layer=layer, data=typed_array(data, "u1"))
    m = text_model(state, a.model_id).info
    side = lambda s: None if s is None else TokenSide(tokens=s.tokens, special=s.special, word_ids=s.word_ids)  # noqa: E731
    return TextAnalysisResponse(
        analysis_id=aid,
        model=TextModelInfoSchema(**m.__dict__),
        source=side(a.source),
        target=side(a.target),
        generated_text=a.generated_text,
        predicted=a.predicted,
        options=options,
        axes={n: ViewAxisSchema(labels=x.labels, special=x.special, spans=x.spans) for n, x in axes.items()},
        blocks=[_block_schema(a, b, options, thumb, inline) for b in kinds],
        stat_names=list(STAT_NAMES),
        stat_labels=[STAT_LABELS[n] for n in STAT_NAMES],
        first=first,
        inline=inline,
        forward_ms=round(a.forward_ms, 2),
        cached=cached,
    )


# ----------------------------------------------------------------------------- routes


def _check_text(state: AppState, text: str, what: str) -> None:
    if not text.strip():
        raise HTTPException(422, f"The {what} is empty: type a sentence.")
    limit = state.settings.max_text_chars
    if len(text) > limit:
        raise HTTPException(
            413, f"The {what} is {len(text):,} characters long; the limit is {limit:,} characters."
        )


@router.post("/analyze", response_model=TextAnalysisResponse, responses=ERRORS)
def analyze(state: StateDep, req: TextAnalyzeRequest) -> TextAnalysisResponse:
    """Run the model once with attention capture; the maps stay in a bounded server-side cache."""
    _check_text(state, req.text, "text")
    model = text_model(state, req.model)
    target = req.target if req.target else None  # "" means: use the model's own greedy output
    if target is not None:
        if model.info.kind != "seq2seq":
            raise HTTPException(
                400,
                f"{model.info.label} is an {model.info.kind} model without a separate decoder: "
                "a target text only applies to encoder-decoder models.",
            )
        _check_text(state, target, "target text")
    key = f"{model.info.id}\x00{req.text}\x00{target if target is not None else ''}\x00{target is None}"
    aid = hashlib.sha256(key.encode()).hexdigest()[:24]
    cache = _cache(state)
    a = cache.get(aid)
    cached = a is not None
    if a is None:
        try:  # token limits are checked here, before the request takes a place in the model queue
            model.tokenize(req.text)
            if target is not None:
                model.tokenize_target(target)
        except TextInputError as e:
            raise HTTPException(422, str(e)) from e
        a = state.queue.run_sync(model.analyze, req.text, target)
        cache.put(aid, a)
    options = ViewOptions(hide_special=req.hide_special, merge_words=req.merge_words)
    return _overview(state, aid, a, options, req.kind, req.layer, cached)


Kind = Annotated[BlockKind, Query(description="encoder_self, decoder_self or cross")]
Hide = Annotated[bool, Query()]


@router.get("/analysis/{analysis_id}", response_model=TextAnalysisResponse, responses=ERRORS)
def overview(
    state: StateDep,
    analysis_id: str,
    hide_special: Hide = False,
    merge_words: Hide = False,
    kind: Annotated[BlockKind | None, Query()] = None,
    layer: Annotated[int, Query(ge=0)] = 0,
) -> TextAnalysisResponse:
    """The analysis under other view options (no new forward pass)."""
    a = _analysis(state, analysis_id)
    options = ViewOptions(hide_special=hide_special, merge_words=merge_words)
    return _overview(state, analysis_id, a, options, kind, layer, cached=True)


@router.get("/analysis/{analysis_id}/layer", response_model=LayerSchema, responses=ERRORS)
def layer_maps(
    state: StateDep,
    analysis_id: str,
    kind: Kind,
    layer: Annotated[int, Query(ge=0)],
    hide_special: Hide = False,
    merge_words: Hide = False,
    dtype: Annotated[Literal["u1", "f4"], Query(description="u1: probability x 255, rounded")] = "u1",
) -> LayerSchema:
    """Every head of one layer (the head view)."""
    a = _analysis(state, analysis_id)
    _block(a, kind)
    _check_layer(a, kind, layer)
    view = _view(
        a, kind, ViewOptions(hide_special=hide_special, merge_words=merge_words), a.blocks[kind][layer]
    )
    data = typed_array(quantise_u8(view, per_map=False)[0], "u1") if dtype == "u1" else typed_array(view)
    return LayerSchema(kind=kind, layer=layer, data=data)


@router.get("/analysis/{analysis_id}/head", response_model=HeadSchema, responses=ERRORS)
def head_map(
    state: StateDep,
    analysis_id: str,
    kind: Kind,
    layer: Annotated[int, Query(ge=0)],
    head: Annotated[int | None, Query(ge=0, description="omit for the mean over heads")] = None,
    hide_special: Hide = False,
    merge_words: Hide = False,
) -> HeadSchema:
    """One layer/head (or the head mean) at full float32 precision (the matrix view)."""
    a = _analysis(state, analysis_id)
    _block(a, kind)
    _check_layer(a, kind, layer, head)
    options = ViewOptions(hide_special=hide_special, merge_words=merge_words)
    views = _view(a, kind, options, a.blocks[kind][layer])  # (H, Wq, Wk)
    view = views[head] if head is not None else views.mean(axis=0)  # (Wq, Wk), the mean of the shown heads
    return HeadSchema(kind=kind, layer=layer, head=head, data=typed_array(view))
