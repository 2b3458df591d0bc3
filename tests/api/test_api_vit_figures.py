"""ViT-figure APIs: position-embedding similarity and patch-embedding PCA (ViT Fig. 7 left/centre), mean
attention distance for a cached analysis and as background jobs (start, progress, cancel, result, reuse,
uploads and zips, every bad input), the ResNet-50 reference, and the job registry itself."""

from __future__ import annotations

import io
import threading
import time
import zipfile

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.jobs import JobRegistry, JobsBusy, UserError
from app.main import create_app
from app.serialization import decode_typed_array
from app.services.distance import MAX_FILES
from app.settings import Settings, VisionModelEntry
from models.vision.analysis import load_vision_model
from models.vision.distance import Cancelled, dataset_mean_attention_distance
from models.vision.registry import build_model
from models.vision.samples import sample_images
from models.vision.vit_embeddings import patch_embedding_pca, patch_pos_embed, position_similarity_tiles
from tests.factories import TINY_SPECS, photo_bytes, tiny_settings, zip_of

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


# ----------------------------------------------------------------------------------------------------------
# Mean attention distance: image sets as jobs


def test_samples_job_progress_result_units_and_reuse(client) -> None:
    r = client.post("/api/distance/jobs", data={"model": "tiny_deit_distilled", "batch_size": 3})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running", "done") and job["total"] == 8 and job["batch_size"] == 3
    job = wait(client, job)
    assert job["status"] == "done" and job["done"] == job["total"] == 8, job
    res = job["result"]
    assert res["source"] == "samples" and res["n_images"] == 8 and res["source_label"] == "8 sample photos"
    mad = decode_typed_array(res["mad"])
    vm = load_vision_model(TINY_SPECS[1], "cpu")
    direct = dataset_mean_attention_distance(vm, list(sample_images().values()), batch_size=8)
    np.testing.assert_allclose(mad, direct.mad, rtol=1e-5)
    assert res["geometry"]["num_prefix_tokens"] == 2
    frac = client.get(job["job_url"], params={"unit": "diagonal"}).json()["result"]
    np.testing.assert_allclose(decode_typed_array(frac["mad"]), mad / (16 * np.hypot(3, 3)))
    again = client.post("/api/distance/jobs", data={"model": "tiny_deit_distilled", "unit": "patches"})
    assert again.status_code == 202 and again.json()["reused"] and again.json()["job_id"] == job["job_id"]
    np.testing.assert_allclose(decode_typed_array(again.json()["result"]["mad"]), mad / 16)
    renorm = client.post(
        "/api/distance/jobs", data={"model": "tiny_deit_distilled", "renormalize": "true"}
    ).json()
    assert not renorm["reused"] and wait(client, renorm)["result"]["renormalize"] is True


def test_job_cancel_while_waiting_for_the_model(client) -> None:
    """A job whose batch waits behind other model work is cancelled cleanly; the queue keeps serving."""
    state = client.app.state.atlas
    release, started = threading.Event(), threading.Event()

    def hold() -> None:
        started.set()
        release.wait(10)

    blocker = threading.Thread(target=state.queue.run_sync, args=(hold,))
    blocker.start()
    started.wait(5)
    try:
        job = client.post("/api/distance/jobs", data={"model": "tiny_vit", "batch_size": 1}).json()
        wait_until(lambda: client.get(job["job_url"]).json()["status"] == "running")
        status = client.get(job["job_url"]).json()
        assert status["status"] == "running" and status["done"] == 0 and status["result"] is None
        c = client.post(job["cancel_url"])
        assert c.status_code == 200 and c.json()["job_id"] == job["job_id"]
    finally:
        release.set()
        blocker.join(5)
    final = wait(client, job)
    assert final["status"] == "cancelled" and final["done"] <= 1 and final["result"] is None
    # the queue is free again, and a finished job's cancel changes nothing
    assert client.post("/api/vision/analyze", data={"sample": "coffee"}).status_code == 200
    assert client.post(job["cancel_url"]).json()["status"] == "cancelled"
    blocks = state.vision_store.get("tiny_vit").model.blocks
    assert all(not b.attn.attn_drop._forward_hooks for b in blocks)  # hooks gone after every batch


