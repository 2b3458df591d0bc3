"""The features and norms views on a notebook's :class:`app.notebook.vision.VisionResult` (issue 16).

A mixin: every method calls the pure function of ``models/vision/feature_views.py`` that the web routes and
``python -m app export --features`` call, on the result's analysis, so the three doors give the same numbers.

    r = show_vision("dinov2_vits14", "cat.jpg")
    pca = r.features_pca()              # .rgb (P, 3) in [0, 1], .first (P,), .foreground (P,), .threshold
    r.similarity(patch=40, layer=None)  # (rows, cols) cosine to patch 40, last layer after the final norm
    r.parts(k=5, seed=0)                # (rows, cols) K-means labels
    r.norms                             # NormStats: (L, P) norms, median, MAD, outliers, .summary()
    r.sink_mass                         # (L, H, 3): attention to [CLS], registers, outlier patches
    features_pca_set([r1, r2, r3])      # one PCA over several results: one colour, one feature direction
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.vision import feature_views as fv
from models.vision.features import FeaturePCA
from models.vision.norms import MAD_K, NormStats


class FeatureMethods:
    """Mixed into VisionResult: needs ``self.analysis`` (VisionAnalysis) and ``self.patch_size``."""

    def features_pca(
        self, threshold: float = 0.0, foreground_only: bool = True, flip: bool = False
    ) -> FeaturePCA:
        """DINOv2 Fig. 1: the last layer's patch features as RGB (models/vision/features.py)."""
        return fv.features_pca(self.analysis, threshold, foreground_only, flip)  # type: ignore[attr-defined]

    def similarity(self, patch: int, layer: int | None = None) -> np.ndarray:
        """(rows, cols) cosine similarity of patch ``patch`` (0-based, row-major) to every patch at ``layer``
        (0-based block; None: the last layer after the final norm)."""
        return fv.similarity(self.analysis, patch, layer)  # type: ignore[attr-defined]

    def parts(self, k: int = 4, seed: int = 0, layer: int | None = None) -> np.ndarray:
        """(rows, cols) int32 K-means part labels of this image's patch features."""
        labels, _ = fv.parts([self.analysis], k, seed, layer)  # type: ignore[attr-defined]
        return labels[0]

    def norm_stats(self, k: float = MAD_K) -> NormStats:
        """Token norms with outliers by median + k * MAD (see models/vision/norms.py)."""
        return fv.norms(self.analysis, k)  # type: ignore[attr-defined]

    @property
    def norms(self) -> NormStats:
        """:meth:`norm_stats` with the default k."""
        return self.norm_stats()

    @property
    def sink_mass(self) -> np.ndarray:
        """(L, H, 3) float32: each head's mean attention from the patch queries to [CLS], to the registers
        and to the outlier patches (default k)."""
        return self.sinks().mass

    def sinks(self, k: float = MAD_K) -> fv.Sinks:
        """Sink mass, and rollout / mean attention distance with and without the sink keys."""
        return fv.sinks(self.analysis, self.patch_size, k)  # type: ignore[attr-defined]


def features_pca_set(
    results: Sequence[FeatureMethods],
    threshold: float = 0.0,
    foreground_only: bool = True,
    flip: bool = False,
) -> list[FeaturePCA]:
    """One PCA fitted over several results of the same model (models/vision/features.py)."""
    return fv.features_pca_set([r.analysis for r in results], threshold, foreground_only, flip)  # type: ignore[attr-defined]
