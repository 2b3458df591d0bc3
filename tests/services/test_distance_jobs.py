"""Image-set jobs under load and attack: slots and quota first, header-only checks, a pixel budget, decodes
inside the job, bad zip names, broken EXIF, and merging of identical jobs."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from app.services import distance as distance_service
from app.services import images as image_service
from tests.factories import BROKEN_EXIF, photo_bytes, tiny_settings, zip_of

FINISHED = ("done", "failed", "cancelled")


@pytest.fixture
def client(tmp_path, app_client):
    return app_client(tiny_settings(tmp_path, preload=False, max_upload_mb=4.0))


def wait(client, job: dict, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while job["status"] not in FINISHED:
        assert time.monotonic() < deadline, job
        time.sleep(0.02)
        job = client.get(job["job_url"]).json()
    return job


def upload(client, files: list[tuple[str, bytes]], **data):
    parts = [("files", (name, blob, "application/octet-stream")) for name, blob in files]
    return client.post("/api/distance/jobs", data={"source": "upload", **data}, files=parts)


@pytest.fixture
def decodes(monkeypatch) -> list[int]:
    """Counts every decode of an uploaded image (header reads are not decodes)."""
    calls: list[int] = []
    real = image_service.decode_image

    def counting(data, *args, **kwargs):
        calls.append(len(data))
        return real(data, *args, **kwargs)

    monkeypatch.setattr(image_service, "decode_image", counting)
    return calls


def test_decode_bomb_set_refused_from_headers(client, decodes) -> None:
    """256 near-limit 16-bit PNGs: refused with 413 from their headers, before a single decode."""
    limit = client.app.state.atlas.settings.limits.max_image_pixels  # 4 MP in the tests (50 MP by default)
    side = int(limit**0.5) - 1
    buf = io.BytesIO()
    Image.fromarray(np.zeros((side, side), np.uint16)).save(buf, format="PNG")
    bomb = buf.getvalue()
    assert Image.open(io.BytesIO(bomb)).mode.startswith("I;16") and len(bomb) < 20_000
    archive = zip_of({f"bomb{i:03d}.png": bomb for i in range(256)})
    r = upload(client, [("bombs.zip", archive)])
    assert r.status_code == 413, r.text
    assert "pixels" in r.json()["detail"] and "bombs.zip/bomb" in r.json()["detail"]
    assert decodes == []
    assert client.app.state.atlas.distance_jobs.jobs() == []


def test_job_slots_and_quota_checked_before_reading_uploads(client, monkeypatch) -> None:
    state = client.app.state.atlas
    parsed: list[int] = []
    real = distance_service.parse_uploads
    monkeypatch.setattr(distance_service, "parse_uploads", lambda *a: parsed.append(1) or real(*a))
    gate = threading.Event()
    monkeypatch.setattr(
        distance_service, "dataset_mean_attention_distance", lambda *a, **k: gate.wait(20) and None
    )
    try:
        for i in range(state.settings.limits.jobs_per_client):  # fill this client's quota with held jobs
            assert upload(client, [(f"{i}.png", photo_bytes(i))]).status_code == 202
        assert len(parsed) == state.settings.limits.jobs_per_client
        r = upload(client, [("more.png", photo_bytes(99))])
        assert r.status_code == 503 and r.headers["Retry-After"] == "5", r.text
        assert "per client" in r.json()["detail"]
        assert len(parsed) == state.settings.limits.jobs_per_client  # refused before the upload was parsed
    finally:
        gate.set()


def test_invalid_utf8_member_name_is_400(client) -> None:
    archive = bytearray(zip_of({"a\u00e9.png": photo_bytes(1)}))  # UTF-8 flag 0x800 set by zipfile
    good = "a\u00e9".encode()
    assert archive.count(good) == 2  # the local header and the central directory
    archive[:] = archive.replace(good, b"a\xff\xfe")  # same length, not UTF-8; flag still says UTF-8
    r = upload(client, [("names.zip", bytes(archive))])
    assert r.status_code == 400, r.text
    assert "names.zip" in r.json()["detail"] and "UTF-8" in r.json()["detail"]


@pytest.mark.parametrize("make", BROKEN_EXIF.values(), ids=BROKEN_EXIF.keys())
def test_broken_exif_pngs_in_a_job(client, make) -> None:
    r = upload(client, [("broken.png", make()), ("ok.png", photo_bytes(5))])
    assert r.status_code == 202, r.text
    done = wait(client, r.json())
    assert done["status"] == "done" and done["result"]["n_images"] == 2, done


def test_bad_image_fails_the_job_naming_the_file(client, decodes) -> None:
    good = photo_bytes(3)
    truncated = good[: len(good) // 2]  # the header is fine, the pixels are not
    r = upload(client, [("fine.png", good), ("half.png", truncated)], batch_size="1")
    assert r.status_code == 202, r.text  # headers pass: the pixels are only read inside the job
    done = wait(client, r.json())
    assert done["status"] == "failed" and done["error"].startswith("half.png:"), done
    assert len(decodes) == 2  # decoded inside the job, once each


def held_jobs(monkeypatch) -> threading.Event:
    """Dataset jobs block until the returned gate is set."""
    gate = threading.Event()
    real = distance_service.dataset_mean_attention_distance

    def held(*args, **kwargs):
        gate.wait(20)
        return real(*args, **kwargs)

    monkeypatch.setattr(distance_service, "dataset_mean_attention_distance", held)
    return gate


def test_identical_jobs_share_one_job(client, monkeypatch) -> None:
    gate = held_jobs(monkeypatch)
    files = [("a.png", photo_bytes(1)), ("b.png", photo_bytes(2))]
    try:
        first = upload(client, files).json()
        second = upload(client, files).json()  # same bytes, model, resolution, renormalize
        other = upload(client, files, renormalize="true").json()
        # the same client asking again holds the same subscription (tests/test_trust_users.py: another
        # client gets its own subscription to the same work)
        assert second["job_id"] == first["job_id"] and other["job_id"] != first["job_id"]
    finally:
        gate.set()
    assert wait(client, first)["status"] == "done" and wait(client, other)["status"] == "done"
    again = upload(client, files).json()
    assert again["reused"] and again["job_id"] == first["job_id"]
