"""Text explorer service: analyse a sentence once (every layer, head and attention kind), then build the
views the page shows from the cached maps (framework-free: no FastAPI here).

Budgets (README "Resource model"):

- the forward pass runs in the model queue, ``await state.queue.run(model.analyze, ..., key=<analysis id>)``,
  so identical in-flight requests share one forward;
- every derived view (the model view's statistics and thumbnails, one layer for the head view, one map for
  the matrix view) runs in the CPU pool and is cached in ``state.views`` per (analysis id, options), so 40
  identical GETs cost one computation and at most ``cpu_workers`` views are computed at once;
- views are built one layer at a time in float32 (:func:`models.text.stats.block_overview`): never an
  (L, H, T, T) float64 copy; the heads' row entropies come from the capture itself when it recorded them
  (``TextAnalysis.entropy``), so the default view makes no log pass over the heads' maps.

Errors are the :mod:`app.services.errors` family (TextError, InvalidOption, AnalysisExpired, ...).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from app.schemas.text import (
    BlockSchema,
    HeadSchema,
    LayerSchema,
    TextAnalysisResponse,
    TokenSide,
    ViewAxisSchema,
    ViewOptions,
)
from app.schemas.text_lines import LinesSchema
from app.serialization import typed_array
from app.services.backend import remote_models
from app.services.errors import AnalysisExpired, InvalidOption, ModelUnavailable, TextError
from app.services.views import cached_json, cached_view
from app.state import AppState, UnknownModel
from models.text.analysis import (
    BLOCK_ORDER,
    BlockKind,
    TextAnalysis,
    TextInputError,
    TextModel,
    TokenSeq,
    load_text_model,
)
from models.text.lines import top_k_lines
from models.text.stats import (
    STAT_LABELS,
    STAT_NAMES,
    Axis,
    apply_view,
    block_overview,
    build_axis,
    quantise_u8,
)

log = logging.getLogger("atlas.text")


# ----------------------------------------------------------------------------- models


def _load(state: AppState, model_id: str) -> TextModel:
    specs = state.settings.models.text_specs()
    with state.text_lock:
        if model_id not in state.text_models:
            try:
                state.text_models[model_id] = load_text_model(specs[model_id], state.device)
            except (OSError, ValueError, RuntimeError, ImportError) as e:
                raise ModelUnavailable(f"The text model {model_id!r} could not be loaded: {e}") from e
        return state.text_models[model_id]


def _model_id(state: AppState, model_id: str | None) -> str:
    model_id = model_id or state.settings.models.default_text_model
    specs = state.settings.models.text_specs()
    if model_id not in specs:
        raise UnknownModel(f"Unknown text model {model_id!r}. Available: {', '.join(specs)}.")
    return model_id


def text_model(state: AppState, model_id: str | None) -> TextModel:
    """The allowlisted text model, loaded once per process (blocking; for worker threads and the lifespan)."""
    return _load(state, _model_id(state, model_id))


async def text_model_async(state: AppState, model_id: str | None) -> TextModel:
    """The allowlisted text model; a first load runs in the model queue (merged per model id)."""
    model_id = _model_id(state, model_id)
    with state.text_lock:
        loaded = state.text_models.get(model_id)
    if loaded is not None:
        return loaded
    return await state.queue.run(_load, state, model_id, key=f"text-model|{model_id}")


def preload(state: AppState) -> None:
    """Lifespan hook: load the default encoder and encoder-decoder so the first request is fast."""
    for model_id in (state.settings.models.default_text_model, state.settings.models.default_seq2seq_model):
        if model_id in state.settings.models.text_specs():
            try:
                text_model(state, model_id)
            except ModelUnavailable as e:  # the app still serves everything else; requests get the 503
                log.warning("text model %s not preloaded: %s", model_id, e)


# ----------------------------------------------------------------------------- analyses


def check_text(state: AppState, text: str, what: str) -> None:
    if not text.strip():
        raise TextError(f"The {what} is empty: type a sentence.")
    limit = state.settings.limits.max_text_chars
    if len(text) > limit:
        raise TextError(
            f"The {what} is {len(text):,} characters long; the limit is {limit:,} characters.", 413
        )


def get_analysis(state: AppState, analysis_id: str) -> TextAnalysis:
    a = state.text_analyses.get(analysis_id)
    if a is None:
        raise AnalysisExpired("text")
    return a


def _forward(state: AppState, model: TextModel, aid: str, text: str, target: str | None) -> TextAnalysis:
    """Model-queue job: one captured forward, stored before the merged waiters wake up."""
    a = state.text_analyses.get(aid)  # a merged twin may have finished just before this job started
    if a is None:
        try:
            a = model.analyze(text, target)
        except TextInputError as e:  # checked before queueing; kept for models whose limits move
            raise TextError(str(e)) from e
        state.text_analyses.put(aid, a)
    return a


async def analyze(
    state: AppState,
    text: str,
    model_id: str | None,
    target: str | None,
    options: ViewOptions,
    kind: BlockKind | None,
    layer: int,
) -> bytes:
    """Run the model once with attention capture (or reuse the cached analysis); the overview JSON.

    ``target``: None or "" = the model's own greedy output (encoder-decoder models only take a target).
    The analysis id is a keyed hash of (model, text, target) under the server secret.
    """
    check_text(state, text, "text")
    model = await text_model_async(state, model_id)
    target = target or None
    if target is not None:
        if model.info.kind != "seq2seq":
            raise InvalidOption(
                f"{model.info.label} is an {model.info.kind} model without a separate decoder: "
                "a target text only applies to encoder-decoder models.",
            )
        check_text(state, target, "target text")
    aid = state.keyed_id("text", model.info.id, text, target or "", str(target is None))
    a = state.text_analyses.get(aid)
    cached = a is not None
    if a is None:
        try:  # token limits are checked here, before the request takes a place in the model queue
            model.tokenize(text)
            if target is not None:
                model.tokenize_target(target)
        except TextInputError as e:
            raise TextError(str(e)) from e
        cost = 4 * len(text) + 4 * len(target or "")
        remote = remote_models(state)
        if remote is not None:  # ray backend: the forward runs in a TextModels replica
            a = await remote.text_forward(model.info.id, text, target, aid)
            state.text_analyses.put(aid, a)
        else:
            a = await state.queue.run(_forward, state, model, aid, text, target, key=aid, cost=cost)
    return await overview(state, aid, options, kind, layer, cached=cached, analysis=a)


# ----------------------------------------------------------------------------- views


def _axis(seq: TokenSeq, options: ViewOptions, hide: bool | None = None) -> Axis:
    hide = options.hide_special if hide is None else hide
    return build_axis(seq.tokens, seq.special, seq.word_ids, hide, options.merge_words)


def _check_block(a: TextAnalysis, kind: str, layer: int | None = None, head: int | None = None) -> None:
    if kind not in a.blocks:
        raise InvalidOption(f"This model has no {kind} attention; it has: {', '.join(a.blocks)}.")
    L, H = a.blocks[kind].shape[:2]
    if layer is not None and layer >= L:
        raise InvalidOption(f"layer {layer} does not exist: {kind} has layers 0..{L - 1}.")
    if head is not None and head >= H:
        raise InvalidOption(f"head {head} does not exist: {kind} has heads 0..{H - 1}.")


def layer_view(a: TextAnalysis, kind: str, layer: int, options: ViewOptions) -> np.ndarray:
    """(H, Wq, Wk) float32: every head of one layer under the view options."""
    q, k, _ = a.axes[kind]
    qa, ka = _axis(a.side(q), options), _axis(a.side(k), options)
    return apply_view(a.blocks[kind][layer], qa, ka, renormalise=options.hide_special)  # (H, Wq, Wk)


def _options_key(options: ViewOptions) -> str:
    return f"{int(options.hide_special)}{int(options.merge_words)}"


@dataclass(frozen=True)
class _Blocks:
    """The option-dependent part of an overview: axes and every block's schema (cached per options)."""

    axes: dict[str, ViewAxisSchema]
    blocks: list[BlockSchema]
    inline: bool

    @property
    def nbytes(self) -> int:
        arrays = [x for b in self.blocks for x in (b.thumbs, b.thumb_scale, b.stats, b.data) if x is not None]
        labels = sum(len(x.labels) for x in self.axes.values())
        return sum(len(x.bdata) for x in arrays) + 64 * labels + 1024


