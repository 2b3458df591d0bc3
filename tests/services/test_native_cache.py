"""Cache accounting of compact analyses (docs/resource-model.md): the analysis cache counts the bytes an analysis
holds (the float16 residual stream, not the maps it no longer keeps), so the default 768 MB cache keeps at least
50 analyses of DINOv2 ViT-S/14 at 448 px and 30 at 518 px."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from app.cache import BoundedCache
from app.settings import Settings
from app.state import MB, analysis_nbytes
from models.vision.analysis import FULL_MAPS_MAX_BYTES, VisionAnalysis

L, H, D = 12, 6, 384  # DINOv2 ViT-S/14


def dinov2_analysis(resolution: int, full: bool = False) -> VisionAnalysis:
    side = resolution // 14
    n, p = side * side + 1, side * side
    return VisionAnalysis(
        model_id="dinov2_vits14",
        resolution=resolution,
        grid=(side, side),
        num_prefix_tokens=1,
        attentions=torch.zeros((L, H, n, n), dtype=torch.float16) if full else None,
        cls_attention=np.zeros((L, H, p), np.float32),
        rollout=np.zeros(p, np.float32),
        predictions=None,
        image=Image.new("RGB", (resolution, resolution)),
        hidden=None if full else torch.zeros((L, n, D), dtype=torch.float16),
        embed=None if full else torch.zeros((n, D), dtype=torch.float16),
        mad=np.zeros((L, H)),
    )


def formula(resolution: int, full: bool) -> int:
    """docs/resource-model.md: 2 L H N^2 (full maps) or 2 (L + 1) N D (stream), + 4 L H P + 4 P + 8 L H + 3 R^2."""
    side = resolution // 14
    n, p = side * side + 1, side * side
    kept = 2 * L * H * n * n if full else 2 * (L + 1) * n * D
    return kept + 4 * L * H * p + 4 * p + 8 * L * H + 3 * resolution**2


@pytest.mark.parametrize(
    ("resolution", "full", "at_least"), [(224, False, 50), (448, False, 50), (518, False, 30)]
)
def test_default_cache_holds_enough_analyses(resolution: int, full: bool, at_least: int) -> None:
    a = dinov2_analysis(resolution, full)
    assert analysis_nbytes(a) == formula(resolution, full)
    assert (2 * L * H * (resolution // 14) ** 4 <= FULL_MAPS_MAX_BYTES) == full  # the server's own choice
    cache = BoundedCache(Settings().caches.analysis_mb * MB, 3600, analysis_nbytes)
    for i in range(at_least + 10):
        cache.put(f"a{i}", dinov2_analysis(resolution, full))
    assert len(cache) >= at_least and cache.nbytes <= cache.max_bytes
    assert cache.nbytes == len(cache) * formula(resolution, full)


def test_full_maps_are_counted_with_the_maps() -> None:
    """An analysis that keeps its maps (small models and inputs, or keep_maps=True) is counted with them."""
    a = dinov2_analysis(224, full=True)
    assert analysis_nbytes(a) == formula(224, True) > 9 * MB
