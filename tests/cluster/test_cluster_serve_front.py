"""``ATLAS_HTTP_FRONT=serve``: Serve's HTTP proxy and an Ingress deployment run the app (the front that
several ingress replicas need). One short module on its own local loopback Ray instance: the same API, the
app's JSON 503 under backpressure, and every listener (the proxy's included) on loopback.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

ray = pytest.importorskip("ray")
serve = pytest.importorskip("ray.serve")

from app.cluster.__main__ import start, stop  # noqa: E402
from app.cluster.loopback import listeners, local_ray_processes  # noqa: E402
from app.server import is_loopback  # noqa: E402
from tests.cluster.conftest import assert_refused_as_the_app, forward_burst, free_port, make_settings  # noqa: E402


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

    assert_refused_as_the_app(forward_burst(url, 300))


def test_serve_front_listens_on_loopback_only(serve_front) -> None:
    port = int(serve_front.rsplit(":", 1)[1])
    found = listeners(local_ray_processes())
    assert any(lsn.port == port and lsn.name.startswith("ray::ProxyActor") for lsn in found), found
    assert [str(lsn) for lsn in found if not is_loopback(lsn.ip)] == []
