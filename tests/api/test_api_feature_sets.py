"""Set-level feature PCA and K-means parts as dataset jobs: the result equals the core's fit on the same images,
progress reaches the image count, cancel stops the work, and uploads go through the dataset checks."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from app.serialization import decode_typed_array
from models.vision.distance import Cancelled
from models.vision.feature_sets import dataset_features, set_views
from models.vision.samples import sample_images
from tests.conftest import wait_until
from tests.factories import photo_bytes, zip_of


def finished(client, job: dict) -> dict:
    wait_until(
        lambda: client.get(job["job_url"]).json()["status"] in ("done", "failed", "cancelled"), 60, "the job"
    )
    return client.get(job["job_url"]).json()


def test_sample_set_job_matches_the_core(client) -> None:
    r = client.post("/api/vision/feature-sets/jobs", data={"model": "tiny_vit", "k": 3, "seed": 2})
    assert r.status_code == 202, r.text
    body = finished(client, r.json())
    assert body["status"] == "done", body
    assert body["done"] == body["total"] == 8
    res = body["result"]
    assert (res["rows"], res["cols"], res["k"]) == (4, 4, 3)
    vm = client.app.state.atlas.vision_store.get("tiny_vit")
    feats = dataset_features(vm, list(sample_images().values()), 32, batch_size=3)
    want = set_views(feats, (4, 4), k=3, seed=2)
    for got, pca, parts in zip(res["images"], want.pca, want.parts, strict=True):
        np.testing.assert_array_equal(
            decode_typed_array(got["foreground"]).ravel().astype(bool), pca.foreground
        )
        np.testing.assert_array_equal(decode_typed_array(got["parts"]), parts)
    # the same request again is served from the finished job
    again = client.post("/api/vision/feature-sets/jobs", data={"model": "tiny_vit", "k": 3, "seed": 2}).json()
    assert again["reused"] is True and again["result"] == res
    assert client.get(f"/api/distance/jobs/{body['job_id']}").status_code == 404  # not a distance job
    # nor through the distance job's cancel route (it would read a distance job's params): 404, not 500
    assert client.post(f"/api/distance/jobs/{body['job_id']}/cancel").status_code == 404
    assert client.get(body["job_url"]).json()["status"] == "done"


def test_upload_set_job(client) -> None:
    data = zip_of({f"p{i}.png": photo_bytes(i) for i in range(3)})
    r = client.post(
        "/api/vision/feature-sets/jobs",
        data={"model": "tiny_vit", "source": "upload", "k": 2},
        files=[("files", ("set.zip", data, "application/zip"))],
    )
    assert r.status_code == 202, r.text
    body = finished(client, r.json())
    assert body["status"] == "done" and [i["name"] for i in body["result"]["images"]] == [
        "set.zip/p0.png",
        "set.zip/p1.png",
        "set.zip/p2.png",
    ]
    assert client.post("/api/vision/feature-sets/jobs", data={"source": "upload"}).status_code == 400


def test_cancel_stops_the_loop(client) -> None:
    vm = client.app.state.atlas.vision_store.get("tiny_vit")
    cancel, seen = threading.Event(), []

    def progress(done: int, total: int | None) -> None:
        seen.append(done)
        if done >= 2:
            cancel.set()

    with pytest.raises(Cancelled):
        dataset_features(
            vm, list(sample_images().values()), 32, batch_size=2, progress=progress, cancel=cancel
        )
    assert seen == [0, 2]
    assert client.post("/api/vision/feature-sets/jobs/nope/cancel").status_code == 404
