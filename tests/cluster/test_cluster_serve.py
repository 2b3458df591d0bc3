"""The Ray Serve backend end to end (issue 9 §1): the same API through Serve on 127.0.0.1, tiny random models.

The default HTTP front (``driver``): the app in uvicorn in the driver, the model deployments in Serve. The
``serve`` front (Serve's proxy + an Ingress deployment) is checked in test_cluster_serve_front.py.

One local Ray instance (loopback only) and one Serve application are shared by the module; every request
goes to 127.0.0.1, counts are bounded, and Ray is shut down at the end. Ray's start-up dominates (~30-60 s
on 2 cores); each test then takes a few seconds.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")

from app.cluster.__main__ import start, stop  # noqa: E402
from app.cluster.loopback import listeners, local_ray_processes  # noqa: E402
from app.main import create_app  # noqa: E402
from app.server import is_loopback  # noqa: E402
from app.settings import Settings  # noqa: E402
from tests.cluster.conftest import (  # noqa: E402
    assert_refused_as_the_app,
    forward_burst,
    free_port,
    make_settings,
    post_forward,
)
from tests.conftest import run_in_own_loop  # noqa: E402
from tests.factories import photo_bytes  # noqa: E402


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[tuple[str, Settings]]:
    """(base URL, settings) of the Serve app on a fresh local Ray instance, started and stopped as
    ``python -m app.cluster`` does (app/cluster/__main__.py); torn down after the module."""
    settings = make_settings(tmp_path_factory.mktemp("cluster"))
    port = free_port()
    started = start(settings, "127.0.0.1", port, None, num_cpus=3, log_to_driver=False)
    try:
        yield f"http://127.0.0.1:{port}", settings
    finally:
        stop(started)


@pytest.fixture(scope="module")
def local(cluster) -> Iterator[TestClient]:
    """The same settings on the local backend, for equality checks."""
    _, settings = cluster
    with TestClient(create_app(settings.replace(**{"backend": "local"}))) as c:
        yield c


def decode(arr: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(arr["bdata"]), dtype=arr["dtype"])


def analyze_until_ok(http: httpx.Client, data: bytes, timeout_s: float = 90) -> dict:
    """POST an upload, honouring 503 + Retry-After, until it succeeds (bounded)."""
    deadline = time.monotonic() + timeout_s
    while True:
        r = http.post(
            "/api/vision/analyze", files={"image": ("x.png", data, "image/png")}, data={"model": "small_vit"}
        )
        if r.status_code == 200:
            return r.json()
        assert r.status_code == 503, r.text
        assert time.monotonic() < deadline, "no success before the deadline"
        time.sleep(min(float(r.headers["Retry-After"]), 1.0))


def test_same_api_through_serve(cluster, local) -> None:
    url, _ = cluster
    with httpx.Client(base_url=url, timeout=60) as http:
        health = http.get("/api/health").json()
        assert health["backend"] == "ray"
        assert health["replicas"] == {"VisionModels": 1, "TextModels": 1}  # the driver runs the app

        r = http.post("/api/vision/analyze", data={"sample": "coffee"})
        assert r.status_code == 200, r.text
        body = r.json()
        expected = local.post("/api/vision/analyze", data={"sample": "coffee"}).json()
        assert body["analysis_id"] == expected["analysis_id"]
        # same model, same seed, same input: equal maps up to float32 rounding across thread counts
        np.testing.assert_allclose(decode(body["rollout"]), decode(expected["rollout"]), rtol=1e-4, atol=1e-6)

        aid = body["analysis_id"]  # follow-up GETs are served from the ingress's cache
        for path, key in (
            (f"/api/vision/analysis/{aid}/attention?layer=1&query=3", "values"),
            (f"/api/vision/analysis/{aid}/rollout?head_fusion=max", "rollout"),
        ):
            got, want = http.get(path), local.get(path)
            assert got.status_code == 200, got.text
            np.testing.assert_allclose(
                decode(got.json()[key]), decode(want.json()[key]), rtol=1e-3, atol=1e-3
            )  # float16 cache: rounding of a float16 map

        t = http.post("/api/text/analyze", json={"text": "Attention is all you need."})
        assert t.status_code == 200, t.text
        tid = t.json()["analysis_id"]
        assert http.get(f"/api/text/analysis/{tid}").status_code == 200


def test_distance_job_through_serve_equals_local(cluster, local) -> None:
    url, _ = cluster
    with httpx.Client(base_url=url, timeout=60) as http:
        job = http.post("/api/distance/jobs", data={"source": "samples", "batch_size": "3"}).json()
        deadline = time.monotonic() + 90
        while job["status"] not in ("done", "failed", "cancelled"):
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
            job = http.get(job["job_url"]).json()
    assert job["status"] == "done", job
    want = local.post("/api/distance/jobs", data={"source": "samples", "batch_size": "3"}).json()
    while want["status"] not in ("done", "failed", "cancelled"):
        time.sleep(0.05)
        want = local.get(want["job_url"]).json()
    assert job["result"]["n_images"] == want["result"]["n_images"]
    np.testing.assert_allclose(decode(job["result"]["mad"]), decode(want["result"]["mad"]), rtol=1e-5)


def test_overload_answers_503_with_retry_after(cluster) -> None:
    """1 replica x max_ongoing_requests 1 + max_queued_requests 2: a burst of 16 distinct forwards sees
    Serve's backpressure as the app's 503 JSON + Retry-After, every one of them, and nothing else fails.
    (The app answers every refusal itself, so which component is faster does not decide the answer's
    shape.)"""
    url, _ = cluster
    assert_refused_as_the_app(forward_burst(url, 100))


def test_front_never_refuses_a_burst(cluster) -> None:
    """40 concurrent cheap requests reach the app: all 200 (no queue in front of the app refuses them)."""
    url, _ = cluster

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            return await asyncio.gather(*(http.get("/api/health") for _ in range(40)))

    codes = [r.status_code for r in run_in_own_loop(burst)]
    assert codes == [200] * 40, codes


def test_every_listener_is_on_loopback(cluster) -> None:
    """Local mode: every listening socket of the driver and the Ray processes under it (GCS, raylet,
    dashboard agent, runtime-env agent, Serve controller and replicas) and the app's HTTP port (the
    driver's uvicorn) is on loopback (psutil ``net_connections(kind="inet")``, LISTEN). No Serve proxy runs."""
    url, _ = cluster
    port = int(url.rsplit(":", 1)[1])
    found = listeners(local_ray_processes())
    names = {lsn.name for lsn in found}
    assert {"gcs_server", "raylet"} <= names, names
    assert sum(n.startswith("ray::ServeReplica") for n in names) >= 2, names  # vision, text
    assert not any(n.startswith("ray::ProxyActor") for n in names), names
    assert any(lsn.port == port and lsn.pid == os.getpid() for lsn in found), found  # the driver's uvicorn
    exposed = [str(lsn) for lsn in found if not is_loopback(lsn.ip)]
    assert exposed == [], exposed


