"""Theoretical receptive field of a CNN by depth, the reference line for ViT mean attention distance.

ViT paper (Dosovitskiy et al. 2021) Section 4.5 / Fig. 7 right compares attention distance to "receptive
field size in CNNs". For a chain of convolutions / poolings with kernel k, stride s, dilation d the
receptive field r (pixels of the input one output unit sees) and the jump j (input pixels between
neighbouring output units) follow the standard recurrence, starting from r = j = 1 at the input:

    r_out = r_in + (k - 1) * d * j_in,        j_out = j_in * s

Only the longest path counts: in a residual block that is the main branch (the 1x1 downsample shortcut
never grows r), so shortcuts are skipped.

ResNet-50 here is torchvision / timm's "v1.5": stem conv 7x7/2, max-pool 3x3/2, bottlenecks
(1x1, 3x3, 1x1) in stages of [3, 4, 6, 3] blocks, the stage's stride on the 3x3 conv of its first block.
:func:`resnet50_layers` writes that architecture out explicitly (no model instance needed);
``tests/models/test_distance.py`` checks it equals what :func:`layers_from_resnet` reads from
``timm.create_model("resnet50")``'s modules. The final theoretical receptive field is 427 px.

A receptive field is a *width* (how many pixels one unit can see); mean attention distance is a *mean
distance* (how far, on average, a query's attention lands). They are not the same quantity: at 224 px with
16 px patches, uniform attention over the whole image has a mean distance of only ~116 px, and no head can
exceed ~229 px (228.5: every query attending only to its farthest patch), while ResNet-50's last receptive fields
are 267 and 427 px wide. To put the CNN on the chart in the chart's own quantity,
:func:`uniform_window_mad` computes the mean attention distance that *uniform attention over the CNN
layer's receptive-field window* would have: for every query patch, spread the attention uniformly over the
pixels of a k x k window centred on the patch centre (clipped to the image), give each key patch the share
of the window it covers, and apply the same MAD formula (:mod:`models.vision.distance`) on the ViT's own
patch grid and resolution. A window no wider than a patch stays inside the query's patch: distance exactly 0
(ResNet-50's first two layers, RF 7 and 11 px, on 16 px patches; 14 px patches too). For
an unclipped window the continuous value is ~0.383 k (the mean distance from a square's centre to its
points); large windows approach uniform attention over the whole image.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from torch import nn

RESNET50_BLOCKS = (3, 4, 6, 3)


@dataclass(frozen=True)
class ConvLayer:
    """One layer on the longest path: name, kernel, stride, dilation; ``weighted`` counts toward depth."""

    name: str
    kernel: int
    stride: int = 1
    dilation: int = 1
    weighted: bool = True  # conv (True) or pooling (False)


class LayerRF(NamedTuple):
    """Receptive field after a layer: (name, depth_index, rf_pixels); depth counts weighted layers."""

    name: str
    depth_index: int
    rf_pixels: int


def receptive_fields(layers: list[ConvLayer]) -> list[tuple[int, int]]:
    """(receptive field px, jump px) after each layer, by the recurrence in the module docstring."""
    r, j = 1, 1
    out = []
    for layer in layers:
        r = r + (layer.kernel - 1) * layer.dilation * j
        j = j * layer.stride
        out.append((r, j))
    return out


def resnet50_layers() -> list[ConvLayer]:
    """ResNet-50 v1.5's longest path, written out from the architecture (see module docstring)."""
    layers = [ConvLayer("conv1", 7, 2), ConvLayer("maxpool", 3, 2, weighted=False)]
    for stage, blocks in enumerate(RESNET50_BLOCKS, start=1):
        for block in range(blocks):
            stride = 2 if stage > 1 and block == 0 else 1
            prefix = f"layer{stage}.{block}"
            layers += [
                ConvLayer(f"{prefix}.conv1", 1),
                ConvLayer(f"{prefix}.conv2", 3, stride),
                ConvLayer(f"{prefix}.conv3", 1),
            ]
    return layers


