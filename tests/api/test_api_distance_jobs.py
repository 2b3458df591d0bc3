"""Mean attention distance of image sets as background jobs (start, progress, cancel, result, reuse, uploads
and zips, every bad input) and the job registry itself; split from tests/api/test_api_vit_figures.py, whose
app (the tiny models plus a non-square ViT) and helpers these tests use."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from app.jobs import JobRegistry, JobsBusy, UserError
from app.serialization import decode_typed_array
from app.services.distance import MAX_FILES
from models.vision.analysis import load_vision_model
from models.vision.distance import Cancelled, dataset_mean_attention_distance
from models.vision.samples import sample_images
from tests.api import test_api_vit_figures as vit_figures
from tests.api.test_api_vit_figures import FINISHED, corrupt_zip, wait
from tests.conftest import wait_until
from tests.factories import TINY_SPECS, photo_bytes, zip_of

client = vit_figures.client  # the fixture: the same app (the tiny models plus a non-square ViT)

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
            target=client.post, args=("/api/vision/analyze",), kwargs={"data": {"sample": "chelsea"}}
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
