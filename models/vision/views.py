"""Every derived view of one vision analysis: pure functions from a :class:`VisionAnalysis` to numpy arrays.

This is the one entry point the front doors call (the web services in the CPU pool, the notebook, the
``python -m app export`` command); the math they compose lives beside it (``rollout.py``, ``distance.py``,
``receptive_field.py``). torch/numpy only. Every function reads the maps one layer at a time in float32
(:meth:`VisionAnalysis.layer_maps`: a copy of the cached float16 maps, or recomputed from the residual stream
when the analysis is compact, at 448 and 518 px; docs/native-resolution.md), so no (L, H, N, N) float32 copy
is made.

Token order in the maps: the ``num_prefix_tokens`` prefix tokens ([CLS], distillation, registers) first, then
the P = rows x cols patches row-major. Indices are 0-based.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from models.vision.analysis import VisionAnalysis
from models.vision.distance import Unit, convert_unit, mean_attention_distance
from models.vision.receptive_field import (
    max_mad,
    on_vit_depth_axis,
    resnet50_receptive_fields,
    uniform_image_mad,
    uniform_window_mad,
)
from models.vision.rollout import HeadFusion, attention_rollout

# ---------------------------------------------------------------------------------------------- rollout


def rollout(a: VisionAnalysis, head_fusion: HeadFusion = "mean", discard_ratio: float = 0.0) -> np.ndarray:
    """(P,) float32 attention rollout (Abnar & Zuidema 2020; ViT paper Fig. 6, App. D.8) with these options.

    The default options return the rollout computed during the forward (float32 maps); other options are
    recomputed from the cached float16 maps, one layer at a time."""
    if head_fusion == "mean" and discard_ratio == 0.0:
        return a.rollout
    with torch.inference_mode():
        r = attention_rollout(a.maps(), head_fusion, discard_ratio, a.num_prefix_tokens, a.has_cls)
    return r.numpy()  # (P,)


def patch_rows(a: VisionAnalysis, query: int) -> np.ndarray:
    """(L, H, rows, cols) float32: where patch ``query`` attends in every layer and head (a clicked patch;
    recomputed from the residual stream when the analysis is compact). IndexError if out of range."""
    return a.patch_rows(query).reshape(a.num_layers, -1, *a.grid)  # (L, H, R, C)


def patch_map(a: VisionAnalysis, layer: int, head: int | None, query: int) -> np.ndarray:
    """(rows, cols) float32: where patch ``query`` attends (head None: mean of heads); IndexError if out of
    range."""
    return a.patch_attention(layer, head, query).reshape(a.grid)  # (P,) -> (R, C)


# --------------------------------------------------------------------------------------------- distance


def attention_distance(a: VisionAnalysis, patch_size: int, renormalize: bool = False) -> np.ndarray:
    """(L, H) float64 mean attention distance in pixels of the model input (ViT paper Fig. 7 right,
    App. D.7; :func:`models.vision.distance.mean_attention_distance`). Without ``renormalize`` it is the one
    computed during the forward (float32 maps), when the analysis has it."""
    if not renormalize and a.mad is not None:
        return a.mad
    p0 = a.num_prefix_tokens
    with torch.inference_mode():
        mad = [mean_attention_distance(m, a.grid, p0, patch_size, renormalize) for m in a.maps()]  # L x (H,)
    return torch.stack(mad).double().numpy()  # (L, H) pixels


def distance_in_unit(
    mad_px: np.ndarray, grid: tuple[int, int], patch_size: int, unit: Unit
) -> tuple[np.ndarray, np.ndarray]:
    """(L, H) distance in ``unit`` and its (L,) mean over heads, from (L, H) pixels (MAD is linear in d)."""
    mad = convert_unit(mad_px, grid, patch_size, unit)  # (L, H)
    return mad, mad.mean(axis=1)  # (L, H), (L,)


@dataclass(frozen=True)
class ReceptiveFieldReference:
    """ResNet-50's receptive field on the ViT's depth axis, in one unit (see :func:`receptive_field`)."""

    names: list[str]
    depth_index: list[int]
    x: np.ndarray  # (n,) relative depth on the ViT's layer axis
    rf: np.ndarray  # (n,) receptive field width in the unit
    rf_pixels: np.ndarray  # (n,) the same in pixels
    uniform_window: np.ndarray  # (n,) MAD of uniform attention over that window, in the unit
    uniform_image: float  # MAD of uniform attention over the whole image
    max_distance: float  # the largest MAD any head can have
    image_diagonal: float


def receptive_field(
    num_layers: int, unit: Unit, patch_size: int, grid: tuple[int, int]
) -> ReceptiveFieldReference:
    """The CNN reference line of the distance page: ResNet-50's theoretical receptive field per layer, the MAD
    of uniform attention over a window that wide on the ViT's grid
    (:func:`models.vision.receptive_field.uniform_window_mad`), and the two ceilings."""
    rfs = resnet50_receptive_fields()
    points = on_vit_depth_axis(rfs, num_layers)
    px = np.array([p[1] for p in points], dtype=np.float64)  # (n,) widths in pixels
    window = uniform_window_mad(grid, patch_size, px)  # (n,) pixels
    diagonal = patch_size * np.hypot(*grid)
    scalars = convert_unit(
        np.array([uniform_image_mad(grid, patch_size), max_mad(grid, patch_size), diagonal]),
        grid,
        patch_size,
        unit,
    )  # (3,)
    return ReceptiveFieldReference(
        names=[rf.name for rf in rfs],
        depth_index=[rf.depth_index for rf in rfs],
        x=np.array([p[0] for p in points], dtype=np.float64),
        rf=convert_unit(px, grid, patch_size, unit),
        rf_pixels=px,
        uniform_window=convert_unit(window, grid, patch_size, unit),
        uniform_image=float(scalars[0]),
        max_distance=float(scalars[1]),
        image_diagonal=float(scalars[2]),
    )


# ------------------------------------------------------------------------------------------- statistics


def head_stats(maps: np.ndarray | torch.Tensor, num_prefix_tokens: int) -> dict[str, np.ndarray]:
    """Per-(layer, head) statistics of (L, H, N, N) maps over the patch queries -> dict of (L, H) float32:

    - ``entropy``: mean over patch queries of the Shannon entropy (nats) of the row over every key, prefix
      tokens included, not renormalised (compare :func:`patch_entropy`, over the patches only);
    - ``prefix_share``: the attention the patch queries give the prefix tokens;
    - ``self_share``: the attention a patch gives itself."""
    p0 = num_prefix_tokens
    out: dict[str, list[np.ndarray]] = {"entropy": [], "prefix_share": [], "self_share": []}
    for layer in maps:  # (H, N, N), one layer at a time in float32
        rows = torch.as_tensor(layer).float()[:, p0:, :]  # (H, P, N) patch queries over every key
        n = rows.shape[1]
        idx = torch.arange(n)
        out["entropy"].append((-torch.special.xlogy(rows, rows).sum(-1)).mean(-1).numpy())  # (H,)
        out["prefix_share"].append(rows[..., :p0].sum(-1).mean(-1).numpy())  # (H,)
        out["self_share"].append(rows[:, idx, p0 + idx].mean(-1).numpy())  # (H,)
    return {k: np.stack(v).astype(np.float32) for k, v in out.items()}  # (L, H) each


def stats(a: VisionAnalysis) -> dict[str, np.ndarray]:
    """:func:`head_stats` of one analysis's cached maps."""
    return head_stats(a.maps(), a.num_prefix_tokens)


