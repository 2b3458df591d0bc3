"""Tests of the Ray backend: the Serve replicas' batching, the Serve app end to end on 127.0.0.1, and dataset
jobs across a two-node ``ray.cluster_utils.Cluster``. Each module starts (and shuts down) its own loopback Ray
instance, so they run one module at a time; Ray is a dev requirement (requirements-ray.txt) and each module
skips itself without it.

Shared by the two Serve modules (test_cluster_serve.py, the ``driver`` front; test_cluster_serve_front.py, the
``serve`` front): their settings (:func:`make_settings`: a slow model and a small queue, so that a burst meets
backpressure), a free port, and the burst of distinct forwards whose refusals must be the app's own 503."""

from __future__ import annotations

import asyncio
import socket

import httpx

from app.settings import Settings, VisionModelEntry
from tests.conftest import run_in_own_loop
from tests.factories import photo_bytes, tiny_settings

RETRY_AFTER_S = 3
# slow enough (tens of ms per forward on one thread) that concurrent requests overlap in the replica
SLOW_VIT = VisionModelEntry(
    id="small_vit",
    arch_tag="vit_small_patch16_224.random",
    source="random",
    label="Random ViT-S/16, 4 blocks (tests)",
    timm_kwargs=dict(depth=4, num_classes=10),
)
APP = "atlas-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_settings(tmp_path) -> Settings:
    base = tiny_settings(tmp_path)
    return tiny_settings(
        tmp_path,
        secret_key="cluster-tests-secret-of-32-bytes",  # same ids in the local and the Serve app
        vision_models=[*base.models.vision_models, SLOW_VIT],
        retry_after_s=RETRY_AFTER_S,
        serve_app_name=APP,
        max_ongoing_requests=1,
        max_queued_requests=2,
        num_cpus_per_replica=1,
    )


def post_forward(http: httpx.Client | httpx.AsyncClient, seed: int):
    """One forward of ``small_vit`` that no other request shares: an upload of the 64 px photo ``seed``
    (a response, or with an AsyncClient its awaitable)."""
    return http.post(
        "/api/vision/analyze",
        files={"image": ("x.png", photo_bytes(seed, 64, high=255), "image/png")},
        data={"model": "small_vit"},
    )


def forward_burst(url: str, first_seed: int, n: int = 16) -> list[httpx.Response]:
    """``n`` distinct forwards (photos ``first_seed`` ... ``first_seed + n - 1``) sent at once to ``url``."""

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            return await asyncio.gather(*(post_forward(http, first_seed + i) for i in range(n)))

    return run_in_own_loop(burst)


def assert_app_503(r: httpx.Response) -> None:
    """The app's refusal: 503, ``Retry-After`` and the JSON body of app/errors.py ``busy``."""
    assert r.status_code == 503
    assert r.headers["Retry-After"] == str(RETRY_AFTER_S), r.headers
    assert r.headers["content-type"] == "application/json", r.text
    body = r.json()
    assert set(body) == {"detail", "retry_after_s"}, body
    assert body["retry_after_s"] == RETRY_AFTER_S and "try again" in body["detail"]


def assert_refused_as_the_app(responses: list[httpx.Response]) -> None:
    """A burst under backpressure: every answer is 200 or 503, both occur, and every 503 is the app's own."""
    codes = [r.status_code for r in responses]
    assert set(codes) <= {200, 503}, codes
    assert 503 in codes and 200 in codes, codes
    for r in responses:
        if r.status_code == 503:
            assert_app_503(r)
