"""CNN receptive fields, the reference line of ViT Fig. 7 right, and the comparable quantity: the mean distance
of uniform attention over a receptive-field window (split from tests/models/test_distance.py)."""

from __future__ import annotations

import numpy as np
import pytest
import timm

from models.vision.receptive_field import (
    layers_from_resnet,
    on_vit_depth_axis,
    receptive_fields,
    resnet50_layers,
    resnet50_receptive_fields,
)

# ----------------------------------------------------------------------------------------------------------
# CNN receptive field (reference line for Fig. 7 right)


def test_receptive_field_recurrence():
    from models.vision.receptive_field import ConvLayer

    # two 3x3 convs = 5; with stride 2 first, then 3x3: 3 + 2*2 = 7; dilation 2 on a 3x3: 1 + 2*2 = 5
    assert receptive_fields([ConvLayer("a", 3), ConvLayer("b", 3)]) == [(3, 1), (5, 1)]
    assert receptive_fields([ConvLayer("a", 3, 2), ConvLayer("b", 3)]) == [(3, 2), (7, 2)]
    assert receptive_fields([ConvLayer("a", 3, 1, 2)]) == [(5, 1)]


def test_resnet50_receptive_fields():
    rfs = resnet50_receptive_fields()
    assert rfs[0] == ("conv1", 1, 7) and rfs[1] == ("maxpool", 1, 11)
    assert rfs[-1] == ("layer4.2.conv3", 49, 427)  # the widely cited 427 px of ResNet-50 v1.5
    by_name = {r.name: r.rf_pixels for r in rfs}
    # ends of stages: 11 + 3*8 = 35; + 8 + 3*16 = 91; + 16 + 5*32 = 267; + 32 + 2*64 = 427
    assert [by_name[f"layer{s}.{b}.conv3"] for s, b in [(1, 2), (2, 3), (3, 5), (4, 2)]] == [35, 91, 267, 427]
    assert [r.depth_index for r in rfs if r.name != "maxpool"] == list(range(1, 50))
    # the explicit spec is what timm's resnet50 actually is (stride on the 3x3 conv, shortcuts skipped)
    model = timm.create_model("resnet50", pretrained=False)
    assert layers_from_resnet(model) == resnet50_layers()


def test_rf_on_vit_axis():
    points = on_vit_depth_axis(resnet50_receptive_fields(), num_vit_layers=12)
    assert points[-1] == (pytest.approx(11.0), 427)  # last conv at the ViT's last block (0-based 11)
    assert points[0][0] == pytest.approx(12 / 49 - 1)
    xs = [x for x, _ in points]
    assert xs == sorted(xs)
    with pytest.raises(ValueError):
        on_vit_depth_axis(resnet50_receptive_fields(), 0)


# ----------------------------------------------------------------------------------------------------------
# The comparable quantity: MAD of uniform attention over a CNN's receptive-field window


def _distances_f64(rows: int, cols: int, p: int) -> np.ndarray:
    """(P, P) float64 pixel distances between patch centres (patch_distances keeps float32)."""
    g = np.stack(np.divmod(np.arange(rows * cols), cols), axis=1).astype(np.float64)  # (P, 2) (row, col)
    return p * np.hypot(*(g[:, None, :] - g[None, :, :]).transpose(2, 0, 1))  # (P, P)


def _brute_uniform_window_mad(rows: int, cols: int, p: int, k: float) -> float:
    """Reference: the full (P, P) map of window shares, pixel by pixel, and the chart's MAD formula."""
    size_y, size_x = rows * p, cols * p
    ys, xs = np.mgrid[0:size_y, 0:size_x] + 0.5  # (H, W) pixel centres
    patch_of = (ys // p).astype(int) * cols + (xs // p).astype(int)  # (H, W) row-major patch index
    d = _distances_f64(rows, cols, p)  # (P, P) pixels
    total = 0.0
    for i in range(rows * cols):
        cy, cx = (i // cols + 0.5) * p, (i % cols + 0.5) * p
        inside = (np.abs(ys - cy) <= k / 2) & (np.abs(xs - cx) <= k / 2)  # (H, W) the clipped window
        a = np.bincount(patch_of[inside], minlength=rows * cols) / inside.sum()  # (P,) uniform over pixels
        total += float(a @ d[i])
    return total / (rows * cols)


@pytest.mark.parametrize(
    "grid,p,k", [((3, 4), 8, 8.0), ((4, 4), 8, 24.0), ((5, 3), 4, 12.0), ((4, 5), 8, 200.0)]
)
def test_uniform_window_mad_matches_pixelwise_reference(grid, p, k):
    from models.vision.receptive_field import uniform_window_mad

    # k a multiple of 2 px so the pixel-centre reference covers exactly the window's pixels
    got = uniform_window_mad(grid, p, [k])[0]
    assert got == pytest.approx(_brute_uniform_window_mad(*grid, p, k), rel=1e-12, abs=1e-9)


def test_uniform_window_mad_limits():
    from models.vision.receptive_field import max_mad, uniform_image_mad, uniform_window_mad

    grid, p = (14, 14), 16  # ViT-B/16 at 224 px
    whole = uniform_image_mad(grid, p)
    assert whole == pytest.approx(116.5, abs=0.1)  # the issue's ~116 px; continuous 224 * 0.5214 = 116.8
    d = _distances_f64(*grid, p)  # (P, P)
    assert whole == pytest.approx(d.mean(), rel=1e-12)  # every query attends 1/P to every patch
    assert max_mad(grid, p) == pytest.approx(d.max(axis=1).mean(), rel=1e-12)  # farthest patch, per query
    assert 228 < max_mad(grid, p) < 230 < 16 * np.hypot(14, 14)  # "no head can exceed ~230 px"
    rf = [r.rf_pixels for r in resnet50_receptive_fields()]
    w = uniform_window_mad(grid, p, rf)
    assert w[0] == 0.0 and w[1] == 0.0  # 7 and 11 px windows stay inside the query's own 16 px patch
    assert np.all(np.diff(w) >= -1e-12)
    # 427 px: every query's window reaches all but the far 2.5 px of the image from a corner patch
    assert whole * 0.99 < w[-1] <= whole
    assert uniform_window_mad(grid, p, [2 * 224])[0] == pytest.approx(whole, rel=1e-12)  # covers everything
    assert w[-1] < 427 / 3  # the width (427 px) and the mean distance are not the same quantity
    # an unclipped window on a fine grid approaches the continuous 0.3826 k (mean distance, centre of a square)
    far = uniform_window_mad((200, 200), 1, [21.0])[0]
    assert 0.3826 * 21 * 0.85 < far < 0.3826 * 21
    with pytest.raises(ValueError):
        uniform_window_mad(grid, p, [0.0])
