"""The arithmetic of mean attention distance: units, patch distances, the per-map reduction, the running sums.

The definition, the prefix conventions and the units are those of :mod:`models.vision.distance` (ViT paper,
Dosovitskiy et al. 2021, Fig. 7 right and Appendix D.7), which re-exports every name here. Two producers feed
the same running sums: :class:`DistanceAccumulator` reduces captured (B, H, N, N) probabilities, and the fused
kernel (:mod:`models.vision.fused_distance`) adds its in-kernel per-head sums to a :class:`HeadSums`.

Units. A distance is computed in grid units (``patches``) and scaled once: :func:`pixels_per_unit` is the
one conversion table, used by :func:`patch_distances`, :func:`convert_unit` and :func:`grid_unit_scale`
(the factor the fused kernel applies per row).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np
import torch

Unit = Literal["pixels", "patches", "diagonal"]
UNITS: tuple[str, ...] = ("pixels", "patches", "diagonal")


def pixels_per_unit(grid: tuple[int, int], patch_size: int, unit: Unit) -> float:
    """How many input pixels one ``unit`` is: 1 (pixels), the patch size (patches, one grid step) or the
    image diagonal ``patch_size * sqrt(R^2 + C^2)`` (diagonal). The one unit table of the distance code."""
    if unit == "pixels":
        return 1.0
    if unit == "patches":
        return float(patch_size)
    if unit == "diagonal":
        return float(patch_size) * float(np.hypot(grid[0], grid[1]))
    raise ValueError(f"unit must be one of {', '.join(UNITS)}, not {unit!r}")


def grid_unit_scale(grid: tuple[int, int], patch_size: int, unit: Unit) -> float:
    """Grid-unit distance -> ``unit``: patch_size (pixels), 1 (patches), 1 / sqrt(R^2 + C^2) (diagonal)."""
    return float(patch_size) / pixels_per_unit(grid, patch_size, unit)


def convert_unit(values: np.ndarray, grid: tuple[int, int], patch_size: int, unit: Unit) -> np.ndarray:
    """Distances in pixels -> ``unit``. Exact: MAD is linear in d, and the units differ by a constant
    (:func:`pixels_per_unit`), as in :func:`patch_distances`."""
    return np.asarray(values, dtype=np.float64) / pixels_per_unit(grid, patch_size, unit)


def patch_distances(
    grid: tuple[int, int],
    patch_size: int,
    unit: Unit = "pixels",
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Distances between all pairs of patches of an R x C grid, row-major: (P, P) float32.

    Computed once per (grid, patch size, unit) in float64 (``cdist`` in float32 loses digits to
    cancellation) and kept; the returned tensor is shared, so callers must not modify it in place."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}, not {unit!r}")
    d = _patch_distances_cpu(int(grid[0]), int(grid[1]), int(patch_size), unit)  # (P, P)
    return d if device is None or torch.device(device) == d.device else d.to(device)


@lru_cache(maxsize=8)
def _patch_distances_cpu(rows: int, cols: int, patch_size: int, unit: Unit) -> torch.Tensor:
    if rows < 1 or cols < 1:
        raise ValueError(f"grid must be positive, got {(rows, cols)}")
    r = torch.arange(rows, dtype=torch.float64).repeat_interleave(cols)  # (P,) row of each patch
    c = torch.arange(cols, dtype=torch.float64).repeat(rows)  # (P,) column of each patch
    pos = torch.stack([r, c], dim=1)  # (P, 2)
    d = torch.cdist(pos, pos)  # (P, P) in grid units
    if unit != "patches":
        d *= grid_unit_scale((rows, cols), patch_size, unit)
    return d.to(torch.float32)


def _check_maps(attn: torch.Tensor, num_prefix_tokens: int, num_patches: int) -> int:
    """N = prefix tokens + patches, after checking that ``attn`` is (..., H, N, N)."""
    n = num_prefix_tokens + num_patches
    if attn.ndim < 3 or attn.shape[-1] != n or attn.shape[-2] != n:
        raise ValueError(
            f"attention must be (..., H, {n}, {n}) for {num_prefix_tokens} prefix tokens + {num_patches} "
            f"patches, got {tuple(attn.shape)}"
        )
    return n


def _mad(
    attn: torch.Tensor, distances: torch.Tensor, num_prefix_tokens: int, renormalize: bool
) -> torch.Tensor:
    """(..., H, N, N) probabilities and (P, P) distances -> (..., H) float32 mean attention distance."""
    num_patches = distances.shape[0]
    n = _check_maps(attn, num_prefix_tokens, num_patches)
    if not renormalize:
        # Distances zero-padded over the prefix rows and columns: the sum of A * d over the whole N x N
        # map is then the patch-to-patch sum, one matrix-vector product over the contiguous map, with no
        # (P, P) slice copy and no elementwise temporary (bench/distance.py measures the difference).
        p = num_prefix_tokens
        d_full = torch.nn.functional.pad(distances, (p, 0, p, 0))  # (N, N)
        flat = attn.reshape(*attn.shape[:-2], n * n)  # (..., H, N*N), a view of a contiguous map
        if flat.dtype != torch.float32:
            flat = flat.float()
        return (flat @ d_full.reshape(n * n)) / num_patches  # (..., H)
    a = attn[..., num_prefix_tokens:, num_prefix_tokens:].float()  # (..., H, P, P)
    weighted = (a * distances).sum(dim=-1)  # (..., H, P) sum_j A[i, j] d(i, j)
    mass = a.sum(dim=-1).clamp_min(1e-12)  # (..., H, P) each row's patch mass
    return (weighted / mass).mean(dim=-1)  # (..., H) rows renormalised to sum 1 over patches


CHUNK_BYTES = 16 * 1024 * 1024  # float32 bytes of the maps reduced at once by mean_attention_distance


def mean_attention_distance(
    attn: torch.Tensor,
    grid: tuple[int, int],
    num_prefix_tokens: int,
    patch_size: int,
    renormalize: bool = False,
    unit: Unit = "pixels",
) -> torch.Tensor:
    """Mean attention distance (:mod:`models.vision.distance`) of (..., H, N, N) probabilities -> (..., H).

    Computed on ``attn``'s device in float32; N must equal ``num_prefix_tokens + R * C``. The (N, N) maps
    are reduced a chunk at a time (:data:`CHUNK_BYTES` of float32, at least one map), so a cached
    (L, H, N, N) float16 analysis is never copied whole to float32. Peak extra memory:
    2 * max(CHUNK_BYTES, 4 N^2) (the chunk's float32 copy, and its A * d product when ``renormalize``)
    + 8 N^2 (distances, padded), about 45 MB for a 448 px DINOv2 ViT-S/14 (N = 1025), whatever L and H.
    """
    distances = patch_distances(grid, patch_size, unit, device=attn.device)
    n = _check_maps(attn, num_prefix_tokens, distances.shape[0])
    maps = attn.reshape(-1, n, n)  # (M, N, N), a view of a contiguous cache
    step = max(1, CHUNK_BYTES // (4 * n * n))
    if step >= maps.shape[0]:
        return _mad(attn, distances, num_prefix_tokens, renormalize)
    out = torch.cat(
        [
            _mad(maps[i : i + step], distances, num_prefix_tokens, renormalize)
            for i in range(0, len(maps), step)
        ]
    )  # (M,)
    return out.reshape(attn.shape[:-2])  # (..., H)


class HeadSums:
    """Per-(layer, head) running sums of a per-image (B, H) statistic, kept on the device, and image counts.

    The one accumulator under both distance paths: :class:`DistanceAccumulator` adds the MAD of captured
    maps with :meth:`add`; the fused kernel adds to :meth:`sums` in place and reports its images with
    :meth:`count`. Sums are float64 and updated out of place (a running sum may be an inference-mode tensor
    from an earlier batch); only :meth:`result` copies to the host, so there is no device sync per batch.
    """

    def __init__(self) -> None:
        self._sums: dict[int, torch.Tensor] = {}  # layer -> (H,) float64
        self._counts: dict[int, int] = {}

    def sums(self, layer: int, heads: int, device: torch.device) -> torch.Tensor:
        """The (H,) float64 running sum of ``layer`` (created at 0), for a kernel to add to in place."""
        if layer not in self._sums:
            self._sums[layer] = torch.zeros(heads, dtype=torch.float64, device=device)
        return self._sums[layer]

    def count(self, layer: int, images: int) -> None:
        """Count ``images`` more images for ``layer`` (whose sums a kernel has added)."""
        self._counts[layer] = self._counts.get(layer, 0) + int(images)

    def add(self, layer: int, values: torch.Tensor) -> None:
        """Add one batch's (B, H) values to ``layer``'s sums and count its B images."""
        batch_sum = values.sum(dim=0, dtype=torch.float64)  # (H,)
        self._sums[layer] = self._sums[layer] + batch_sum if layer in self._sums else batch_sum
        self.count(layer, values.shape[0])

    @property
    def n_images(self) -> int:
        return self._counts.get(0, 0)

    def result(self) -> np.ndarray:
        """(L, H) float64: the mean over the images seen of each layer's and head's value."""
        if not self._sums:
            raise ValueError("no attention maps were accumulated")
        layers = sorted(self._sums)
        if layers != list(range(len(layers))):
            raise ValueError(f"blocks {layers} were seen; expected 0..{len(layers) - 1}")
        counts = {self._counts.get(i, 0) for i in layers}
        if len(counts) != 1:
            raise ValueError(f"blocks saw unequal numbers of images: {sorted(counts)}")
        sums = torch.stack([self._sums[i] for i in layers]).cpu().numpy()  # (L, H)
        return sums / counts.pop()


class DistanceAccumulator(HeadSums):
    """Per-(layer, head) mean attention distance over images, reduced on the device as batches arrive.

    Use as ``capture_attention(model, reduce=acc.update)``: each call reduces one block's (B, H, N, N)
    probabilities to (B, H) distances and adds them to that layer's running sums (:class:`HeadSums`).
    """

    def __init__(
        self,
        grid: tuple[int, int],
        num_prefix_tokens: int,
        patch_size: int,
        renormalize: bool = False,
        unit: Unit = "pixels",
    ):
        super().__init__()
        self.grid = (int(grid[0]), int(grid[1]))
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.patch_size = int(patch_size)
        self.renormalize = bool(renormalize)
        self.unit = unit
        patch_distances(self.grid, self.patch_size, unit)  # validates grid and unit now
        self._distances: dict[torch.device, torch.Tensor] = {}

    def update(self, block_index: int, probs: torch.Tensor) -> None:
        """Add one block's (B, H, N, N) probabilities."""
        if probs.ndim != 4:
            raise ValueError(f"probs must be (B, H, N, N), got {tuple(probs.shape)}")
        d = self._distances.get(probs.device)
        if d is None:
            d = self._distances[probs.device] = patch_distances(
                self.grid, self.patch_size, self.unit, probs.device
            )
        self.add(block_index, _mad(probs, d, self.num_prefix_tokens, self.renormalize))  # (B, H)
