"""``ATLAS_HTTP_FRONT=serve``: Serve's HTTP proxy and an Ingress deployment run the app (the front that
several ingress replicas need). One short module on its own local loopback Ray instance: the same API, the
app's JSON 503 under backpressure, and every listener (the proxy's included) on loopback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")

from app.cluster.__main__ import start, stop  # noqa: E402
from app.cluster.loopback import listeners, local_ray_processes  # noqa: E402
from app.server import is_loopback  # noqa: E402
from tests.cluster.test_cluster_serve import assert_app_503, free_port, make_settings  # noqa: E402
from tests.conftest import run_in_own_loop  # noqa: E402
from tests.factories import photo_bytes  # noqa: E402


@pytest.fixture(scope="module")
def serve_front(tmp_path_factory) -> Iterator[str]:
    settings = make_settings(tmp_path_factory.mktemp("front")).replace(**{"http_front": "serve"})
    port = free_port()
    started = start(settings, "127.0.0.1", port, None, num_cpus=3, log_to_driver=False)
    assert started.front == "serve"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(started)


def test_serve_front_answers_and_refuses_as_the_app(serve_front) -> None:
    url = serve_front
    with httpx.Client(base_url=url, timeout=60) as http:
        health = http.get("/api/health").json()
        assert health["backend"] == "ray"
        assert health["replicas"] == {"Ingress": 1, "VisionModels": 1, "TextModels": 1}
        r = http.post("/api/vision/analyze", data={"sample": "coffee", "model": "small_vit"})
        assert r.status_code in (200, 503), r.text

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            return await asyncio.gather(
                *(
                    http.post(
                        "/api/vision/analyze",
                        files={"image": ("x.png", photo_bytes(300 + i, 64, high=255), "image/png")},
                        data={"model": "small_vit"},
                    )
                    for i in range(16)
                )
            )

    responses = run_in_own_loop(burst)
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503} and 200 in codes and 503 in codes, codes
    for r in responses:
        if r.status_code == 503:
            assert_app_503(r)


def test_serve_front_listens_on_loopback_only(serve_front) -> None:
    port = int(serve_front.rsplit(":", 1)[1])
    found = listeners(local_ray_processes())
    assert any(lsn.port == port and lsn.name.startswith("ray::ProxyActor") for lsn in found), found
    assert [str(lsn) for lsn in found if not is_loopback(lsn.ip)] == []
