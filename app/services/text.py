"""Text explorer service: analyse a sentence once (every layer, head and attention kind), then build the
views the page shows from the cached maps (framework-free: no FastAPI here).

Budgets (README "Resource model"):

- the forward pass runs on the backend, ``await state.backend.text_forward(model, ..., key=<analysis id>)``
  (app/backend: the model queue, or a Ray deployment), so identical in-flight requests share one forward;
- every derived view (the model view's statistics and thumbnails, one layer for the head view, one map for
  the matrix view) runs in the CPU pool and is cached in ``state.views`` per (analysis id, options), so 40
  identical GETs cost one computation and at most ``cpu_workers`` views are computed at once;
- views are built one layer at a time in float32 (:func:`models.text.stats.block_overview`): never an
  (L, H, T, T) float64 copy; the heads' row entropies come from the capture itself when it recorded them
  (``TextAnalysis.entropy``), so the default view makes no log pass over the heads' maps.

Errors are the :mod:`app.services.errors` family (TextError, InvalidOption, AnalysisExpired, ...).
"""

from __future__ import annotations

import numpy as np

from app.schemas.text import (
    HeadSchema,
    LayerSchema,
    TextAnalysisResponse,
    TokenCountResponse,
    ViewOptions,
)
from app.schemas.text_lines import LinesSchema
from app.schemas.text_views import Blocks, axes_schema, block_schema, overview_response
from app.serialization import typed_array
from app.services.errors import AnalysisExpired, InvalidOption, TextError
from app.services.views import cached_json, cached_view
from app.state import AppState
from models.text import views
from models.text.analysis import (
    BLOCK_ORDER,
    BlockKind,
    TextAnalysis,
    TextInputError,
    TextModel,
)
from models.text.budget import token_budget

# ----------------------------------------------------------------------------- models


def text_model(state: AppState, model_id: str | None) -> TextModel:
    """The allowlisted text model (app/store.py), loaded once per process (blocking: worker threads)."""
    return state.text_store.get(model_id)


async def text_model_async(state: AppState, model_id: str | None) -> TextModel:
    """The allowlisted text model; a first load runs off the event loop, merged per id (app/store.py)."""
    return await state.text_store.get_async(model_id)


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
    if a is None:
        # token limits are checked here, before the request takes a place in the model queue; tokenizing
        # (up to max_text_chars) is CPU work, so in the CPU pool, not on the event loop
        cost = 4 * len(text) + 4 * len(target or "")
        await state.cpu.run(check_tokens, model, [text], target, key=f"token-check:{aid}", cost=cost)
        a = await state.backend.text_forward(
            model, text, target, key=aid, cache=state.text_analyses, cost=cost
        )
    return await overview(state, aid, options, kind, layer, analysis=a)


def check_tokens(model: TextModel, texts: list[str], target: str | None = None) -> None:
    """:class:`TextError` when a text, or the target, has more tokens than the model takes. CPU work (it
    tokenizes up to ``max_text_chars``): callers run it in the CPU pool, not on the event loop."""
    try:
        for text in texts:
            model.tokenize(text)
        if target is not None:
            model.tokenize_target(target)
    except TextInputError as e:
        raise TextError(str(e)) from e


async def count_tokens(state: AppState, text: str, model_id: str | None) -> TokenCountResponse:
    """The live token counter: the text's length in the model's tokens, and the prefix that fits its limit.
    Bounded: the text by ``max_text_chars``, the work (tokenizer only, O(log n) tokenizations when over the
    limit) by the CPU pool, identical requests merged."""
    if len(text) > state.settings.limits.max_text_chars:
        check_text(state, text, "text")
    model = await text_model_async(state, model_id)
    key = state.keyed_id("tokens", model.info.id, text)
    b = await state.cpu.run(token_budget, model, text, key=key, cost=4 * len(text))
    return TokenCountResponse(
        model=model.info.id,
        tokens=b.tokens,
        max_tokens=b.max_tokens,
        fits_chars=b.fits_chars,
        per_character=b.per_character,
    )