def overview_view_bytes(a: TextAnalysis, options: ViewOptions) -> int:
    """float32 bytes of every block under the view options (decides whether maps go inline)."""
    axes = {"source": len(_axis(a.source, options).spans)}
    if a.target is not None:
        axes["target"] = len(_axis(a.target, options).spans)
    return sum(
        4 * b.shape[0] * b.shape[1] * axes[a.axes[n][0]] * axes[a.axes[n][1]] for n, b in a.blocks.items()
    )


def build_blocks(a: TextAnalysis, options: ViewOptions, thumb: int, inline_bytes: int) -> _Blocks:
    """CPU-pool job: statistics and thumbnails of every block, one layer at a time in float32."""
    axes = {"source": _axis(a.source, options)}
    if a.target is not None:
        axes["target"] = _axis(a.target, options)
    inline = overview_view_bytes(a, options) <= inline_bytes
    blocks = []
    for kind in (b for b in BLOCK_ORDER if b in a.blocks):
        q, k, causal = a.axes[kind]
        ov = block_overview(
            a.blocks[kind],
            axes[q],
            axes[k],
            _axis(a.side(q), options, hide=False),
            _axis(a.side(k), options, hide=False),
            options.hide_special,
            same_axis=q == k,
            thumb=thumb,
            keep_view=inline,
            row_entropy=a.entropy.get(kind),
        )
        L, H = a.blocks[kind].shape[:2]
        blocks.append(
            BlockSchema(
                kind=kind,
                query_side=q,
                key_side=k,
                causal=causal,
                layers=L,
                heads=H,
                n_query=ov.n_query,
                n_key=ov.n_key,
                thumbs=typed_array(ov.thumbs, "u1"),
                thumb_scale=typed_array(ov.thumb_scale),
                stats=typed_array(ov.stats),
                data=typed_array(ov.view) if ov.view is not None else None,
            )
        )
    schemas = {n: ViewAxisSchema(labels=x.labels, special=x.special, spans=x.spans) for n, x in axes.items()}
    return _Blocks(schemas, blocks, inline)


