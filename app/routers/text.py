"""Text API: analyse a sentence once (every layer, head and attention kind), then serve views and slices
of the cached maps per layer / head. Small inputs ship whole; large ones ship thumbnails, statistics and
the first view's layer, and the rest is fetched on demand (bertviz inlines everything as JSON lists).

Routes parse and validate, then call :mod:`app.services.text`: forwards run in the model queue, views in
the CPU pool, both answered 503 + Retry-After when full. Views come back as cached JSON bytes, returned
as they are (``response_model`` documents them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response

from app.deps import StateDep
from app.errors import errors_doc
from app.schemas.neuron import NeuronResponse
from app.schemas.offsets import OffsetsResponse
from app.schemas.text import (
    BlockKind,
    HeadSchema,
    LayerSchema,
    TextAnalysisResponse,
    TextAnalyzeRequest,
    TokenCountRequest,
    TokenCountResponse,
    ViewOptions,
)
from app.schemas.text_lines import LinesSchema
from app.services import neuron as neuron_service
from app.services import offsets as offsets_service
from app.services import text as service

router = APIRouter(prefix="/api/text", tags=["text"])
ERRORS = errors_doc(400, 404, 413, 422, 503)

Kind = Annotated[BlockKind, Query(description="encoder_self, decoder_self or cross")]
Hide = Annotated[bool, Query()]
Layer = Annotated[int, Query(ge=0)]


async def view_options(hide_special: Hide = False, merge_words: Hide = False) -> ViewOptions:
    """The two view options every derived text view takes as query parameters."""
    return ViewOptions(hide_special=hide_special, merge_words=merge_words)


Options = Annotated[ViewOptions, Depends(view_options)]


@dataclass(frozen=True)
class LayerView:
    """One layer of one analysis under the view options: the query the layer, head and lines routes share."""

    analysis_id: str
    kind: BlockKind
    layer: int
    options: ViewOptions


async def layer_view(analysis_id: str, kind: Kind, layer: Layer, options: Options) -> LayerView:
    return LayerView(analysis_id, kind, layer, options)


At = Annotated[LayerView, Depends(layer_view)]
Dtype = Annotated[Literal["u1", "f4"], Query(description="u1: probability x 255, rounded")]
HeadOrMean = Annotated[int | None, Query(ge=0, description="omit for the mean over heads")]
LinesK = Annotated[int, Query(ge=1, le=64, description="lines per (head, query)")]


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


@router.post("/tokens", responses=ERRORS)
async def tokens(state: StateDep, req: TokenCountRequest) -> TokenCountResponse:
    """How many tokens the text is for the model (the page's live counter), and the prefix that fits."""
    return await service.count_tokens(state, req.text, req.model)


@router.post("/analyze", response_model=TextAnalysisResponse, responses=ERRORS)
async def analyze(state: StateDep, req: TextAnalyzeRequest) -> Response:
    """Run the model once with attention capture; the maps stay in a bounded server-side cache."""
    options = ViewOptions(hide_special=req.hide_special, merge_words=req.merge_words)
    return _json(await service.analyze(state, req.text, req.model, req.target, options, req.kind, req.layer))


@router.get("/analysis/{analysis_id}", response_model=TextAnalysisResponse, responses=ERRORS)
async def overview(
    state: StateDep,
    analysis_id: str,
    options: Options,
    kind: Annotated[BlockKind | None, Query()] = None,
    layer: Layer = 0,
) -> Response:
    """The analysis under other view options (no new forward pass)."""
    return _json(await service.overview(state, analysis_id, options, kind, layer))


@router.get("/analysis/{analysis_id}/layer", response_model=LayerSchema, responses=ERRORS)
async def layer_maps(state: StateDep, at: At, dtype: Dtype = "u1") -> Response:
    """Every head of one layer (the head view)."""
    return _json(await service.layer_maps(state, at.analysis_id, at.kind, at.layer, at.options, dtype))


@router.get("/analysis/{analysis_id}/head", response_model=HeadSchema, responses=ERRORS)
async def head_map(state: StateDep, at: At, head: HeadOrMean = None) -> Response:
    """One layer/head (or the head mean) at full float32 precision (the matrix view)."""
    return _json(await service.head_map(state, at.analysis_id, at.kind, at.layer, head, at.options))


@router.get("/analysis/{analysis_id}/lines", response_model=LinesSchema, responses=ERRORS)
async def layer_lines(state: StateDep, at: At, k: LinesK = service.LINES_K) -> Response:
    """One layer's k strongest lines per (head, query): the head view of a long input."""
    return _json(await service.layer_lines(state, at.analysis_id, at.kind, at.layer, at.options, k))


@router.get("/analysis/{analysis_id}/neuron", response_model=NeuronResponse, responses=ERRORS)
async def neuron_view(
    state: StateDep,
    analysis_id: str,
    kind: Kind,
    layer: Layer,
    head: Annotated[int, Query(ge=0)],
    query: Annotated[int, Query(ge=0, description="query token index on the raw (unmerged) axis")],
) -> Response:
    """The neuron view: q, every k, q·k, q·k/sqrt(d_k) and the softmax for one layer, head and query."""
    return _json(await neuron_service.neuron(state, analysis_id, kind, layer, head, query))


# --- relative offsets (issue 8, section 6) ------------------------------------------------------------

Window = Annotated[int, Query(ge=1, le=32, description="offsets -W..W, plus the mass beyond on each side")]


@router.get("/offsets", response_model=OffsetsResponse, responses=ERRORS)
async def offsets_corpus(state: StateDep, model: str | None = None, window: Window = 8) -> Response:
    """Every head's attention mass by relative offset (key - query), over the model's bundled inputs."""
    return _json(await offsets_service.corpus(state, model, window))


@router.get("/analysis/{analysis_id}/offsets", response_model=OffsetsResponse, responses=ERRORS)
async def offsets_analysis(state: StateDep, analysis_id: str, window: Window = 8) -> Response:
    """Every head's attention mass by relative offset for one analysis."""
    return _json(await offsets_service.for_analysis(state, analysis_id, window))
