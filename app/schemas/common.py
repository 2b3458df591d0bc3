"""Schemas shared by every area."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from app.settings import Backend


class TypedArray(BaseModel):
    """plotly's typed-array spec: little-endian bytes, base64, C order."""

    dtype: Literal["f4", "f8", "u1", "u2", "i2", "i4"]
    bdata: str = Field(description="base64 of the little-endian array bytes")
    shape: str = Field(description='comma-separated dimensions, e.g. "12, 6, 256"')


class AnalysisView(BaseModel):
    """The base of every answer read from one cached analysis (``POST /api/{vision,text}/analyze``'s id)."""

    analysis_id: str


# Fields that mean the same in the vision and the text answers, declared once.
ForwardMs = Annotated[
    float, Field(description="the forward pass that made this analysis (whoever asked first)")
]
HeadOrMean = Annotated[int | None, Field(description="null means the mean over heads")]


class ErrorResponse(BaseModel):
    """Every error answer (app/errors.py)."""

    detail: str = Field(description="what went wrong, for a person to read")


class BusyResponse(ErrorResponse):
    """A 503: a full queue or pool (``retry_after_s`` set, also as ``Retry-After``) or a model that could not
    be loaded."""

    retry_after_s: int | None = Field(None, description="seconds to wait before trying again (when busy)")


class ModelSummary(BaseModel):
    id: str
    task: Literal["vision", "text", "seq2seq", "causal-lm"]
    label: str
    source: str
    loaded: bool
    default: bool


class ModelsResponse(BaseModel):
    models: list[ModelSummary]


class HealthResponse(BaseModel):
    status: Literal["ok"]
    device: str
    dtype: str
    loaded_models: list[str]
    queue_pending: int
    queue_size: int
    backend: Backend = Field("local", description="where forwards run (README: backends)")
    replicas: dict[str, int] | None = Field(
        None, description="ray backend: running replicas per Serve deployment (Ingress, VisionModels, ...)"
    )
