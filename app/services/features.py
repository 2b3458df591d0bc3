"""Features and norms views of a cached vision analysis (models/vision/feature_views.py), as responses.

Each view is a pure ``build_*`` run in the CPU pool and cached as JSON bytes per (analysis id, options)
(:func:`app.services.views.cached_json`): a repeated request is a cache read. Index errors are 400s, and an
analysis without the residual stream (made by another storage) is a 409 that says to analyse again.
"""

from __future__ import annotations

import numpy as np

from app.schemas.features import (
    FeaturesPCAResponse,
    NormsResponse,
    PartsResponse,
    SimilarityResponse,
    SinksResponse,
)
from app.serialization import typed_array
from app.services.errors import InvalidOption, ServiceError
from app.services.views import cached_json
from app.state import AppState
from models.vision import feature_views as fv
from models.vision.analysis import VisionAnalysis

MAX_K = 16  # K-means parts: the most the page offers (colours stay distinguishable)


def _u8(values: np.ndarray) -> np.ndarray:
    return np.round(np.nan_to_num(values, nan=0.0) * 255).astype(np.uint8)


def build_pca(aid: str, a: VisionAnalysis, threshold: float, foreground_only: bool, flip: bool):
    out = fv.features_pca(a, threshold, foreground_only, flip)
    rows, cols = a.grid
    return FeaturesPCAResponse(
        analysis_id=aid,
        threshold=out.threshold,
        foreground_only=out.foreground_only,
        flipped=out.flipped,
        first=typed_array(out.first.reshape(rows, cols)),
        rgb=typed_array(_u8(out.rgb).reshape(rows, cols, 3), "u1"),
        foreground=typed_array(out.foreground.reshape(rows, cols), "u1"),
        explained=[float(x) for x in out.explained],
        first_explained=out.first_explained,
        first_range=[float(out.first.min()), float(out.first.max())],
    )


def build_similarity(aid: str, a: VisionAnalysis, patch: int, layer: int | None):
    values = fv.similarity(a, patch, layer)  # (R, C)
    return SimilarityResponse(analysis_id=aid, patch=patch, layer=layer, values=typed_array(values))


def build_parts(aid: str, a: VisionAnalysis, k: int, seed: int, layer: int | None):
    labels, fit = fv.parts([a], k, seed, layer)
    return PartsResponse(
        analysis_id=aid,
        k=k,
        seed=seed,
        layer=layer,
        labels=typed_array(labels[0], "u1"),
        iterations=fit.iterations,
        converged=fit.converged,
        inertia=fit.inertia,
    )


def build_norms(aid: str, a: VisionAnalysis, k: float):
    st = fv.norms(a, k)
    grid = (st.norms.shape[0], *a.grid)
    return NormsResponse(
        analysis_id=aid,
        k=st.k,
        norms=typed_array(st.norms.reshape(grid)),
        prefix_norms=typed_array(st.prefix_norms),
        median=st.median.tolist(),
        mad=st.mad.tolist(),
        threshold=st.threshold.tolist(),
        outliers=[int(c) for c in st.counts],
        max_ratio=st.max_ratio.tolist(),
        outlier_mask=typed_array(st.outliers.reshape(grid), "u1"),
        summary=st.summary(),
    )


def build_sinks(aid: str, a: VisionAnalysis, patch_size: int, k: float):
    s = fv.sinks(a, patch_size, k)
    has_cls = bool(a.has_cls and a.num_prefix_tokens > 0)
    regs = a.num_prefix_tokens - (1 if has_cls else 0)
    mass = s.mass.mean(axis=(0, 1))  # (3,)
    cls = f"{mass[0]:.1%} to [CLS]" if has_cls else "nothing to [CLS] (this model has none)"
    reg = f"{mass[1]:.1%} to its {regs} other prefix token(s)" if regs else "none to registers (it has none)"
    summary = (
        f"Averaged over layers and heads, the patch queries give {cls}, {reg} and {mass[2]:.1%} to "
        "outlier patches. " + s.stats.summary()
    )
    return SinksResponse(
        analysis_id=aid,
        k=s.stats.k,
        mass=typed_array(s.mass),
        rollout=typed_array(s.rollout.reshape(a.grid)),
        rollout_without=typed_array(s.rollout_without.reshape(a.grid)),
        distance=typed_array(s.distance),
        distance_without=typed_array(s.distance_without),
        num_registers=regs,
        has_cls=has_cls,
        summary=summary,
    )


def _checked(fn, *args):
    """Run a builder; out-of-range indices are 400s, a missing stream a 409."""
    try:
        return fn(*args)
    except IndexError as e:
        raise InvalidOption(str(e)) from e
    except fv.NoFeatures as e:
        raise ServiceError(str(e), 409) from e


async def pca_view(state: AppState, aid: str, a: VisionAnalysis, threshold: float, fg: bool, flip: bool):
    key = ("features-pca", aid, repr(round(float(threshold), 4)), fg, flip)
    return await cached_json(state, key, _checked, build_pca, aid, a, round(float(threshold), 4), fg, flip)


async def similarity_view(state: AppState, aid: str, a: VisionAnalysis, patch: int, layer: int | None):
    return await cached_json(
        state, ("similarity", aid, patch, layer), _checked, build_similarity, aid, a, patch, layer
    )


async def parts_view(state: AppState, aid: str, a: VisionAnalysis, k: int, seed: int, layer: int | None):
    if not 2 <= k <= MAX_K:
        raise InvalidOption(f"k must be in 2..{MAX_K}, not {k}")
    return await cached_json(
        state, ("parts", aid, k, seed, layer), _checked, build_parts, aid, a, k, seed, layer
    )


async def norms_view(state: AppState, aid: str, a: VisionAnalysis, k: float):
    k = round(float(k), 2)
    return await cached_json(state, ("norms", aid, repr(k)), _checked, build_norms, aid, a, k)


async def sinks_view(state: AppState, aid: str, a: VisionAnalysis, patch_size: int, k: float):
    k = round(float(k), 2)
    return await cached_json(state, ("sinks", aid, repr(k)), _checked, build_sinks, aid, a, patch_size, k)
