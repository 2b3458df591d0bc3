"""ViT-figure APIs: position-embedding similarity and patch-embedding PCA (ViT Fig. 7 left/centre), mean
attention distance for a cached analysis and as background jobs (start, progress, cancel, result, reuse,
uploads and zips, every bad input), the ResNet-50 reference, and the job registry itself."""

from __future__ import annotations

import io
import time
import zipfile

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.serialization import decode_typed_array
from app.settings import Settings, VisionModelEntry
from models.vision.analysis import load_vision_model
from models.vision.distance import dataset_mean_attention_distance
from models.vision.registry import build_model
from models.vision.samples import sample_images
from models.vision.vit_embeddings import patch_embedding_pca, patch_pos_embed, position_similarity_tiles
from tests.factories import TINY_SPECS, photo_bytes, tiny_settings

WIDE = VisionModelEntry(  # a non-square 4 x 6 position grid
    id="tiny_wide",
    arch_tag="vit_tiny_patch16_224.random",
    source="random",
    label="Tiny random ViT, 32x48 input (tests)",
    timm_kwargs=dict(img_size=(32, 48), patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=10),
)
FINISHED = ("done", "failed", "cancelled")


@pytest.fixture
def client(tmp_path, app_client):
    base = tiny_settings(tmp_path)
    return app_client(
        tiny_settings(tmp_path, vision_models=[*base.models.vision_models, WIDE], preload=False)
    )


