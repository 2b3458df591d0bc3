"""Schemas of the ViT-figure APIs: embeddings (ViT Fig. 7 left/centre) and attention distance (Fig. 7 right)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from app.jobs import JobStatus
from app.schemas.common import TypedArray
from models.vision.distance import Unit as DistanceUnit  # noqa: E402 (one declaration, in models)


class PositionSimilarityResponse(BaseModel):
    model: str
    rows: int = Field(description="rows R of the stored position-embedding grid")
    cols: int = Field(description="columns C of the stored position-embedding grid")
    embed_dim: int
    prefix_tokens_left_out: int = Field(
        description="prefix tokens of the model ([CLS], distillation, registers)"
    )
    stride: int = Field(description="every stride-th position (row and column) is shown as a tile")
    tile_rows: list[int] = Field(description="grid rows of the shown tiles, 0-based")
    tile_cols: list[int] = Field(description="grid columns of the shown tiles, 0-based")
    tiles: TypedArray = Field(
        description="(len(tile_rows), len(tile_cols), R, C): cosine similarity of the tile's position "
        "embedding with every position's. dtype u1 encodes cos = scale_min + q * (scale_max - scale_min) / 255"
    )
    scale_min: float
    scale_max: float
    min_off_diagonal: float = Field(description="smallest cosine between two different positions")
    max_off_diagonal: float = Field(description="largest cosine between two different positions")


class PatchFiltersResponse(BaseModel):
    model: str
    patch_size: int
    embed_dim: int = Field(description="D: the number of filters (rows of the projection E)")
    n_components: int
    rgb_tiles: TypedArray = Field(description="(k, p, p, 3) uint8, each component min-max scaled on its own")
    components: TypedArray = Field(description="(k, 3, p, p) float32, unit-norm principal axes")
    explained_variance_ratio: TypedArray = Field(description="(k,) float64 share of the filters' variance")


class DistanceGeometry(BaseModel):
    num_layers: int
    num_heads: int
    patch_size: int
    rows: int
    cols: int
    resolution: int
    num_prefix_tokens: int


class DistanceResultSchema(BaseModel):
    model: str
    label: str
    source: Literal["analysis", "samples", "upload"]
    source_label: str = Field(description="what the images were, for legends")
    n_images: int
    unit: DistanceUnit
    renormalize: bool
    geometry: DistanceGeometry
    mad: TypedArray = Field(description="(layers, heads) float64 mean attention distance in `unit`")
    per_layer_mean: TypedArray = Field(description="(layers,) float64 mean over heads")


class DistanceJobResponse(BaseModel):
    job_id: str
    status: JobStatus
    done: int = Field(description="images processed so far")
    total: int | None
    elapsed_s: float
    error: str | None = None
    model: str
    source: Literal["samples", "upload"]
    renormalize: bool
    batch_size: int
    reused: bool = Field(False, description="an identical finished job's result was reused")
    result: DistanceResultSchema | None = None
    job_url: str
    cancel_url: str


class ReceptiveFieldResponse(BaseModel):
    network: str
    unit: DistanceUnit
    num_layers: int = Field(description="the ViT depth the CNN layers are placed on (relative depth)")
    x: TypedArray = Field(description="(n,) float64 position on the ViT's 0-based layer axis")
    rf: TypedArray = Field(description="(n,) float64 theoretical receptive field in `unit`")
    rf_pixels: list[int]
    names: list[str] = Field(description="CNN layer names, e.g. layer3.5.conv2")
    depth_index: list[int] = Field(description="1-based count of weighted layers up to this one")
    uniform_window: TypedArray = Field(
        description="(n,) float64 mean attention distance (in `unit`) that uniform attention over each CNN "
        "layer's receptive-field window (k x k px around the query, clipped to the image) has on the ViT's "
        "grid: the comparable quantity to plot (a receptive field is a width, not a mean distance)"
    )
    uniform_image: float = Field(
        description="mean attention distance of uniform attention over the whole image"
    )
    max_distance: float = Field(
        description="the largest mean attention distance any head can have: every query attends only to its "
        "farthest patch"
    )
    image_diagonal: float = Field(description="the image diagonal in `unit`")
