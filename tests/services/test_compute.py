"""Unit tests for the bounded executors (app/compute.py): admission, merging, release, order, threads.

Every wait polls for the state it needs (``wait_until``); no test sleeps a fixed time.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable

import pytest

from app.compute import BoundedExecutor, Busy, ComputeQueue, CpuPool, PoolFull, QueueFull
from tests.conftest import run_in_own_loop

TIMEOUT_S = 10.0


def wait_until(predicate: Callable[[], bool], timeout_s: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for the executor"
        time.sleep(0.002)


class Gate:
    """A job that signals when it starts and runs until the test opens the gate."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.opened = threading.Event()

    def __call__(self, value: object = None) -> object:
        self.started.set()
        assert self.opened.wait(TIMEOUT_S), "the test never opened the gate"
        return value


@pytest.fixture
def executors() -> list[BoundedExecutor]:
    made: list[BoundedExecutor] = []
    yield made
    for ex in made:
        ex.shutdown()


def make(executors: list[BoundedExecutor], cls=BoundedExecutor, *args, **kwargs) -> BoundedExecutor:
    ex = cls(*args, **kwargs)
    executors.append(ex)
    return ex


def test_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError):
        BoundedExecutor(0)
    with pytest.raises(ValueError):
        BoundedExecutor(4, workers=0)


def test_admission_bounded_by_count_and_busy_raised_at_once(executors) -> None:
    ex = make(executors, ComputeQueue, 2, retry_after_s=7)
    gate = Gate()
    running = ex.submit(gate, "a")
    waiting = ex.submit(lambda: "b")
    assert gate.started.wait(TIMEOUT_S)
    assert ex.pending == 2
    called = []
    # the gate is still closed, so a blocking submit would never return: raising proves it did not wait
    with pytest.raises(QueueFull) as info:
        ex.submit(called.append, "never")
    assert isinstance(info.value, Busy) and info.value.retry_after_s == 7
    assert ex.rejected == 1 and ex.pending == 2 and called == []
    gate.opened.set()
    assert running.result(TIMEOUT_S) == "a" and waiting.result(TIMEOUT_S) == "b"
    wait_until(lambda: ex.pending == 0)
    assert ex.submit(lambda: "again").result(TIMEOUT_S) == "again"  # the slots came back


def test_admission_bounded_by_cost(executors) -> None:
    ex = make(executors, ComputeQueue, 10, max_cost=100)
    gate = Gate()
    first = ex.submit(gate, cost=80)
    assert gate.started.wait(TIMEOUT_S)
    assert ex.pending_cost == 80
    with pytest.raises(QueueFull):
        ex.submit(lambda: None, cost=21)  # 80 + 21 > 100
    second = ex.submit(lambda: "fits", cost=20)  # 80 + 20 == 100 is admitted
    assert ex.pending_cost == 100
    gate.opened.set()
    first.result(TIMEOUT_S)
    assert second.result(TIMEOUT_S) == "fits"
    wait_until(lambda: ex.pending == 0 and ex.pending_cost == 0)


def test_one_job_over_the_cost_bound_is_admitted_when_idle(executors) -> None:
    """An idle executor takes any single job, so a large but valid request is never refused forever."""
    ex = make(executors, ComputeQueue, 4, max_cost=10)
    assert ex.submit(lambda: "big", cost=1000).result(TIMEOUT_S) == "big"
    wait_until(lambda: ex.pending_cost == 0)


def test_cpu_pool_raises_pool_full(executors) -> None:
    pool = make(executors, CpuPool, 1, workers=1, retry_after_s=3)
    gate = Gate()
    pool.submit(gate)
    with pytest.raises(PoolFull) as info:
        pool.submit(lambda: None)
    assert info.value.retry_after_s == 3
    gate.opened.set()


def test_identical_keys_in_flight_are_merged(executors) -> None:
    ex = make(executors, ComputeQueue, 2)
    gate = Gate()
    calls: list[str] = []

    def work(tag: str) -> str:
        calls.append(tag)
        return gate(tag)

    first = ex.submit(work, "one", key="k")
    assert gate.started.wait(TIMEOUT_S)
    second = ex.submit(work, "two", key="k")
    assert second is first  # the same future ...
    assert ex.pending == 1 and ex.merged == 1  # ... and no extra slot
    other = ex.submit(lambda: "other", key="k2")  # a different key takes the second slot
    with pytest.raises(QueueFull):
        ex.submit(lambda: None, key="k3")
    assert ex.submit(lambda: None, key="k") is first  # merging still works when full
    gate.opened.set()
    assert first.result(TIMEOUT_S) == "one" and other.result(TIMEOUT_S) == "other"
    assert calls == ["one"]
    wait_until(lambda: ex.pending == 0)
    # finished work is not merged: the same key runs again
    assert ex.submit(lambda: "fresh", key="k").result(TIMEOUT_S) == "fresh"