def build_layer(a: TextAnalysis, kind: str, layer: int, options: ViewOptions, dtype: str) -> LayerSchema:
    """CPU-pool job: one layer, every head, as uint8 (probability x 255) or float32."""
    view = layer_view(a, kind, layer, options)  # (H, Wq, Wk)
    data = typed_array(quantise_u8(view, per_map=False)[0], "u1") if dtype == "u1" else typed_array(view)
    return LayerSchema(kind=kind, layer=layer, data=data)


LINES_K = 6  # head view lines per (head, query) in the first response of a long input


def build_lines(a: TextAnalysis, kind: str, layer: int, options: ViewOptions, k: int) -> LinesSchema:
    """CPU-pool job: one layer's k strongest lines per (head, query) for the head view (index + uint8)."""
    index, weight = top_k_lines(layer_view(a, kind, layer, options), k)  # (H, Wq, k) each
    return LinesSchema(
        kind=kind,
        layer=layer,
        k=index.shape[-1],
        index=typed_array(index, "u2"),
        weight=typed_array(weight, "u1"),
    )


def build_head(a: TextAnalysis, kind: str, layer: int, head: int | None, options: ViewOptions) -> HeadSchema:
    """CPU-pool job: one head (or the mean of the shown heads) at full float32 precision."""
    views = layer_view(a, kind, layer, options)  # (H, Wq, Wk)
    view = views[head] if head is not None else views.mean(axis=0)  # (Wq, Wk)
    return HeadSchema(kind=kind, layer=layer, head=head, data=typed_array(view))


def _side(s: TokenSeq | None) -> TokenSide | None:
    return None if s is None else TokenSide(tokens=s.tokens, special=s.special, word_ids=s.word_ids)


