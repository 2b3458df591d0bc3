"""The shared distance arithmetic (models/vision/mad.py): one unit table, one running-sum accumulator.

Checked against independent computations: unit factors from the definitions written out by hand (pixels,
one patch step, the image diagonal), and running means computed with numpy over the same random batches.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.vision.mad import (
    DistanceAccumulator,
    HeadSums,
    convert_unit,
    grid_unit_scale,
    patch_distances,
    pixels_per_unit,
)


@pytest.mark.parametrize("grid, patch", [((14, 14), 16), ((3, 5), 8), ((1, 7), 14)])
def test_unit_table_matches_definitions(grid, patch):
    diag_px = patch * math.sqrt(grid[0] ** 2 + grid[1] ** 2)
    assert pixels_per_unit(grid, patch, "pixels") == 1.0
    assert pixels_per_unit(grid, patch, "patches") == patch
    assert pixels_per_unit(grid, patch, "diagonal") == pytest.approx(diag_px, rel=1e-15)
    assert grid_unit_scale(grid, patch, "pixels") == patch
    assert grid_unit_scale(grid, patch, "patches") == 1.0
    assert grid_unit_scale(grid, patch, "diagonal") == pytest.approx(patch / diag_px, rel=1e-15)
    values = np.array([0.0, 3.5, 120.0])  # pixels
    np.testing.assert_allclose(convert_unit(values, grid, patch, "patches"), values / patch, rtol=1e-15)
    np.testing.assert_allclose(convert_unit(values, grid, patch, "diagonal"), values / diag_px, rtol=1e-15)
    # the distance table in each unit is the pixel table converted with the same factor
    px = patch_distances(grid, patch, "pixels").double().numpy()
    for unit in ("patches", "diagonal"):
        got = patch_distances(grid, patch, unit).double().numpy()
        np.testing.assert_allclose(got, convert_unit(px, grid, patch, unit), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="unit"):
        pixels_per_unit(grid, patch, "inches")


def test_head_sums_is_a_running_mean():
    gen = torch.Generator().manual_seed(0)
    batches = [torch.rand(b, 3, generator=gen) for b in (2, 5, 1)]  # (B, H) per batch
    acc = HeadSums()
    for layer in (0, 1):
        for x in batches:
            acc.add(layer, x * (layer + 1))
    stacked = torch.cat(batches).double().numpy()  # (8, 3)
    want = np.stack([stacked.mean(axis=0), 2 * stacked.mean(axis=0)])  # (2, 3)
    np.testing.assert_allclose(acc.result(), want, rtol=1e-12)
    assert acc.n_images == 8


def test_head_sums_in_place_and_checks():
    acc = HeadSums()
    acc.sums(0, 2, torch.device("cpu")).add_(torch.tensor([2.0, 4.0], dtype=torch.float64))
    acc.count(0, 2)
    np.testing.assert_allclose(acc.result(), [[1.0, 2.0]])
    with pytest.raises(ValueError, match="no attention"):
        HeadSums().result()
    gap = HeadSums()
    gap.add(1, torch.ones(1, 2))
    with pytest.raises(ValueError, match="blocks"):
        gap.result()
    uneven = HeadSums()
    uneven.add(0, torch.ones(1, 2))
    uneven.add(1, torch.ones(2, 2))
    with pytest.raises(ValueError, match="unequal"):
        uneven.result()


def test_distance_accumulator_is_a_head_sums():
    """A uniform map over a 1 x 2 grid with no prefix: each patch attends half to itself, half 8 px away."""
    acc = DistanceAccumulator((1, 2), 0, 8)
    assert isinstance(acc, HeadSums)
    acc.update(0, torch.full((3, 1, 2, 2), 0.5))
    np.testing.assert_allclose(acc.result(), [[4.0]])
