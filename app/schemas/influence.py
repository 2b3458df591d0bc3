"""Responses of /api/influence (issue 15): ALTI contributions, Chefer relevancy, deletion/insertion curves."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.schemas.common import AnalysisView, TypedArray


class ContributionsResponse(AnalysisView):
    family: str = Field(description='"text" or "vision"')
    labels: list[str] = Field(description="text: the encoder's tokens; vision: empty")
    layers: TypedArray = Field(
        description="text: (L, T, T) float32 C_l[i, j]; vision: (L, P) [CLS] row of C_l"
    )
    rollout: TypedArray = Field(description="same shape: R_l = C_l ... C_1 (ALTI Section 3.3)")
    attention_rollout: TypedArray | None = Field(None, description="vision: (P,) attention rollout")


class RelevanceResponse(AnalysisView):
    target: str = Field(description="the output explained, in words")
    value: float = Field(description="its value on the unperturbed input")
    relevance: TypedArray = Field(description="(n,) float32 over the source tokens or the patches")
    rollout: TypedArray = Field(description="(n,) attention rollout's map of the same output")
    attention: TypedArray = Field(description="(n,) the last layer's head-mean attention of the same output")
    decoder: TypedArray | None = Field(None, description="date model: (step + 1,) over the decoder's inputs")
    step: int | None = None
    token: str | None = None
    query: int | None = None
    compute_ms: float = Field(
        description="time of the backward pass that made this map (whoever asked first)"
    )


class CurveSchema(BaseModel):
    ranking: str = Field(description='"relevancy", "rollout" or "attention"')
    deletion: list[float]
    insertion: list[float]
    deletion_auc: float
    insertion_auc: float


class CurvesResponse(AnalysisView):
    output: str = Field(description="the output the curves follow")
    removal: str = Field(description="what removing a unit means")
    units: int
    fractions: list[float]
    curves: list[CurveSchema]
    compute_ms: float
