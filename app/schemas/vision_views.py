"""Response schemas built from a vision analysis and its views (models/vision/views.py): one shape for the
web routes and the notebook (``app/notebook/vision.py``), so the page modules read one shape."""

from __future__ import annotations

import dataclasses

import numpy as np

from app.schemas.vision import (
    EntropyResponse,
    Grid,
    Prediction,
    RolloutOptions,
    VisionAnalysisResponse,
    VisionModelInfoSchema,
)
from app.serialization import typed_array
from models.vision import views
from models.vision.analysis import VisionAnalysis
from models.vision.registry import VisionModelInfo


def public_arch_tag(arch_tag: str) -> str:
    """The architecture tag as visitors see it: a local folder by its name, never its path."""
    if arch_tag.startswith("local-dir:"):
        return "local-dir:" + arch_tag.removeprefix("local-dir:").rstrip("/").rsplit("/", 1)[-1]
    return arch_tag


def model_info_schema(info: VisionModelInfo) -> VisionModelInfoSchema:
    """The model's description as every visitor sees it (no local path)."""
    return dataclasses.replace(info, arch_tag=public_arch_tag(info.arch_tag))


def analysis_response(
    analysis_id: str,
    image_hash: str,
    info: VisionModelInfo,
    a: VisionAnalysis,
    rollout: np.ndarray,
    options: RolloutOptions,
    image_url: str,
    forward_ms: float,
) -> VisionAnalysisResponse:
    """What ``/api/vision/analyze`` answers (``rollout``: (P,) with ``options``)."""
    return VisionAnalysisResponse(
        analysis_id=analysis_id,
        image_hash=image_hash,
        model=model_info_schema(info),
        grid=Grid(
            rows=a.grid[0],
            cols=a.grid[1],
            patch_size=info.patch_size,
            num_prefix_tokens=a.num_prefix_tokens,
            resolution=a.resolution,
        ),
        cls_query="cls" if a.has_cls else "mean_patch",
        cls_attention=typed_array(a.cls_attention),
        rollout=typed_array(rollout),
        rollout_options=options,
        predictions=[Prediction(label=lbl, probability=p) for lbl, p in a.predictions]
        if a.predictions is not None
        else None,
        image_url=image_url,
        forward_ms=round(forward_ms, 2),
    )


def entropy_response(
    analysis_id: str,
    info: VisionModelInfo,
    a: VisionAnalysis,
    entropy: np.ndarray,
    layer: int,
    head: int | None,
) -> EntropyResponse:
    """One layer's entropy map (one head, or the head mean) from the (L, H, P) :func:`views.patch_entropy`;
    IndexError for a layer or head out of range."""
    return EntropyResponse(
        analysis_id=analysis_id,
        model=info.id,
        label=info.label,
        layer=layer,
        head=head,
        max_entropy=views.max_entropy(a),
        values=typed_array(views.select_entropy(entropy, a.grid, layer, head)),  # (R, C)
        per_head=typed_array(views.mean_entropy(entropy)),  # (L, H)
    )