def _pair(v) -> int:
    """Square kernels/strides only: (k, k) -> k."""
    if isinstance(v, (tuple, list)):
        if len(set(v)) != 1:
            raise ValueError(f"non-square kernel/stride/dilation {v} is not supported")
        return int(v[0])
    return int(v)


def layers_from_resnet(model: nn.Module) -> list[ConvLayer]:
    """Read the longest path from a timm/torchvision ResNet instance: stem, max-pool, blocks' convs.

    Walks modules in registration order (which is forward order for these ResNets), takes Conv2d and
    MaxPool2d/AvgPool2d layers, and skips everything under a ``downsample`` shortcut.
    """
    layers = []
    for name, module in model.named_modules():
        if "downsample" in name.split("."):
            continue
        if isinstance(module, nn.Conv2d):
            layers.append(
                ConvLayer(name, _pair(module.kernel_size), _pair(module.stride), _pair(module.dilation))
            )
        elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            dilation = _pair(getattr(module, "dilation", 1))
            layers.append(
                ConvLayer(name, _pair(module.kernel_size), _pair(module.stride), dilation, weighted=False)
            )
    if not layers:
        raise ValueError(f"no conv or pooling layers found in {type(model).__name__}")
    return layers


def layer_receptive_fields(layers: list[ConvLayer]) -> list[LayerRF]:
    """Name, depth index (number of weighted layers so far, 1-based) and receptive field of each layer."""
    out, depth = [], 0
    for layer, (r, _j) in zip(layers, receptive_fields(layers), strict=True):
        depth += int(layer.weighted)
        out.append(LayerRF(layer.name, depth, r))
    return out


def resnet50_receptive_fields() -> list[LayerRF]:
    """ResNet-50 v1.5: (name, depth_index 1..49, receptive field px) for every layer on the longest path."""
    return layer_receptive_fields(resnet50_layers())


def on_vit_depth_axis(rfs: list[LayerRF], num_vit_layers: int) -> list[tuple[float, int]]:
    """Put CNN receptive fields on a ViT's layer axis by *relative depth*.

    A CNN layer at depth d of D weighted layers sits at relative depth d / D in (0, 1]; ViT block l
    (0-based, as the distance CSV numbers it) sits at (l + 1) / L. So the CNN point goes at
    x = d / D * L - 1 on the ViT's 0-based layer axis: the CNN's last conv lines up with the ViT's last
    block and its first conv near the ViT's first. Relative depth, not absolute layer count, because a
    49-conv ResNet and a 12-block ViT differ 4x in depth but both run input to output. Pooling layers
    share the depth of the conv before them. Returns (x, rf_pixels) per layer.
    """
    if num_vit_layers < 1:
        raise ValueError(f"num_vit_layers must be >= 1, not {num_vit_layers}")
    total = max(rf.depth_index for rf in rfs)
    return [(rf.depth_index / total * num_vit_layers - 1.0, rf.rf_pixels) for rf in rfs]


# ---------------------------------------------------------------------------------------------------------
# The same quantity as the chart: mean attention distance of uniform attention over a window


def _window_shares(n: int, patch_size: int, window_px: float) -> np.ndarray:
    """Along one axis of n patches: (n, n) row-stochastic, [i, j] = share of query i's window (window_px
    wide, centred on patch i's centre, clipped to [0, n * patch_size]) that lies in patch j."""
    p = float(patch_size)
    centres = (np.arange(n) + 0.5) * p  # (n,)
    lo = np.clip(centres - window_px / 2, 0.0, n * p)[:, None]  # (n, 1) window start, clipped
    hi = np.clip(centres + window_px / 2, 0.0, n * p)[:, None]  # (n, 1) window end, clipped
    starts = (np.arange(n) * p)[None, :]  # (1, n) patch j's first pixel
    overlap = np.clip(np.minimum(hi, starts + p) - np.maximum(lo, starts), 0.0, None)  # (n, n)
    return overlap / overlap.sum(axis=1, keepdims=True)  # the window always covers its own patch centre


