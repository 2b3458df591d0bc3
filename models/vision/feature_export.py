"""The features and norms arrays of one analysis for ``python -m app export`` (the numbers the API serves).

Keys (P patches, N = prefix + P tokens, D the width, L layers, H heads; 0-based layers):

- ``--features``: ``hidden`` (L, N, D) float16 residual stream after each block, ``features_last`` (N, D) float16
  after the final norm, ``pca_first`` (P,) float32, ``pca_foreground`` (P,) bool, ``pca_rgb`` (P, 3) float32
  in [0, 1] (NaN rows: background when fitted on the foreground), ``pca_threshold`` (), ``pca_explained`` (3,);
- ``--parts K``: ``parts`` (P,) int32 K-means labels (seed ``--seed``);
- ``--similarity PATCH``: ``similarity`` (P,) float32 cosine to that patch, last layer after the final norm;
- ``--norms``: ``token_norms`` (L, N) float32, ``norm_outliers`` (L, P) bool, ``norm_threshold`` (L,),
  ``sink_mass`` (L, H, 3) ([CLS], registers, outliers), ``rollout_without_sinks`` (P,),
  ``distance_with`` / ``distance_without_sinks`` (L, H) px (rows renormalised over the kept patches).
"""

from __future__ import annotations

import numpy as np

from models.vision import feature_views as fv
from models.vision.analysis import VisionAnalysis


def feature_arrays(
    analysis: VisionAnalysis,
    patch_size: int,
    *,
    features: bool = False,
    threshold: float = 0.0,
    parts: int | None = None,
    seed: int = 0,
    similarity: int | None = None,
    norms: bool = False,
    mad_k: float = 10.0,
) -> dict[str, np.ndarray]:
    """The arrays the flags ask for (see the module docstring); an empty dict when none is set."""
    out: dict[str, np.ndarray] = {}
    if features:
        pca = fv.features_pca(analysis, threshold)
        out.update(
            hidden=analysis.hidden.numpy(),  # type: ignore[union-attr]
            features_last=analysis.features.numpy(),  # type: ignore[union-attr]
            pca_first=pca.first,
            pca_foreground=pca.foreground,
            pca_rgb=pca.rgb,
            pca_threshold=np.float32(pca.threshold),
            pca_explained=pca.explained,
        )
    if parts is not None:
        labels, _ = fv.parts([analysis], parts, seed)
        out["parts"] = labels[0].reshape(-1)
    if similarity is not None:
        out["similarity"] = fv.similarity(analysis, similarity).reshape(-1)
    if norms:
        s = fv.sinks(analysis, patch_size, mad_k)
        out.update(
            token_norms=analysis.token_norms,  # type: ignore[dict-item]
            norm_outliers=s.stats.outliers,
            norm_threshold=s.stats.threshold.astype(np.float32),
            sink_mass=s.mass.astype(np.float32),
            rollout_without_sinks=s.rollout_without.astype(np.float32),
            distance_with=s.distance.astype(np.float32),
            distance_without_sinks=s.distance_without.astype(np.float32),
        )
    return out
