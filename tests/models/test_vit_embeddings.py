"""ViT Figure 7 left/centre numerics: position-embedding cosine tiles and patch-filter PCA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.vision.registry import build_model
from models.vision.vit_embeddings import (
    patch_embed_weight,
    patch_embedding_pca,
    patch_pos_embed,
    position_similarity_tiles,
    tile_mosaic,
)
from tests.factories import TINY_SPECS, make_tiny_vit

A, B = 0.7, 0.4  # angular frequencies of the planted embedding along rows and columns


def planted_pos_embed(rows: int, cols: int, prefix: int) -> tuple[torch.Tensor, np.ndarray]:
    """E(r, c) = [cos Ar, sin Ar, cos Bc, sin Bc] / sqrt(2) (+ random prefix rows), and its known tiles.

    cos(E(r, c), E(r', c')) = (cos A(r - r') + cos B(c - c')) / 2.
    """
    r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")  # (R, C) each
    emb = np.stack([np.cos(A * r), np.sin(A * r), np.cos(B * c), np.sin(B * c)], -1) / np.sqrt(2)  # (R, C, 4)
    emb = emb.reshape(rows * cols, 4)  # (P, 4)
    pre = np.random.default_rng(0).normal(size=(prefix, 4)) * 5.0  # (prefix, 4) must be ignored
    full = torch.tensor(np.concatenate([pre, emb]), dtype=torch.float32)[None]  # (1, prefix + P, 4)
    dr = r[:, :, None, None] - r[None, None]  # (R, C, R, C)
    dc = c[:, :, None, None] - c[None, None]  # (R, C, R, C)
    return full, (np.cos(A * dr) + np.cos(B * dc)) / 2


@pytest.mark.parametrize(("rows", "cols", "prefix"), [(4, 4, 1), (3, 5, 2), (5, 3, 0)])
def test_position_tiles_match_planted_cosines(rows, cols, prefix):
    pos, expected = planted_pos_embed(rows, cols, prefix)
    tiles = position_similarity_tiles(pos, (rows, cols), prefix)
    assert tiles.shape == (rows, cols, rows, cols) and tiles.dtype == np.float32
    np.testing.assert_allclose(tiles, expected, atol=1e-6)
    for r in range(rows):
        for c in range(cols):
            # each tile peaks (cosine 1) at its own position and nowhere else
            assert np.unravel_index(tiles[r, c].argmax(), (rows, cols)) == (r, c)
            assert tiles[r, c, r, c] == pytest.approx(1.0, abs=1e-6)
    # 2-D input and numpy input give the same result
    np.testing.assert_allclose(position_similarity_tiles(pos[0].numpy(), (rows, cols), prefix), tiles)


def test_position_tiles_reject_wrong_count():
    pos, _ = planted_pos_embed(3, 5, 1)
    with pytest.raises(ValueError, match="prefix"):
        position_similarity_tiles(pos, (4, 4), 1)


def test_tile_mosaic_layout():
    rows, cols, gap = 3, 5, 1
    _, tiles = planted_pos_embed(rows, cols, 0)
    mosaic = tile_mosaic(tiles, gap=gap)
    assert mosaic.shape == (rows * rows + (rows - 1) * gap, cols * cols + (cols - 1) * gap)
    np.testing.assert_allclose(mosaic[0:3, 0:5], tiles[0, 0])
    np.testing.assert_allclose(mosaic[4:7, 6:11], tiles[1, 1])
    np.testing.assert_allclose(mosaic[8:11, 24:29], tiles[2, 4])
    assert np.isnan(mosaic[3]).all() and np.isnan(mosaic[:, 5]).all()  # gap row and column
    assert np.isnan(mosaic).sum() == mosaic.size - tiles.size
    assert not np.isnan(tile_mosaic(tiles, gap=0)).any()


def test_patch_pos_embed_class_token_models():
    model = make_tiny_vit()  # 32 px / 8 -> 4x4, [CLS] stored in pos_embed
    emb, grid = patch_pos_embed(model)
    assert grid == (4, 4) and emb.shape == (16, 32)
    np.testing.assert_array_equal(emb, model.pos_embed[0, 1:].detach().numpy())

    distilled = build_model(TINY_SPECS[1], cache_dir=Path("."))  # 48 px / 16 -> 3x3, 2 prefix entries
    emb, grid = patch_pos_embed(distilled)
    assert distilled.num_prefix_tokens == 2 and grid == (3, 3)
    np.testing.assert_array_equal(emb, distilled.pos_embed[0, 2:].detach().numpy())


def test_patch_pos_embed_no_embed_class_and_non_square():
    model = make_tiny_vit(no_embed_class=True, img_size=(32, 48))  # pos_embed holds patches only
    assert model.pos_embed.shape[1] == 4 * 6
    emb, grid = patch_pos_embed(model)
    assert grid == (4, 6)
    np.testing.assert_array_equal(emb, model.pos_embed[0].detach().numpy())
    tiles = position_similarity_tiles(emb, grid, num_prefix_tokens=0)
    assert tiles.shape == (4, 6, 4, 6)


def test_patch_pos_embed_dynamic_uses_stored_grid():
    model = make_tiny_vit(img_size=56, dynamic_img_size=True)  # stored 7x7, runs at any size
    emb, grid = patch_pos_embed(model)
    assert grid == (7, 7) and emb.shape == (49, 32)
    model.pos_embed = None
    with pytest.raises(ValueError, match="position embedding"):
        patch_pos_embed(model)


def test_pca_shapes_orthonormal_and_variance():
    rng = np.random.default_rng(0)
    dim, p = 64, 8
    planted = rng.normal(size=3 * p * p)
    planted /= np.linalg.norm(planted)
    coef = rng.normal(size=(dim, 1)) * 10.0
    weight = (coef * planted + rng.normal(size=(dim, 3 * p * p)) * 0.1).reshape(dim, 3, p, p)
    res = patch_embedding_pca(torch.tensor(weight, dtype=torch.float32), n_components=28)
    assert res.components.shape == (28, 3, p, p)
    assert res.explained_variance_ratio.shape == (28,)
    assert res.rgb_tiles.shape == (28, p, p, 3) and res.rgb_tiles.dtype == np.uint8
    flat = res.components.reshape(28, -1).astype(np.float64)
    np.testing.assert_allclose(flat @ flat.T, np.eye(28), atol=1e-5)
    # the planted direction is the first component (up to sign, fixed by the largest entry)
    assert abs(flat[0] @ planted) > 0.999
    ratio = res.explained_variance_ratio
    assert np.all(np.diff(ratio) <= 1e-12) and 0.9 < ratio[0] < 1.0 and ratio.sum() <= 1.0 + 1e-9
    # independent check: eigenvalues of the covariance of the centred filters
    x = weight.reshape(dim, -1)
    eig = np.sort(np.linalg.eigvalsh(np.cov(x, rowvar=False)))[::-1]
    np.testing.assert_allclose(ratio, eig[:28] / eig.sum(), rtol=1e-4, atol=1e-9)
    # per-component min-max display scaling uses the full 0..255 range
    assert (res.rgb_tiles.reshape(28, -1).min(1) == 0).all()
    assert (res.rgb_tiles.reshape(28, -1).max(1) == 255).all()


def test_pca_too_many_components_and_model_weight():
    weight = patch_embed_weight(make_tiny_vit())  # (32, 3, 8, 8)
    assert weight.shape == (32, 3, 8, 8)
    assert patch_embedding_pca(weight, n_components=32).components.shape == (32, 3, 8, 8)
    with pytest.raises(ValueError, match="n_components"):
        patch_embedding_pca(weight, n_components=33)
    with pytest.raises(ValueError, match="n_components"):
        patch_embedding_pca(weight, n_components=0)