# ---------------------------------------------------------------------------------------------- entropy


def patch_entropy(a: VisionAnalysis, layers: list[int] | None = None) -> np.ndarray:
    """(L', H, P) float32: the Shannon entropy, in nats, of each query patch's attention over the patch keys.

    For layer l, head h and query patch i: H = -sum_j p_j log p_j over the P patch keys j, where
    p_j = A[l, h, i, j] / sum_k A[l, h, i, k] (k over the patches). The prefix tokens ([CLS], registers,
    distillation) are left out on both sides, and each row is renormalised over the patches, so the number
    answers "how spread out is this patch's attention over the image": 0 when it looks at one patch,
    log(P) (:func:`max_entropy`) when it looks at every patch equally, whatever share it gives the prefix
    tokens (that share is ``stats()["prefix_share"]``). 0 log 0 = 0. ``layers``: a subset (default all).
    """
    p0 = a.num_prefix_tokens
    out = []
    with torch.inference_mode():
        for layer in range(a.num_layers) if layers is None else layers:
            rows = a.layer_maps(layer)[:, p0:, p0:]  # (H, P, P) patch queries over patch keys
            p = rows / rows.sum(-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)  # (H, P, P)
            out.append(-torch.special.xlogy(p, p).sum(-1))  # (H, P)
    return torch.stack(out).numpy().astype(np.float32)  # (L', H, P)


def max_entropy(a: VisionAnalysis) -> float:
    """log(P) nats: the entropy of uniform attention over the P patches (the ceiling of every entry)."""
    return math.log(a.grid[0] * a.grid[1])


def select_entropy(entropy: np.ndarray, grid: tuple[int, int], layer: int, head: int | None) -> np.ndarray:
    """(rows, cols) float32 of an (L, H, P) :func:`patch_entropy`: one head, or (head None) the mean over
    heads of the per-head entropies (not the entropy of the head-mean attention). IndexError if out of range."""
    L, H = entropy.shape[:2]
    if not 0 <= layer < L:
        raise IndexError(f"layer {layer} does not exist: the model has layers 0..{L - 1}")
    if head is not None and not 0 <= head < H:
        raise IndexError(f"head {head} does not exist: the model has heads 0..{H - 1}")
    e = entropy[layer]  # (H, P)
    values = e.mean(axis=0) if head is None else e[head]  # (P,)
    return values.reshape(grid).astype(np.float32)  # (R, C)


def entropy_map(a: VisionAnalysis, layer: int, head: int | None) -> np.ndarray:
    """(rows, cols) float32 :func:`patch_entropy` of one layer (computed for that layer only) for one head,
    or the head mean (:func:`select_entropy`)."""
    L = a.num_layers
    if not 0 <= layer < L:
        raise IndexError(f"layer {layer} does not exist: the model has layers 0..{L - 1}")
    return select_entropy(patch_entropy(a, [layer]), a.grid, 0, head)


def mean_entropy(entropy: np.ndarray) -> np.ndarray:
    """(L, H) float32 mean over the query patches of an (L, H, P) :func:`patch_entropy`."""
    return entropy.mean(axis=-1).astype(np.float32)


# ------------------------------------------------------------------------------------- patch probing data


def probe_rows(a: VisionAnalysis, layers: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Each query patch's row over the patch keys for ``layers``, as uint8 steps of the row maximum:
    (L', H, P, P) uint8 and the (L', H, P) float32 step (row max / 255); value ~ q * step."""
    p0 = a.num_prefix_tokens
    rows = np.stack([a.layer_maps(i)[:, p0:, p0:].numpy() for i in layers])  # (L', H, P, P)
    scale = rows.max(axis=-1)  # (L', H, P)
    safe = np.where(scale > 0, scale, 1.0)[..., None]  # (L', H, P, 1)
    q = np.rint(np.clip(rows / safe, 0.0, 1.0) * 255.0).astype(np.uint8)  # (L', H, P, P)
    return q, (scale / 255.0).astype(np.float32)
