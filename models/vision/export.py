"""Everything one vision analysis holds, as plain numpy arrays for an ``.npz`` (``python -m app export``).

The numbers are the web app's: the maps are the float16 cache the API serves its patch queries from, the
CLS maps and the rollout are those of ``/api/vision/analyze`` (Abnar & Zuidema 2020, Section 3, with the
same head fusion and discard options), the mean attention distance is that of
``/api/distance/analysis/{id}`` (ViT paper, Appendix D.7), and the entropy that of
``/api/vision/analysis/{id}/entropy``, all computed by :mod:`models.vision.views` from the same cached maps.

Array axes are 0-based indices (layer 0 is the first block; the pages show it as layer 1). Tokens are in the
model's order: the ``num_prefix_tokens`` prefix tokens ([CLS], distillation, registers) first, then the
patches row-major, so token ``num_prefix_tokens + r * cols + c`` is the patch in grid row r, column c.

``value_norms`` (L, H, N) float32, when the model is supported: ‖f_h(x_j)‖ per layer, head and key token
(Kobayashi et al. 2020; :mod:`models.value_norms`, LayerScale included, output bias left out); the
value-weighted maps are ``attentions * value_norms[:, :, None, :]``.
"""

from __future__ import annotations

import json

import numpy as np

from models.vision import views
from models.vision.analysis import VisionAnalysis, VisionModel
from models.vision.distance import Unit
from models.vision.rollout import HeadFusion

FORMAT = "attention-atlas/vision-npz/1"


def token_layout(grid: tuple[int, int], num_prefix_tokens: int, has_cls: bool) -> dict[str, np.ndarray]:
    """Per token: ``token_kind`` ("cls", "prefix" or "patch"), ``token_row`` / ``token_col`` (-1 for prefix
    tokens), all of shape (N,)."""
    rows, cols = grid
    n = num_prefix_tokens + rows * cols
    kind = np.array(["prefix"] * num_prefix_tokens + ["patch"] * (rows * cols))  # (N,)
    if has_cls and num_prefix_tokens:
        kind[0] = "cls"
    patch = np.arange(rows * cols)  # (P,)
    row = np.full(n, -1, dtype=np.int32)  # (N,)
    col = np.full(n, -1, dtype=np.int32)  # (N,)
    row[num_prefix_tokens:], col[num_prefix_tokens:] = patch // cols, patch % cols
    return {"token_kind": kind, "token_row": row, "token_col": col}


def full_maps(analysis: VisionAnalysis) -> np.ndarray:
    """(L, H, N, N) float16: the kept maps, or (a compact analysis) every layer recomputed from its stream."""
    if analysis.attentions is not None:
        return analysis.attentions.numpy()
    return np.stack([m.half().numpy() for m in analysis.maps()])


def vision_arrays(
    vm: VisionModel,
    analysis: VisionAnalysis,
    head_fusion: HeadFusion = "mean",
    discard_ratio: float = 0.0,
    renormalize: bool = False,
    unit: Unit = "pixels",
) -> dict[str, np.ndarray]:
    """The analysis as named arrays (module docstring); ``meta`` is a JSON string of the settings used.

    - ``attentions`` (L, H, N, N) float16: every map, row = query token (the server's cache, exactly);
    - ``cls_attention`` (L, H, P) float32: the [CLS] query's row over patches (mean patch row if no [CLS]);
    - ``rollout`` (P,) float32; ``distance`` (L, H) and ``distance_per_layer`` (L,) float64 in ``unit``;
    - ``entropy`` (L, H, P) float32: each query patch's attention entropy over the patch keys in nats
      (:func:`models.vision.views.patch_entropy`; at most log(P), ``meta["entropy"]["max"]``);
    - ``image`` (R, R, 3) uint8: the crop the model saw; ``grid`` (2,) rows, cols; token layout (N,) each.
    """
    info = vm.info
    roll = views.rollout(analysis, head_fusion, discard_ratio)  # (P,) as the API answers it
    mad_px = views.attention_distance(analysis, info.patch_size, renormalize)  # (L, H) pixels
    mad, per_layer = views.distance_in_unit(mad_px, analysis.grid, info.patch_size, unit)  # (L, H), (L,)
    meta = {
        "format": FORMAT,
        "model": info.id,
        "arch_tag": info.arch_tag,
        "label": info.label,
        "resolution": analysis.resolution,
        "patch_size": info.patch_size,
        "num_prefix_tokens": analysis.num_prefix_tokens,
        "cls_query": "cls" if analysis.has_cls else "mean_patch",
        "rollout": {"head_fusion": head_fusion, "discard_ratio": discard_ratio},
        "distance": {"unit": unit, "renormalize": renormalize},
        "entropy": {
            "unit": "nats",
            "over": "patch keys, prefix tokens left out, rows renormalised",
            "max": views.max_entropy(analysis),
        },
        "indexing": "0-based array indices; the pages number layers, heads and patches from 1",
    }
    arrays: dict[str, np.ndarray] = {
        "attentions": full_maps(analysis),  # (L, H, N, N) float16
        "cls_attention": analysis.cls_attention,  # (L, H, P) float32
        "rollout": np.asarray(roll, dtype=np.float32),  # (P,)
        "distance": mad,  # (L, H)
        "distance_per_layer": per_layer,  # (L,)
        "entropy": views.patch_entropy(
            analysis
        ),  # (L, H, P) float32 nats, as /api/vision/analysis/{id}/entropy
        "image": np.asarray(analysis.image.convert("RGB"), dtype=np.uint8),  # (R, R, 3)
        "grid": np.array(analysis.grid, dtype=np.int32),  # (2,) rows, cols
        "resolution": np.array(analysis.resolution, dtype=np.int32),
        "patch_size": np.array(info.patch_size, dtype=np.int32),
        "num_prefix_tokens": np.array(analysis.num_prefix_tokens, dtype=np.int32),
        **token_layout(analysis.grid, analysis.num_prefix_tokens, analysis.has_cls),
        "meta": np.array(json.dumps(meta)),
    }
    if analysis.predictions is not None:
        arrays["prediction_label"] = np.array([lbl for lbl, _ in analysis.predictions])  # (k,)
        arrays["prediction_prob"] = np.array([p for _, p in analysis.predictions], dtype=np.float32)  # (k,)
    if (
        analysis.value_norms is not None
    ):  # Kobayashi et al. 2020: value-weighted map = attentions * norms[key]
        arrays["value_norms"] = analysis.value_norms  # (L, H, N) float32 ‖f_h(x_j)‖ (models/value_norms.py)
    return arrays
