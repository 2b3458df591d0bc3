"""Value-weighted views of one vision analysis (Kobayashi et al. 2020; math in ``models/value_norms.py``).

``VisionAnalysis.value_norms`` holds the (L, H, N) norms ‖f_h(x_j)‖ (DINOv2's LayerScale γ included) of the
forward that captured α. The pages draw maps over the P patches, so:

- :func:`patch_norms`: (L, H, P) the norms of the patch keys (what the browser multiplies the drawn rows by);
- :func:`weighted_layer`: (H, N, N) α_ij ‖f_h(x_j)‖ of one layer, rows renormalised over every key;
- :func:`weighted_patch_map` / :func:`weighted_cls`: the maps the pages draw, α · norm over the patch keys,
  each map renormalised to sum 1 over the patches drawn; the mean of heads is the mean of those per-head maps;
- :func:`prefix_survival`: per head, the share of the patch queries' mass on the prefix tokens ([CLS],
  registers) in α and in the value-weighted map (:func:`models.value_norms.special_share`).
"""

from __future__ import annotations

import numpy as np

from models.value_norms import SpecialShare, special_share, value_weighted
from models.vision.analysis import VisionAnalysis


def _norms(a: VisionAnalysis) -> np.ndarray:
    if a.value_norms is None:
        raise ValueError(f"this analysis has no value norms (model {a.model_id!r} is not supported)")
    return a.value_norms  # (L, H, N)


def patch_norms(a: VisionAnalysis) -> np.ndarray:
    """(L, H, P) float32: ‖f_h(x_j)‖ of the patch keys."""
    return np.ascontiguousarray(_norms(a)[..., a.num_prefix_tokens :], dtype=np.float32)


def weighted_layer(a: VisionAnalysis, layer: int, renormalise: bool = True) -> np.ndarray:
    """(H, N, N) float32 value-weighted maps of one layer (from the cached float16 α)."""
    return value_weighted(a.layer_maps(layer).numpy(), _norms(a)[layer], renormalise)


def _over_patches(rows: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """(H, P) rows over the patches times (H, P) norms, each row renormalised over the patches."""
    return value_weighted(rows[:, None, :], norms, renormalise=True)[:, 0]  # (H, P)


def weighted_patch_map(a: VisionAnalysis, layer: int, head: int | None, query: int) -> np.ndarray:
    """(P,) float32: where patch ``query`` attends, value-weighted over the patches (head None: the mean of
    the per-head maps)."""
    rows = a.patch_rows(query, [layer])[0]  # (H, P)
    maps = _over_patches(rows, patch_norms(a)[layer])  # (H, P)
    return maps.mean(0) if head is None else maps[head]


def weighted_cls(a: VisionAnalysis) -> np.ndarray:
    """(L, H, P) float32: the [CLS] maps (``cls_attention``) value-weighted over the patches. Without a [CLS]
    the page's map is the mean patch query's row; its weighting is the mean of the weighted patch rows."""
    norms = patch_norms(a)  # (L, H, P)
    if a.has_cls:
        return np.stack(
            [_over_patches(a.cls_attention[layer], norms[layer]) for layer in range(norms.shape[0])]
        )
    p0 = a.num_prefix_tokens
    out = []
    for layer in range(norms.shape[0]):
        rows = a.layer_maps(layer)[:, p0:, p0:].numpy()  # (H, P, P)
        out.append(value_weighted(rows, norms[layer], renormalise=True).mean(1))  # (H, P)
    return np.stack(out).astype(np.float32)


def prefix_survival(a: VisionAnalysis) -> SpecialShare:
    """Per head (L, H): the patch queries' mean share of mass on the prefix tokens, in α and value-weighted
    (one layer at a time in float32, never the (L, H, N, N) float32 maps at once)."""
    n = a.num_tokens
    keys = np.arange(n) < a.num_prefix_tokens  # (N,)
    rows = ~keys  # the patch queries, as the head statistics use them
    norms = _norms(a)
    per = [
        special_share(a.layer_maps(layer)[None].numpy(), norms[layer : layer + 1], keys, rows)
        for layer in range(n_layers(a))
    ]
    return SpecialShare(
        *(np.concatenate([getattr(s, f) for s in per]) for f in ("attention", "weighted", "survives"))
    )


def n_layers(a: VisionAnalysis) -> int:
    return int(a.num_layers)
