"""``/api/health`` on the Ray backend answers from the last replica counts at once: only the first call waits
for the Serve controller (app/cluster/client.py ``RayModels.replicas``). No Ray cluster starts here: the
controller is a stand-in that takes 0.4 s to answer."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

pytest.importorskip("ray.serve", reason="Ray is a dev requirement (requirements-ray.txt)")

from app.cluster import client  # noqa: E402
from tests.conftest import run_in_own_loop  # noqa: E402
from tests.factories import tiny_settings  # noqa: E402


def test_health_never_waits_for_a_slow_controller(tmp_path, monkeypatch) -> None:
    models = client.RayModels(tiny_settings(tmp_path))
    calls: list[float] = []

    def slow_status():  # the n-th answer says n VisionModels replicas run
        calls.append(time.monotonic())
        time.sleep(0.4)
        running = {"VisionModels": SimpleNamespace(replica_states={"RUNNING": len(calls)})}
        return SimpleNamespace(applications={models.app_name: SimpleNamespace(deployments=running)})

    monkeypatch.setattr(client.serve, "status", slow_status)
    monkeypatch.setattr(client, "STATUS_TTL_S", 0.0)  # every later call finds the counts stale

    async def scenario():
        t0 = time.monotonic()
        first = await models.replicas()
        t1 = time.monotonic()
        quick = [await models.replicas() for _ in range(3)]
        t2 = time.monotonic()
        await asyncio.sleep(0.8)  # the background refresh lands
        return first, t1 - t0, quick, t2 - t1, len(calls), await models.replicas()

    first, first_s, quick, quick_s, asked, later = run_in_own_loop(scenario)
    assert first == {"VisionModels": 1} and first_s >= 0.4  # nothing cached yet: the first call waits
    assert quick == [{"VisionModels": 1}] * 3 and quick_s < 0.1  # stale counts, answered at once
    assert asked == 2  # the first call, then one refresh for three stale calls (not three)
    assert later == {"VisionModels": 2}


def test_health_keeps_the_last_counts_when_the_controller_fails(tmp_path, monkeypatch) -> None:
    models = client.RayModels(tiny_settings(tmp_path))

    def broken():
        raise RuntimeError("controller gone")

    monkeypatch.setattr(client.serve, "status", broken)
    assert run_in_own_loop(models.replicas) == {}  # never answered: no counts
    models._status = (0.0, {"Ingress": 1})
    assert run_in_own_loop(models.replicas) == {"Ingress": 1}