def test_killed_model_replica_is_replaced(cluster) -> None:
    """Kill the VisionModels replica during a burst: requests get 200 or 503 (never 500), Serve starts a new
    replica, every 503 succeeds on retry, and analyses cached before the kill are still served."""
    url, _ = cluster
    with httpx.Client(base_url=url, timeout=60) as http:
        before = analyze_until_ok(http, photo_bytes(1, 64, high=255))
        replica = next(
            a for a in ray.util.list_named_actors(all_namespaces=True) if "VisionModels" in a["name"]
        )

        async def burst() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                sent = [asyncio.ensure_future(post_forward(client, 200 + i)) for i in range(3)]
                await asyncio.sleep(0.3)  # the first forward is running in the replica
                ray.kill(ray.get_actor(replica["name"], namespace=replica["namespace"]), no_restart=True)
                return await asyncio.gather(*sent)

        codes = [r.status_code for r in run_in_own_loop(burst)]
        assert set(codes) <= {200, 503}, codes
        for i in range(3):  # the refused ones succeed once the replacement is up
            analyze_until_ok(http, photo_bytes(200 + i, 64, high=255))
        deadline = time.monotonic() + 60
        while http.get("/api/health").json()["replicas"].get("VisionModels") != 1:
            assert time.monotonic() < deadline
            time.sleep(0.5)
        aid = before["analysis_id"]
        assert http.get(f"/api/vision/analysis/{aid}/attention?layer=0&query=0").status_code == 200