# ----------------------------------------------------------------------------- views


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
    return views.layer_view(a, kind, layer, options.hide_special, options.merge_words)


def _options_key(options: ViewOptions) -> str:
    return f"{int(options.hide_special)}{int(options.merge_words)}"


def overview_view_bytes(a: TextAnalysis, options: ViewOptions) -> int:
    """float32 bytes of every block under the view options (decides whether maps go inline)."""
    return views.view_bytes(a, options.hide_special, options.merge_words)


def build_blocks(a: TextAnalysis, options: ViewOptions, thumb: int, inline_bytes: int) -> Blocks:
    """CPU-pool job: statistics and thumbnails of every block, one layer at a time in float32."""
    inline = overview_view_bytes(a, options) <= inline_bytes
    ovs = views.overviews(a, options.hide_special, options.merge_words, thumb, keep_view=inline)
    blocks = [block_schema(a, kind, ov) for kind, ov in ovs.items()]
    return Blocks(axes_schema(a, options.hide_special, options.merge_words), blocks, inline)


def build_layer(a: TextAnalysis, kind: str, layer: int, options: ViewOptions, dtype: str) -> LayerSchema:
    """CPU-pool job: one layer, every head, as uint8 (probability x 255) or float32."""
    view = layer_view(a, kind, layer, options)  # (H, Wq, Wk)
    data = typed_array(views.layer_u8(view), "u1") if dtype == "u1" else typed_array(view)
    return LayerSchema(kind=kind, layer=layer, data=data)


LINES_K = 6  # head view lines per (head, query) in the first response of a long input


def build_lines(a: TextAnalysis, kind: str, layer: int, options: ViewOptions, k: int) -> LinesSchema:
    """CPU-pool job: one layer's k strongest lines per (head, query) for the head view (index + uint8)."""
    index, weight = views.layer_lines(a, kind, layer, options.hide_special, options.merge_words, k)
    return LinesSchema(
        kind=kind,
        layer=layer,
        k=index.shape[-1],
        index=typed_array(index, "u2"),
        weight=typed_array(weight, "u1"),
    )


def build_head(a: TextAnalysis, kind: str, layer: int, head: int | None, options: ViewOptions) -> HeadSchema:
    """CPU-pool job: one head (or the mean of the shown heads) at full float32 precision."""
    view = views.head_view(a, kind, layer, head, options.hide_special, options.merge_words)  # (Wq, Wk)
    return HeadSchema(kind=kind, layer=layer, head=head, data=typed_array(view))


def build_overview(
    state: AppState,
    analysis_id: str,
    a: TextAnalysis,
    blocks: Blocks,
    options: ViewOptions,
    kind: str,
    layer: int,
) -> TextAnalysisResponse:
    """CPU-pool job: the overview response. Long inputs (blocks not inline) carry only what the first view
    draws: thumbnails, statistics and the first layer's top-k lines per (head, query); full layers, heads
    and rows are fetched on demand (``layer_maps``, ``head_map``, ``layer_lines``)."""
    first_lines = None if blocks.inline else build_lines(a, kind, layer, options, LINES_K)
    info = text_model(state, a.model_id).info  # loaded: it made the analysis
    return overview_response(analysis_id, info, a, blocks, options, first_lines)


async def overview(
    state: AppState,
    analysis_id: str,
    options: ViewOptions,
    kind: BlockKind | None,
    layer: int,
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
    blocks: Blocks = await cached_view(
        state, f"text-blocks|{analysis_id}|{opt}", build_blocks, a, options, thumb, inline_bytes
    )
    key = f"text-overview|{analysis_id}|{opt}|{kind}|{layer if not blocks.inline else 0}"
    return await cached_json(state, key, build_overview, state, analysis_id, a, blocks, options, kind, layer)


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