def corrupt_zip() -> bytes:
    """A zip whose stored image fails its CRC check."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("a.png", photo_bytes(3))
    data = bytearray(buf.getvalue())
    data[100] ^= 0xFF  # inside the stored member
    return bytes(data)


def wait(client, job: dict, timeout: float = 30.0, unit: str = "pixels") -> dict:
    deadline = time.monotonic() + timeout
    while job["status"] not in FINISHED:
        assert time.monotonic() < deadline, job
        time.sleep(0.02)
        job = client.get(job["job_url"], params={"unit": unit}).json()
    return job


# ----------------------------------------------------------------------------------------------------------
# Embeddings (Fig. 7 left and centre)


def test_position_similarity_matches_models_and_encodings(client) -> None:
    r = client.get("/api/vit-embeddings/position-similarity", params={"model": "tiny_vit", "dtype": "f4"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["rows"], body["cols"], body["prefix_tokens_left_out"], body["embed_dim"]) == (4, 4, 1, 32)
    exact = decode_typed_array(body["tiles"])
    emb, grid = patch_pos_embed(build_model(TINY_SPECS[0], cache_dir=None))  # same seed, same weights
    np.testing.assert_allclose(exact, position_similarity_tiles(emb, grid, 0), atol=1e-6)
    assert exact[2, 1, 2, 1] == pytest.approx(1.0)
    q = client.get("/api/vit-embeddings/position-similarity", params={"model": "tiny_vit"}).json()
    quantised = decode_typed_array(q["tiles"])
    assert q["tiles"]["dtype"] == "u1" and quantised[2, 1, 2, 1] == 255
    decoded = q["scale_min"] + quantised / 255.0 * (q["scale_max"] - q["scale_min"])
    np.testing.assert_allclose(decoded, exact, atol=1 / 255 + 1e-6)
    off = exact.reshape(16, 16)[~np.eye(16, dtype=bool)]
    assert q["min_off_diagonal"] == pytest.approx(off.min()) and q["max_off_diagonal"] == pytest.approx(
        off.max()
    )
    strided = client.get(
        "/api/vit-embeddings/position-similarity", params={"model": "tiny_vit", "stride": 3}
    ).json()
    assert strided["tile_rows"] == strided["tile_cols"] == [0, 3]
    assert decode_typed_array(strided["tiles"]).shape == (2, 2, 4, 4)


def test_position_similarity_prefix_tokens_and_non_square(client) -> None:
    deit = client.get(
        "/api/vit-embeddings/position-similarity", params={"model": "tiny_deit_distilled"}
    ).json()
    assert (deit["rows"], deit["cols"], deit["prefix_tokens_left_out"]) == (3, 3, 2)  # CLS + distillation
    wide = client.get("/api/vit-embeddings/position-similarity", params={"model": "tiny_wide", "dtype": "f4"})
    body = wide.json()
    assert (body["rows"], body["cols"]) == (4, 6)
    tiles = decode_typed_array(body["tiles"])
    assert tiles.shape == (4, 6, 4, 6)
    np.testing.assert_allclose(tiles[1, 5, 1, 5], 1.0, atol=1e-6)
    np.testing.assert_allclose(tiles[0, 5, 3, 2], tiles[3, 2, 0, 5], atol=1e-6)  # cosine is symmetric


def test_patch_filters_pca(client) -> None:
    r = client.get("/api/vit-embeddings/patch-filters", params={"model": "tiny_vit", "n_components": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["patch_size"], body["embed_dim"], body["n_components"]) == (8, 32, 5)
    tiles, comps = decode_typed_array(body["rgb_tiles"]), decode_typed_array(body["components"])
    ratio = decode_typed_array(body["explained_variance_ratio"])
    assert tiles.shape == (5, 8, 8, 3) and tiles.dtype == np.uint8 and comps.shape == (5, 3, 8, 8)
    weight = build_model(TINY_SPECS[0], cache_dir=None).patch_embed.proj.weight.detach().numpy()
    ref = patch_embedding_pca(weight, 5)
    np.testing.assert_allclose(ratio, ref.explained_variance_ratio, rtol=1e-6)
    np.testing.assert_allclose(comps, ref.components, atol=1e-6)
    assert np.all(np.diff(ratio) <= 1e-12) and 0 < ratio.sum() < 1
    np.testing.assert_allclose(np.linalg.norm(comps.reshape(5, -1), axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    ("path", "params", "status", "fragment"),
    [
        ("position-similarity", {"model": "nope"}, 400, "Unknown vision model"),
        ("position-similarity", {"stride": 0}, 422, "stride"),
        ("position-similarity", {"dtype": "f8"}, 422, "dtype"),
        ("patch-filters", {"n_components": 33}, 400, "n_components"),  # > min(D=32, 3*8*8)
        ("patch-filters", {"n_components": 0}, 422, "n_components"),
        ("patch-filters", {"model": "nope"}, 400, "Unknown vision model"),
    ],
)
def test_embedding_bad_input(client, path, params, status, fragment) -> None:
    r = client.get(f"/api/vit-embeddings/{path}", params=params)
    assert r.status_code == status and fragment in r.json()["detail"], r.text


def test_dinov2_position_grid_is_37x37(tmp_path_factory) -> None:
    """The real offline default: a 37 x 37 learned grid whose neighbours are more alike than far positions."""
    settings = Settings(
        device="cpu", cache_dir=tmp_path_factory.mktemp("dinov2"), preload=False, allowed_hosts=["testserver"]
    )
    with TestClient(create_app(settings)) as app_client:
        body = app_client.get("/api/vit-embeddings/position-similarity").json()
        assert body["model"] == "dinov2_vits14" and (body["rows"], body["cols"]) == (37, 37)
        tiles = decode_typed_array(body["tiles"]).astype(np.float64) / 127.5 - 1.0
        assert tiles.shape == (37, 37, 37, 37)  # a 1405 x 1405 mosaic with 1-pixel gaps
        r, c = np.meshgrid(np.arange(37), np.arange(37), indexing="ij")
        centre = tiles[18, 18]
        dist = np.hypot(r - 18, c - 18)
        assert centre[dist == 1].mean() > centre[dist > 12].mean() + 0.3
        # row-column structure: positions in the same row or column are more alike than off-axis ones
        same_axis = (r == 18) | (c == 18)
        far = dist > 6
        assert centre[same_axis & far].mean() > centre[~same_axis & far].mean()
        small = app_client.get("/api/vit-embeddings/position-similarity", params={"stride": 3}).json()
        assert decode_typed_array(small["tiles"]).shape == (13, 13, 37, 37)
        pca = app_client.get("/api/vit-embeddings/patch-filters").json()
        assert decode_typed_array(pca["rgb_tiles"]).shape == (28, 14, 14, 3)
        ratio = decode_typed_array(pca["explained_variance_ratio"])
        assert (
            ratio[0] > 1.5 * ratio[1]
        )  # learned filters: a leading component (random ones: a flat spectrum)


# ----------------------------------------------------------------------------------------------------------
# Mean attention distance: one cached image


def test_analysis_distance_from_vision_cache(client) -> None:
    aid = client.post("/api/vision/analyze", data={"sample": "chelsea"}).json()["analysis_id"]
    r = client.get(f"/api/distance/analysis/{aid}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["source"] == "analysis" and body["n_images"] == 1 and body["unit"] == "pixels"
    g = body["geometry"]
    assert (g["num_layers"], g["num_heads"], g["patch_size"], g["rows"], g["num_prefix_tokens"]) == (
        3,
        4,
        8,
        4,
        1,
    )
    mad = decode_typed_array(body["mad"])
    vm = load_vision_model(TINY_SPECS[0], "cpu")
    direct = dataset_mean_attention_distance(vm, [sample_images()["chelsea"]])
    np.testing.assert_allclose(mad, direct.mad, rtol=2e-3)  # the cache keeps float16 maps
    np.testing.assert_allclose(decode_typed_array(body["per_layer_mean"]), mad.mean(1))
    patches = decode_typed_array(
        client.get(f"/api/distance/analysis/{aid}", params={"unit": "patches"}).json()["mad"]
    )
    np.testing.assert_allclose(patches, mad / 8)
    diag = decode_typed_array(
        client.get(f"/api/distance/analysis/{aid}", params={"unit": "diagonal"}).json()["mad"]
    )
    np.testing.assert_allclose(diag, mad / (8 * np.hypot(4, 4)))
    renorm = decode_typed_array(
        client.get(f"/api/distance/analysis/{aid}", params={"renormalize": True}).json()["mad"]
    )
    assert np.all(renorm >= mad - 1e-9) and not np.allclose(renorm, mad)  # CLS mass no longer counts as 0
    gone = client.get("/api/distance/analysis/0123456789abcdef")
    assert gone.status_code == 404 and "expired" in gone.json()["detail"]
    assert client.get(f"/api/distance/analysis/{aid}", params={"unit": "inches"}).status_code == 422


def test_receptive_field_reference(client) -> None:
    r = client.get("/api/distance/receptive-field", params={"num_layers": 12})
    assert r.status_code == 200, r.text
    body = r.json()
    x, rf = decode_typed_array(body["x"]), decode_typed_array(body["rf"])
    assert body["rf_pixels"][-1] == 427 and rf[-1] == 427 and x[-1] == pytest.approx(11.0)
    assert np.all(np.diff(rf) >= 0) and len(body["names"]) == len(x) == len(body["depth_index"])
    p = client.get(
        "/api/distance/receptive-field", params={"num_layers": 12, "unit": "patches", "patch_size": 14}
    )
    np.testing.assert_allclose(decode_typed_array(p.json()["rf"]), rf / 14)
    assert client.get("/api/distance/receptive-field", params={"num_layers": 0}).status_code == 422


def test_receptive_field_comparable_quantity(client) -> None:
    """The comparable line: MAD of uniform attention over each receptive-field window, on the ViT's grid."""
    from models.vision.receptive_field import max_mad, uniform_image_mad, uniform_window_mad

    body = client.get("/api/distance/receptive-field", params={"num_layers": 12}).json()
    w = decode_typed_array(body["uniform_window"])
    np.testing.assert_allclose(w, uniform_window_mad((14, 14), 16, body["rf_pixels"]), rtol=1e-12)
    assert w[0] == 0.0 and w[-1] < 117 < 427  # a mean distance, far under the 427 px width
    assert body["uniform_image"] == pytest.approx(uniform_image_mad((14, 14), 16), rel=1e-12)
    assert body["max_distance"] == pytest.approx(max_mad((14, 14), 16), rel=1e-12)
    assert (
        body["uniform_image"]
        < body["max_distance"]
        < body["image_diagonal"]
        == pytest.approx(16 * np.hypot(14, 14))
    )
    # units: the same numbers divided by the patch size; another grid gives other numbers
    q = {"num_layers": 12, "unit": "patches", "patch_size": 14, "rows": 37, "cols": 37}
    b2 = client.get("/api/distance/receptive-field", params=q).json()
    np.testing.assert_allclose(
        decode_typed_array(b2["uniform_window"]),
        uniform_window_mad((37, 37), 14, b2["rf_pixels"]) / 14,
        rtol=1e-12,
    )
    assert b2["max_distance"] == pytest.approx(max_mad((37, 37), 14) / 14, rel=1e-12)


def test_pages_render(client) -> None:
    for path, marker in (("/vit-embeddings", "emb-mosaic"), ("/distance", "dist-chart")):
        r = client.get(path)
        assert r.status_code == 200 and marker in r.text and "tiny_wide" in r.text