def test_release_on_exception(executors) -> None:
    ex = make(executors, ComputeQueue, 1, max_cost=50)

    def boom() -> None:
        raise RuntimeError("model failed")

    future = ex.submit(boom, key="k", cost=40)
    with pytest.raises(RuntimeError, match="model failed"):
        future.result(TIMEOUT_S)
    wait_until(lambda: ex.pending == 0 and ex.pending_cost == 0)
    with pytest.raises(RuntimeError, match="model failed"):
        ex.run_sync(boom, key="k")  # the key was released: it runs again and raises again
    wait_until(lambda: ex.pending == 0)
    assert ex.run_sync(lambda: 3, key="k", cost=40) == 3


def test_one_worker_runs_in_submission_order(executors) -> None:
    ex = make(executors, ComputeQueue, 32)
    gate = Gate()
    order: list[int] = []
    ex.submit(gate)
    assert gate.started.wait(TIMEOUT_S)
    futures = [ex.submit(order.append, i) for i in range(20)]
    gate.opened.set()
    for f in futures:
        f.result(TIMEOUT_S)
    assert order == list(range(20))


def test_cpu_pool_runs_workers_in_parallel(executors) -> None:
    pool = make(executors, CpuPool, 4, workers=2)
    gates = [Gate(), Gate()]
    futures = [pool.submit(g, i) for i, g in enumerate(gates)]
    for g in gates:  # both started while neither may finish: two threads at once
        assert g.started.wait(TIMEOUT_S)
    for g in gates:
        g.opened.set()
    assert [f.result(TIMEOUT_S) for f in futures] == [0, 1]


def test_async_run_does_not_hold_a_thread(executors) -> None:
    """Many coroutines awaiting one busy worker add no threads, and the event loop keeps answering."""
    ex = make(executors, ComputeQueue, 64)
    gate = Gate()
    n = 40

    async def scenario() -> tuple[int, int, list[object]]:
        before = threading.active_count()
        blocker = asyncio.create_task(ex.run(gate, "first"))
        tasks = [asyncio.create_task(ex.run(lambda i=i: i)) for i in range(n)]
        await asyncio.to_thread(gate.started.wait, TIMEOUT_S)
        for _ in range(5):
            await asyncio.sleep(0)  # the loop is free: this returns while all n jobs wait
        during = threading.active_count()
        assert ex.pending == n + 1
        gate.opened.set()
        results = await asyncio.gather(blocker, *tasks)
        return before, during, results

    before, during, results = run_in_own_loop(scenario)
    # the executor's one worker plus at most one to_thread helper; never one per waiting request
    assert during - before <= 2, (before, during)
    assert results == ["first", *range(n)]


def test_async_run_survives_a_client_that_goes_away(executors) -> None:
    """Cancelling the awaiting request does not cancel the shared job (its result still fills caches)."""
    ex = make(executors, ComputeQueue, 4)
    gate = Gate()
    done: list[str] = []

    def work() -> str:
        gate()
        done.append("ran")
        return "result"

    async def scenario() -> None:
        task = asyncio.create_task(ex.run(work, key="shared"))
        await asyncio.to_thread(gate.started.wait, TIMEOUT_S)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        merged = ex.submit(work, key="shared")  # still in flight: a second client shares it
        gate.opened.set()
        assert await asyncio.wrap_future(merged) == "result"

    run_in_own_loop(scenario)
    assert done == ["ran"]
    wait_until(lambda: ex.pending == 0)


def test_busy_becomes_503_with_retry_after() -> None:
    """The HTTP mapping (app/errors.py): Busy -> 503, JSON detail, Retry-After header."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from app.errors import install_error_handlers

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/full")
    async def full() -> None:
        raise PoolFull("the server's CPU pool is busy", retry_after_s=5)

    with TestClient(app) as client:
        r = client.get("/full")
    assert r.status_code == 503
    assert r.headers["retry-after"] == "5"
    assert r.json()["retry_after_s"] == 5 and "busy" in r.json()["detail"]


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="per-thread nice is a Linux feature")
def test_workers_run_below_the_event_loop_priority(executors) -> None:
    """Saturated cores still schedule the event loop first: worker threads carry a higher nice value."""

    def my_nice() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    mine = my_nice()
    ex = CpuPool(4, workers=1, nice=5)
    executors.append(ex)
    assert ex.run_sync(my_nice) == min(mine + 5, 19)
    assert my_nice() == mine  # the caller's priority is untouched