def build_overview(
    state: AppState,
    analysis_id: str,
    a: TextAnalysis,
    blocks: _Blocks,
    options: ViewOptions,
    kind: str,
    layer: int,
    cached: bool,
) -> TextAnalysisResponse:
    """CPU-pool job: the overview response. Long inputs (blocks not inline) carry only what the first view
    draws: thumbnails, statistics and the first layer's top-k lines per (head, query); full layers, heads
    and rows are fetched on demand (``layer_maps``, ``head_map``, ``layer_lines``)."""
    first_lines = None if blocks.inline else build_lines(a, kind, layer, options, LINES_K)
    info = text_model(state, a.model_id).info  # loaded: it made the analysis
    return TextAnalysisResponse(
        analysis_id=analysis_id,
        model=info,
        source=_side(a.source),
        target=_side(a.target),
        generated_text=a.generated_text,
        predicted=a.predicted,
        options=options,
        axes=blocks.axes,
        blocks=blocks.blocks,
        stat_names=list(STAT_NAMES),
        stat_labels=[STAT_LABELS[n] for n in STAT_NAMES],
        first=None,
        first_lines=first_lines,
        inline=blocks.inline,
        forward_ms=round(a.forward_ms, 2),
        cached=cached,
    )


async def overview(
    state: AppState,
    analysis_id: str,
    options: ViewOptions,
    kind: BlockKind | None,
    layer: int,
    cached: bool = True,
    analysis: TextAnalysis | None = None,
) -> bytes:
    """The analysis under view options (no new forward pass) as TextAnalysisResponse JSON.

    Two CPU-pool jobs, each merged in flight and cached: every block's statistics and thumbnails per
    (analysis id, options), then the response (with the first view's layer) per (options, kind, layer).
    """
    a = analysis if analysis is not None else get_analysis(state, analysis_id)
    kind = kind or next(b for b in BLOCK_ORDER if b in a.blocks)
    _check_block(a, kind, layer)
    opt = _options_key(options)
    thumb, inline_bytes = state.settings.limits.text_thumb_size, state.settings.limits.text_inline_kb * 1024
    blocks: _Blocks = await cached_view(
        state, f"text-blocks|{analysis_id}|{opt}", build_blocks, a, options, thumb, inline_bytes
    )
    key = f"text-overview|{analysis_id}|{opt}|{kind}|{layer if not blocks.inline else 0}|{int(cached)}"
    return await cached_json(
        state, key, build_overview, state, analysis_id, a, blocks, options, kind, layer, cached
    )


async def layer_maps(
    state: AppState,
    analysis_id: str,
    kind: BlockKind,
    layer: int,
    options: ViewOptions,
    dtype: str,
) -> bytes:
    """Every head of one layer (the head view) as LayerSchema JSON, built in the CPU pool and cached."""
    a = get_analysis(state, analysis_id)
    _check_block(a, kind, layer)
    key = f"text-layer|{analysis_id}|{kind}|{layer}|{_options_key(options)}|{dtype}"
    return await cached_json(state, key, build_layer, a, kind, layer, options, dtype)


async def head_map(
    state: AppState, analysis_id: str, kind: BlockKind, layer: int, head: int | None, options: ViewOptions
) -> bytes:
    """One layer/head (or the head mean) at float32 (the matrix view) as HeadSchema JSON, built in the
    CPU pool and cached."""
    a = get_analysis(state, analysis_id)
    _check_block(a, kind, layer, head)
    key = f"text-head|{analysis_id}|{kind}|{layer}|{head}|{_options_key(options)}"
    return await cached_json(state, key, build_head, a, kind, layer, head, options)


async def layer_lines(
    state: AppState, analysis_id: str, kind: BlockKind, layer: int, options: ViewOptions, k: int
) -> bytes:
    """One layer's k strongest lines per (head, query) as LinesSchema JSON (head view of a long input),
    built in the CPU pool and cached."""
    a = get_analysis(state, analysis_id)
    _check_block(a, kind, layer)
    key = f"text-lines|{analysis_id}|{kind}|{layer}|{_options_key(options)}|{k}"
    return await cached_json(state, key, build_lines, a, kind, layer, options, k)