@lru_cache(maxsize=512)
def _offset_mass(n: int, patch_size: int, window_px: float) -> np.ndarray:
    """One axis's window shares summed along each diagonal: (2n - 1,), offset j - i = -(n - 1) .. n - 1.
    Cached (square grids share it between rows and columns); callers must not modify it."""
    shares = _window_shares(n, patch_size, window_px)  # (n, n)
    idx = np.arange(n)[None, :] - np.arange(n)[:, None] + (n - 1)  # (n, n) offset index of [i, j]
    return np.bincount(idx.ravel(), weights=shares.ravel(), minlength=2 * n - 1)


@lru_cache(maxsize=512)
def _uniform_window_mad_px(rows: int, cols: int, patch_size: int, window_px: float) -> float:
    """MAD in pixels of uniform attention over a window_px x window_px window (see the module docstring).

    The window is a rectangle, so key patch (r_j, c_j)'s share factorises into a row share times a column
    share, and MAD = (1/P) sum_i sum_j W_r[r_i, r_j] W_c[c_i, c_j] d(r_j - r_i, c_j - c_i) depends on the
    queries only through the shares summed per offset: MAD = a_r^T D a_c / P with D (2R-1, 2C-1) the
    distances by offset. O(R^2 + C^2 + R C) instead of the O(P^2) of the full map."""
    a_r = _offset_mass(rows, patch_size, window_px)  # (2R - 1,)
    a_c = _offset_mass(cols, patch_size, window_px)  # (2C - 1,)
    dr = np.arange(-(rows - 1), rows, dtype=np.float64)  # (2R - 1,)
    dc = np.arange(-(cols - 1), cols, dtype=np.float64)  # (2C - 1,)
    d = patch_size * np.hypot(dr[:, None], dc[None, :])  # (2R - 1, 2C - 1) pixels
    return float(a_r @ d @ a_c) / (rows * cols)


def _check_grid(grid: tuple[int, int], patch_size: int) -> tuple[int, int, int]:
    rows, cols = int(grid[0]), int(grid[1])
    if rows < 1 or cols < 1 or patch_size < 1:
        raise ValueError(f"grid and patch size must be positive, got {(rows, cols)} and {patch_size}")
    return rows, cols, int(patch_size)


def uniform_window_mad(grid: tuple[int, int], patch_size: int, windows_px) -> np.ndarray:
    """Mean attention distance (pixels) of uniform attention over a k x k px window around each query,
    clipped to the image, on an R x C grid of ``patch_size`` px patches: (n,) float64, one per window k.

    Same formula as the chart's MAD (mean over query patches of sum_j A[i, j] d(i, j), d between patch
    centres), with A[i, j] the share of query i's window inside patch j. Cached per (grid, patch, k)."""
    rows, cols, p = _check_grid(grid, patch_size)
    ks = np.asarray(windows_px, dtype=np.float64).reshape(-1)  # (n,)
    if np.any(ks <= 0) or not np.all(np.isfinite(ks)):
        raise ValueError("window widths must be positive and finite")
    return np.array([_uniform_window_mad_px(rows, cols, p, float(k)) for k in ks], dtype=np.float64)


def uniform_image_mad(grid: tuple[int, int], patch_size: int) -> float:
    """Mean attention distance (pixels) of uniform attention over the whole image: every query attends
    1/P to every patch. ~0.52 x the side of a square image (116 px at 224 px with 16 px patches)."""
    rows, cols, p = _check_grid(grid, patch_size)
    return _uniform_window_mad_px(rows, cols, p, float(2 * max(rows, cols) * p))  # covers every patch


def max_mad(grid: tuple[int, int], patch_size: int) -> float:
    """The largest mean attention distance any head can have (pixels): every query puts all its attention
    on its farthest patch (a corner). 228.5 px at 224 px with 16 px patches, well under the diagonal."""
    rows, cols, p = _check_grid(grid, patch_size)
    far_r = np.maximum(np.arange(rows), rows - 1 - np.arange(rows)).astype(np.float64)  # (R,)
    far_c = np.maximum(np.arange(cols), cols - 1 - np.arange(cols)).astype(np.float64)  # (C,)
    return float(p * np.hypot(far_r[:, None], far_c[None, :]).mean())  # mean over the (R, C) queries
