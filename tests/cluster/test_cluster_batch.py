"""``@serve.batch`` in the cluster's VisionModels replica (app/cluster/deployments.py): concurrent forwards of
one (model, resolution) run as one batched forward, equal to unbatched runs within the tolerance of
tests/services/test_batching.py, and a request the replica refuses gets its own error while the rest of its batch
runs. The replica class is used directly (Serve's batching is plain asyncio inside the replica), so no Ray
cluster starts here; tests/cluster/test_cluster_serve.py covers the deployed app."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

pytest.importorskip("ray.serve", reason="Ray is a dev requirement (requirements-ray.txt)")

from ray import serve  # noqa: E402

from app.cluster.deployments import Failure, VisionModels  # noqa: E402
from app.cluster.serve_app import replicas_batch  # noqa: E402
from app.services.errors import UnknownModel  # noqa: E402
from models.vision.analysis import analyze_image  # noqa: E402
from tests.conftest import run_in_own_loop  # noqa: E402
from tests.factories import TINY_SPECS, photo, tiny_settings  # noqa: E402
from tests.services.test_batching import assert_same  # noqa: E402


@pytest.fixture(scope="module")
def batching_replica(tmp_path_factory) -> Iterator[tuple[VisionModels, asyncio.AbstractEventLoop]]:
    """One replica with batching on, driven from one event loop, as in a deployment: ``@serve.batch`` keeps
    one queue per decorated method, bound to the loop that first used it. Outside a deployment Serve has no
    replica context; ``set_max_batch_size`` reads only its ``max_ongoing_requests`` (to warn when batches
    could never fill), so it gets the value the deployment would have."""
    ctx = SimpleNamespace(_deployment_config=SimpleNamespace(max_ongoing_requests=16))
    loop = asyncio.new_event_loop()  # on a thread of its own (see conftest.run_in_own_loop)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    with pytest.MonkeyPatch.context() as mp:  # the batch queue is made on first use, so keep it patched
        mp.setattr(serve, "get_replica_context", lambda: ctx)
        yield replica(tmp_path_factory.mktemp("batch"), "on"), loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)


def replica(tmp_path, batching: str) -> VisionModels:
    return VisionModels(
        tiny_settings(tmp_path, batching=batching, batch_max_size=4, batch_wait_ms=500.0, preload=False)
    )


def test_concurrent_forwards_run_as_one_batch_equal_to_unbatched(batching_replica) -> None:
    r, loop = batching_replica
    model = TINY_SPECS[0].id
    images = [photo(i, 40) for i in range(4)]
    vm, res = r.store.get_at(model, None)
    before = len(r.batches)

    async def burst():
        return await asyncio.gather(*(r.forward(model, im, res) for im in images))

    results = asyncio.run_coroutine_threadsafe(burst(), loop).result(timeout=60)
    assert r.batches[before:] == [4]  # a full batch starts without waiting out the 500 ms window
    for image, (analysis, ms) in zip(images, results, strict=True):
        assert ms > 0
        assert_same(analysis, analyze_image(vm, image, res))


def test_a_refused_request_fails_alone_and_its_batch_still_runs(batching_replica) -> None:
    r, loop = batching_replica
    model = TINY_SPECS[0].id
    res = r.store.get_at(model, None)[1]
    before = len(r.batches)

    async def burst():
        return await asyncio.gather(
            r.forward(model, photo(1, 40), res),
            r.forward("no-such-model", photo(2, 40), res),
            r.forward(model, photo(3, 40), res),
        )

    ok1, bad, ok2 = asyncio.run_coroutine_threadsafe(burst(), loop).result(timeout=60)
    assert isinstance(bad, Failure) and isinstance(bad.error, UnknownModel)  # the family's class, unchanged
    assert bad.error.status == 400 and "no-such-model" in str(bad.error)
    assert not isinstance(ok1, Failure) and not isinstance(ok2, Failure)
    assert r.batches[before:] == [2]


def test_batching_off_runs_one_forward_per_request(tmp_path) -> None:
    r = replica(tmp_path, "off")
    model = TINY_SPECS[0].id
    res = r.store.get_at(model, None)[1]

    async def burst():
        return await asyncio.gather(*(r.forward(model, photo(i, 40), res) for i in range(3)))

    run_in_own_loop(burst)
    assert r.batches == [1, 1, 1]


def test_which_replicas_batch(tmp_path) -> None:
    s = tiny_settings(tmp_path)
    assert not replicas_batch(s)  # auto on CPU replicas: off
    assert replicas_batch(s.replace(**{"device": "auto", "num_gpus_per_replica": 1.0}))
    assert replicas_batch(s.replace(**{"batching": "on"}))
    assert not replicas_batch(s.replace(**{"batching": "off", "num_gpus_per_replica": 1.0}))


def test_the_forward_thread_runs_below_the_event_loop(tmp_path) -> None:
    """As the local compute worker (settings.limits.worker_nice): a forward yields the cores to the proxy's
    and the ingress's event loops on a shared machine."""
    import os

    r = replica(tmp_path, "off")

    def nice_of_this_thread() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    own = nice_of_this_thread()
    worker = r._forward.submit(nice_of_this_thread).result(timeout=30)
    assert r._forward._initargs == (10,)  # the default ATLAS_WORKER_NICE reached the replica
    assert worker == min(own + 10, 19)  # what the kernel reports for the forward thread
