"""What a ViT learns in its embeddings: ViT paper (Dosovitskiy et al. 2021) Figure 7, left and centre.

- Figure 7 centre, *position embedding similarity*: for every patch position (r, c), the cosine similarity
  of its learned position embedding with the embeddings of all other patch positions, shown as an R x C
  tile; the R x C tiles laid out on the grid make one mosaic (:func:`position_similarity_tiles`,
  :func:`tile_mosaic`). Prefix tokens ([CLS], distillation, registers) are left out. Cosine, not a raw
  dot product (probing-vits plots the dot product, which mixes in the embeddings' norms).
- Figure 7 left, *RGB embedding filters*: the first principal components of the patch-embedding
  filters, i.e. of the D rows of the linear projection E (Section 3.1), each a 3 x p x p image
  (:func:`patch_embedding_pca`). A real PCA: the D filters are D samples of 3*p*p features, centred,
  and decomposed by SVD.

Everything returns numpy arrays on the CPU, ready for plotting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


def _as_numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


# ----------------------------------------------------------------------------------------------------------
# Figure 7 centre: position embedding similarity


def patch_pos_embed(model: nn.Module) -> tuple[np.ndarray, tuple[int, int]]:
    """The learned position embeddings of the patch positions of a timm ViT: (E (R*C, D) float32, (R, C)).

    Prefix entries are dropped when the model stores them (``no_embed_class=False``, the default: the
    first ``num_prefix_tokens`` rows of ``pos_embed``); with ``no_embed_class=True`` (e.g. DeiT-III,
    DINOv2 with registers) ``pos_embed`` holds patch positions only. The grid is the one ``pos_embed``
    is *stored* at, which for dynamic-size models is the training grid (37 x 37 for DINOv2 at 518 px),
    not the grid of any particular input.
    """
    pos = getattr(model, "pos_embed", None)
    if not isinstance(pos, torch.Tensor):
        raise ValueError(f"{type(model).__name__} has no learned absolute position embedding (pos_embed)")
    pos = pos.detach().to("cpu", torch.float32)
    if pos.ndim == 4:  # (1, R, C, D): some models store the grid explicitly
        rows, cols, dim = pos.shape[1:]
        return pos.reshape(rows * cols, dim).numpy(), (int(rows), int(cols))  # (R*C, D)
    pos = pos.reshape(-1, pos.shape[-1])  # (prefix + R*C, D)
    prefix = 0 if getattr(model, "no_embed_class", False) else int(getattr(model, "num_prefix_tokens", 1))
    num_patches = pos.shape[0] - prefix
    grid_size = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    if grid_size is not None and int(grid_size[0]) * int(grid_size[1]) == num_patches:
        grid = (int(grid_size[0]), int(grid_size[1]))
    else:
        side = math.isqrt(num_patches)
        if side * side != num_patches:
            raise ValueError(
                f"cannot infer the grid of {num_patches} stored patch positions (patch_embed.grid_size is "
                f"{grid_size} and {num_patches} is not a square)"
            )
        grid = (side, side)
    return pos[prefix:].numpy(), grid


def position_similarity_tiles(
    pos_embed: torch.Tensor | np.ndarray, grid: tuple[int, int], num_prefix_tokens: int
) -> np.ndarray:
    """Cosine similarity of every patch position's embedding with every other: (R, C, R, C) float32.

    ``pos_embed`` is (1, prefix + R*C, D) or (prefix + R*C, D), patches in row-major order;
    ``num_prefix_tokens`` says how many leading rows to skip (0 for ``no_embed_class`` models or for
    the output of :func:`patch_pos_embed`). ``tiles[r, c]`` is the (R, C) tile of Figure 7 centre for
    the patch in row r, column c; ``tiles[r, c, r, c] == 1``.
    """
    rows, cols = int(grid[0]), int(grid[1])
    emb = _as_numpy(pos_embed)
    emb = emb.reshape(-1, emb.shape[-1])  # (prefix + P, D)
    expected = num_prefix_tokens + rows * cols
    if emb.shape[0] != expected:
        raise ValueError(
            f"pos_embed has {emb.shape[0]} positions but {num_prefix_tokens} prefix + {rows}x{cols} grid "
            f"= {expected}"
        )
    emb = emb[num_prefix_tokens:]  # (P, D)
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)  # (P, D)
    sim = unit @ unit.T  # (P, P)
    return sim.reshape(rows, cols, rows, cols).astype(np.float32)  # (R, C, R, C)


def tile_mosaic(tiles: np.ndarray, gap: int = 1) -> np.ndarray:
    """Lay (R, C, R, C) tiles out as one image, tile (r, c) at block row r, block column c, as in the paper.

    Returns (R*R + (R-1)*gap, C*C + (C-1)*gap) float32 with NaN in the gaps (plotly and matplotlib leave
    NaN cells blank), so the whole figure is a single heatmap.
    """
    if tiles.ndim != 4 or tiles.shape[:2] != tiles.shape[2:]:
        raise ValueError(f"tiles must be (R, C, R, C), got {tiles.shape}")
    if gap < 0:
        raise ValueError(f"gap must be >= 0, not {gap}")
    rows, cols = tiles.shape[:2]
    out = np.full((rows * rows + (rows - 1) * gap, cols * cols + (cols - 1) * gap), np.nan, np.float32)
    for r in range(rows):
        for c in range(cols):
            top, left = r * (rows + gap), c * (cols + gap)
            out[top : top + rows, left : left + cols] = tiles[r, c]
    return out


# ----------------------------------------------------------------------------------------------------------
# Figure 7 left: principal components of the patch-embedding filters


@dataclass(frozen=True)
class PCAResult:
    """PCA of the patch-embedding filters.

    components: (k, 3, p, p) float32, orthonormal as flat vectors, sign fixed so each one's
        largest-magnitude entry is positive (SVD signs are arbitrary).
    explained_variance_ratio: (k,) float64, share of the filters' total variance per component.
    rgb_tiles: (k, p, p, 3) uint8 for display: each component min-max scaled to 0..255 on its own
        (all three channels together), so the colours show relative structure, not absolute size;
        a constant component becomes mid-grey (128).
    """

    components: np.ndarray
    explained_variance_ratio: np.ndarray
    rgb_tiles: np.ndarray


def patch_embedding_pca(weight: torch.Tensor | np.ndarray, n_components: int = 28) -> PCAResult:
    """Principal components of the conv weight (D, 3, p, p) of the patch embedding (ViT Fig. 7 left).

    The D filters are D samples of 3*p*p features; they are centred (mean filter removed) and
    decomposed by SVD, X - mean = U S V^T; the components are the first ``n_components`` rows of V^T.
    """
    w = _as_numpy(weight)
    if w.ndim != 4:
        raise ValueError(f"weight must be a conv weight (D, C_in, p, p), got shape {w.shape}")
    dim, channels, ph, pw = w.shape
    features = channels * ph * pw
    k = int(n_components)
    if not 1 <= k <= min(dim, features):
        raise ValueError(
            f"n_components must be in 1..min(D={dim}, C*p*p={features}) = {min(dim, features)}, not {k}"
        )
    x = w.reshape(dim, features)  # (D, F)
    x = x - x.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(x, full_matrices=False)  # vt: (min(D, F), F)
    comps = vt[:k]  # (k, F)
    idx = np.abs(comps).argmax(axis=1)
    comps = comps * np.sign(comps[np.arange(k), idx])[:, None]
    var = s**2
    total = var.sum()
    ratio = var[:k] / total if total > 0 else np.zeros(k)
    comps = comps.reshape(k, channels, ph, pw)  # (k, C, p, p)
    return PCAResult(
        components=comps.astype(np.float32),
        explained_variance_ratio=ratio.astype(np.float64),
        rgb_tiles=_to_uint8(comps.transpose(0, 2, 3, 1)),  # (k, p, p, C)
    )


def _to_uint8(images: np.ndarray) -> np.ndarray:
    """Per-image min-max scaling to 0..255; constant images become 128."""
    flat = images.reshape(images.shape[0], -1)  # (k, p*p*C)
    lo, hi = flat.min(axis=1, keepdims=True), flat.max(axis=1, keepdims=True)
    span = hi - lo
    scaled = np.where(span > 0, (flat - lo) / np.where(span > 0, span, 1.0), 0.5)
    return np.round(scaled * 255.0).astype(np.uint8).reshape(images.shape)


def patch_embed_weight(model: nn.Module) -> np.ndarray:
    """The patch-embedding conv weight (D, 3, p, p) of a timm ViT as float32 numpy."""
    proj = getattr(getattr(model, "patch_embed", None), "proj", None)
    weight = getattr(proj, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 4:
        raise ValueError(f"{type(model).__name__} has no conv patch embedding (patch_embed.proj.weight)")
    return weight.detach().to("cpu", torch.float32).numpy()