def wait_until(condition, timeout: float = 20.0) -> None:
    """Poll instead of sleeping a fixed time: a loaded CI machine may be slow to get there."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the queue"
        time.sleep(0.01)


def test_single_image_requests_interleave_with_a_job(client) -> None:
    """Each batch of a job goes through the compute queue, so an analysis is served between two batches."""
    state = client.app.state.atlas
    submit, order = state.queue.submit, []

    def logged(fn, *args, **kwargs):
        # submission order = execution order (one worker); the analysis is _forward_and_cache
        order.append(getattr(fn, "__name__", "?"))
        return submit(fn, *args, **kwargs)

    release, started = threading.Event(), threading.Event()
    blocker = threading.Thread(target=state.queue.run_sync, args=(lambda: (started.set(), release.wait(10)),))
    blocker.start()
    started.wait(5)
    state.queue.submit = logged  # the instance attribute shadows the method for this test's app only
    try:
        job = client.post("/api/distance/jobs", data={"model": "tiny_vit", "batch_size": 1}).json()
        wait_until(lambda: len(order) >= 1)  # the job's first batch now waits behind the blocker
        analysis = threading.Thread(
            target=client.post, args=("/api/vision/analyze",), kwargs={"data": {"sample": "cat"}}
        )
        analysis.start()
        wait_until(lambda: len(order) >= 2)  # the analysis is queued behind that batch
    finally:
        release.set()
        blocker.join(5)
    final = wait(client, job)
    analysis.join(5)
    assert final["status"] == "done" and final["result"]["n_images"] == 8
    del state.queue.submit
    assert order.count("batch_mad") == 8 and order.index("_forward_and_cache") == 1, order


def test_unknown_job_is_404(client) -> None:
    for r in (client.get("/api/distance/jobs/feedbeef"), client.post("/api/distance/jobs/feedbeef/cancel")):
        assert r.status_code == 404 and "No distance job" in r.json()["detail"]


def test_upload_files_and_zip(client) -> None:
    files = [("files", (f"im{i}.png", photo_bytes(i), "image/png")) for i in range(3)]
    job = client.post("/api/distance/jobs", data={"source": "upload"}, files=files)
    assert job.status_code == 202, job.text
    done = wait(client, job.json())
    assert done["status"] == "done" and done["result"]["n_images"] == 3
    assert done["result"]["source_label"] == "3 uploaded images"
    archive = zip_of(
        {
            "a/x.jpg": photo_bytes(7, fmt="JPEG"),
            "b.png": photo_bytes(8),
            "readme.txt": b"hi",
            "__MACOSX/._b.png": b"junk",
        }
    )
    z = client.post(
        "/api/distance/jobs",
        data={"source": "upload"},
        files=[("files", ("set.zip", archive, "application/zip"))],
    )
    assert z.status_code == 202, z.text
    assert wait(client, z.json())["result"]["n_images"] == 2


@pytest.mark.parametrize(
    ("data", "files", "status", "fragment"),
    [
        ({"source": "upload"}, [], 400, "Choose one or more"),
        ({}, [("files", ("a.png", photo_bytes(1), "image/png"))], 400, "source=upload"),
        (
            {"source": "upload"},
            [("files", ("s.zip", zip_of({"notes.txt": b"x"}), "application/zip"))],
            400,
            "contains no images",
        ),
        (
            {"source": "upload"},
            [("files", ("bad.zip", b"PK\x03\x04 not really", "application/zip"))],
            400,
            "bad.zip",
        ),
        ({"source": "upload"}, [("files", ("t.png", b"just text", "image/png"))], 415, "t.png"),
        (
            {"source": "upload"},
            [("files", (f"{i}.png", b"x", "image/png")) for i in range(MAX_FILES + 1)],
            400,
            "Too many files",
        ),
        ({"source": "upload"}, [("files", ("c.zip", corrupt_zip(), "application/zip"))], 400, "c.zip/a.png"),
        ({"model": "nope"}, [], 400, "Unknown vision model"),
        ({"resolution": "999"}, [], 400, "resolutions"),
        ({"batch_size": "0"}, [], 422, "batch_size"),
        ({"source": "web"}, [], 422, "source"),
    ],
)
def test_job_bad_input(client, data, files, status, fragment) -> None:
    r = client.post("/api/distance/jobs", data=data, files=files or None)
    assert r.status_code == status and fragment in r.json()["detail"], r.text


def test_zip_bomb_member_is_refused(client) -> None:
    """A small zip whose member expands past the upload limit (1 MB in tests) is refused before decoding."""
    big = Image.new("RGB", (700, 700))  # a 1.4 MB BMP that deflates to a few KB
    buf = io.BytesIO()
    big.save(buf, format="BMP")
    archive = zip_of({"big.bmp": buf.getvalue()})
    assert len(archive) < 100_000
    r = client.post(
        "/api/distance/jobs",
        data={"source": "upload"},
        files=[("files", ("b.zip", archive, "application/zip"))],
    )
    assert r.status_code == 413 and "big.bmp" in r.json()["detail"]


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


# ----------------------------------------------------------------------------------------------------------
# The job registry


def test_registry_bounds_failures_and_eviction() -> None:
    reg = JobRegistry(max_active=2, max_kept=2, max_running=1, cancelled_types=(Cancelled,))
    gate = threading.Event()

    def slow(job):
        while not gate.wait(0.01):
            if job.cancel_event.is_set():
                raise Cancelled("stop")
        return "ok"

    a = reg.submit(slow, "t", {})
    b = reg.submit(slow, "t", {})
    with pytest.raises(JobsBusy):
        reg.submit(slow, "t", {})
    reg.cancel(b.id)  # cancelled while still queued behind a
    deadline = time.monotonic() + 5
    while b.status != "cancelled":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert a.status == "running"
    gate.set()
    while a.status != "done":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert a.result == "ok" and reg.find_done("k") is None

    def user_error(job):
        raise UserError("bad.png: cannot decode")

    def crash(job):
        raise RuntimeError("boom")

    c, d = reg.submit(user_error, "t", {}), reg.submit(crash, "t", {})
    while c.status not in FINISHED or d.status not in FINISHED:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert (c.status, c.error) == ("failed", "bad.png: cannot decode")
    assert d.status == "failed" and "boom" not in d.error and "reference" in d.error  # details: the log
    assert reg.get(a.id) is None and [j.id for j in reg.jobs()] == [c.id, d.id]  # oldest finished evicted
