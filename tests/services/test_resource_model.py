"""The resource model end to end: saturated executors answer 503 + Retry-After, health stays up."""

from __future__ import annotations

import threading

from app.compute import Busy
from tests.conftest import wait_until


def _fill(executor, release: threading.Event) -> int:
    """Fill an executor with jobs that wait for ``release``; returns how many were admitted."""
    n = 0
    while True:
        try:
            executor.submit(release.wait, 30)
        except Busy:
            return n
        n += 1


def test_health_answers_while_queue_and_pool_are_saturated(client) -> None:
    state = client.app.state.atlas
    release = threading.Event()
    try:
        assert _fill(state.queue, release) == state.settings.limits.queue_size
        assert _fill(state.cpu, release) == state.settings.limits.cpu_pool_size
        for _ in range(20):  # async route: never waits for a worker
            r = client.get("/api/health")
            assert r.status_code == 200
        body = r.json()
        assert body["queue_pending"] == body["queue_size"] == state.settings.limits.queue_size
        # model work is refused at once, with Retry-After, as JSON naming the problem
        r = client.post("/api/vision/analyze", data={"sample": "chelsea"})
        assert r.status_code == 503 and r.headers["Retry-After"] == str(state.settings.limits.retry_after_s)
        assert "busy" in r.json()["detail"]
    finally:
        release.set()
    # the released jobs leave their executors on their own threads: wait for that, not for a fixed time
    wait_until(lambda: state.queue.pending == 0 and state.cpu.pending == 0, what="the executors to drain")
    assert client.post("/api/vision/analyze", data={"sample": "chelsea"}).status_code == 200
