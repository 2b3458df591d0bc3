"""Paper-1 and ViT-embedding figures under load: they run in the bounded CPU pool (503 + Retry-After past
its bound), are cached per parameter set, and never stall the event loop: /api/health keeps answering
while the pool is saturated (issue 7, items 1, 5 and 8)."""

from __future__ import annotations

import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.services import embeddings, figures
from tests.factories import tiny_settings

POOL = 4  # cpu_pool_size in these tests: jobs waiting or running


@pytest.fixture
def api(tmp_path, app_client) -> TestClient:
    return app_client(tiny_settings(tmp_path, preload=False, cpu_workers=1, cpu_pool_size=POOL))


def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the expected state")
        time.sleep(0.01)


def health_latencies(api: TestClient, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = api.get("/api/health")
        out.append(time.perf_counter() - t0)
        assert r.status_code == 200
    return out


def figure_request(i: int) -> tuple[str, dict]:
    """40 distinct parameter sets (varying k, far and seed), so none is merged or cached."""
    if i % 2:
        return "/api/figures/scaling", {"d_k": 1 + i, "seed": i, "n_samples": 64, "var_samples": 200}
    return "/api/figures/positional", {"k": i - 20, "far": 1000 + i, "length": 64, "d_model": 32}


def test_health_answers_while_the_pool_is_saturated(api, monkeypatch) -> None:
    """Every pool slot held by a figure that cannot finish: the other 36 requests get 503 + Retry-After at
    once, and /api/health (async, off the pool) still answers quickly."""
    gate = threading.Event()
    state = api.app.state.atlas
    for name in ("build_positional", "build_scaling"):
        real = getattr(figures, name)
        monkeypatch.setattr(figures, name, lambda *a, _real=real: (gate.wait(30), _real(*a))[1])
    with ThreadPoolExecutor(40) as pool:
        futures = [pool.submit(api.get, url, params=params) for url, params in map(figure_request, range(40))]
        try:
            wait_for(lambda: sum(f.done() for f in futures) >= 40 - POOL and state.cpu.pending == POOL)
            latencies = health_latencies(api, 20)
        finally:
            gate.set()
        responses = [f.result() for f in futures]
    statuses = [r.status_code for r in responses]
    assert statuses.count(503) == 40 - POOL and statuses.count(200) == POOL, statuses
    busy = next(r for r in responses if r.status_code == 503)
    assert int(busy.headers["Retry-After"]) >= 1 and "busy" in busy.json()["detail"]
    # p99 50 ms is the benchmark's goal (README, make load); here a margin for 2 shared CI cores
    assert statistics.median(latencies) < 0.25 and max(latencies) < 2.0, latencies


def test_40_concurrent_figures_all_answer_200_or_503(tmp_path) -> None:
    """Real computations, 2 workers, a pool of 8: no 5xx other than 503, and health stays responsive."""
    settings = tiny_settings(tmp_path, preload=False, cpu_workers=2, cpu_pool_size=8)
    with TestClient(create_app(settings)) as api, ThreadPoolExecutor(40) as pool:
        futures = [pool.submit(api.get, url, params=params) for url, params in map(figure_request, range(40))]
        latencies = []
        while not all(f.done() for f in futures):
            latencies += health_latencies(api, 1)
        statuses = [f.result().status_code for f in futures]
        assert set(statuses) <= {200, 503} and statuses.count(200) >= 8, statuses
        # the pool's 2 threads compete for the GIL with the event loop; a loose cap for shared CI cores
        assert statistics.median(latencies) < 0.25 and max(latencies) < 5.0, latencies
        # a figure that was answered is now cached: asking again costs no pool slot
        ok = next(i for i, f in enumerate(futures) if f.result().status_code == 200)
        url, params = figure_request(ok)
        state = api.app.state.atlas
        before = state.cpu.pending, len(state.views)
        assert api.get(url, params=params).status_code == 200
        assert (state.cpu.pending, len(state.views)) == (0, before[1])


def test_identical_figure_requests_are_computed_once(api, monkeypatch) -> None:
    calls = []
    real = figures.build_positional
    gate = threading.Event()

    def slow(*args):
        calls.append(args)
        gate.wait(30)
        return real(*args)

    monkeypatch.setattr(figures, "build_positional", slow)
    params = {"k": 3, "length": 32, "d_model": 16}
    with ThreadPoolExecutor(10) as pool:
        futures = [pool.submit(api.get, "/api/figures/positional", params=params) for _ in range(10)]
        wait_for(lambda: len(calls) == 1 and api.app.state.atlas.cpu.merged >= 9)
        gate.set()
        assert all(f.result().status_code == 200 for f in futures)
    assert len(calls) == 1


def test_vit_embedding_figures_run_in_the_pool_and_are_cached(api, monkeypatch) -> None:
    calls = []
    real = embeddings.similarity_tiles
    monkeypatch.setattr(embeddings, "similarity_tiles", lambda vm: (calls.append(vm.info.id), real(vm))[1])
    for stride in (1, 2, 1):
        r = api.get("/api/vit-embeddings/position-similarity", params={"model": "tiny_vit", "stride": stride})
        assert r.status_code == 200, r.text
    assert calls == ["tiny_vit"]  # the (R, C, R, C) tiles once per model, the encoded views per stride
    state = api.app.state.atlas
    assert state.views.get("vit-sim|tiny_vit|2|u1") is not None
    assert (
        api.get(
            "/api/vit-embeddings/patch-filters", params={"model": "tiny_vit", "n_components": 3}
        ).status_code
        == 200
    )
    assert state.views.get("vit-pca|tiny_vit|3") is not None
