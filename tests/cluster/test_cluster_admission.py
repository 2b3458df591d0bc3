"""The Ray backend admits forwards through the ingress's own compute queue, as the local backend does
(app/cluster/client.py ``RayModels._call``): a flooding client is refused at its share with the local 503,
while another client is still admitted and its forward reaches the replica. No Ray cluster starts here:
the deployment call is a stand-in that waits until the test lets it finish."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("ray.serve", reason="Ray is a dev requirement (requirements-ray.txt)")

from app.cluster import client  # noqa: E402
from app.compute import ComputeQueue, QueueFull  # noqa: E402
from app.context import client_id  # noqa: E402
from tests.conftest import run_in_own_loop  # noqa: E402
from tests.factories import tiny_settings  # noqa: E402


def test_a_flood_is_refused_at_its_share_and_another_client_still_gets_in(tmp_path, monkeypatch) -> None:
    queue = ComputeQueue(max_pending=6, max_per_owner=3, retry_after_s=4)
    models = client.RayModels(tiny_settings(tmp_path), queue)
    reached: list[str] = []

    async def scenario():
        release = asyncio.Event()

        async def forward(deployment, *args):  # the replica: holds every forward until released
            reached.append(client_id.get())
            await release.wait()
            return "done"

        models._forward = forward

        async def call(owner: str):
            client_id.set(owner)
            try:
                return await models._call(client.VISION, "m", cost=10)
            except QueueFull as e:
                return e

        flood = [asyncio.ensure_future(call("10.0.0.1")) for _ in range(5)]
        await asyncio.sleep(0)  # let them reach admission
        polite = asyncio.ensure_future(call("10.0.0.2"))
        while len(reached) < 4:  # 3 of the flood's + the polite client's forward reach the "replica"
            await asyncio.sleep(0.01)
        held = queue.pending
        release.set()
        return await asyncio.gather(*flood), await polite, held

    flood, polite, held = run_in_own_loop(scenario)
    refused = [r for r in flood if isinstance(r, QueueFull)]
    assert [r for r in flood if r == "done"] == ["done"] * 3 and len(refused) == 2
    assert all(e.retry_after_s == 4 and "3 of your requests" in str(e) for e in refused)  # the local wording
    assert polite == "done" and reached.count("10.0.0.2") == 1
    assert held == 4 and queue.pending == 0 and queue.pending_cost == 0  # every slot given back


def test_the_whole_queue_bounds_forwards_in_flight(tmp_path) -> None:
    queue = ComputeQueue(max_pending=2, retry_after_s=2)
    models = client.RayModels(tiny_settings(tmp_path), queue)

    async def scenario():
        release = asyncio.Event()

        async def forward(deployment, *args):
            await release.wait()
            return "done"

        models._forward = forward
        tasks = [asyncio.ensure_future(models._call(client.TEXT, "m")) for _ in range(3)]
        while not tasks[2].done():  # the third is refused at admission, the first two wait in the "replica"
            await asyncio.sleep(0.01)
        release.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    out = run_in_own_loop(scenario)
    assert out[:2] == ["done", "done"] and isinstance(out[2], QueueFull)


def test_the_forward_handle_is_made_once_off_the_event_loop(tmp_path, monkeypatch) -> None:
    """Serve's router is built on a handle's first ``.options()`` and waits for it: that must not happen on the
    event loop. Concurrent first forwards share one handle; a failed attempt is retried by the next call."""
    import threading

    made: list[int] = []
    attempts = {"n": 0}

    class Handle:
        def options(self, method_name: str):
            attempts["n"] += 1
            if attempts["n"] == 1:
                raise RuntimeError("controller not ready")
            made.append(threading.get_ident())
            return f"{method_name} handle"

    monkeypatch.setattr(client.serve, "get_deployment_handle", lambda name, app_name: Handle())
    monkeypatch.setattr(client, "router_in_own_loop", lambda: True)
    models = client.RayModels(tiny_settings(tmp_path), None)

    async def scenario():
        loop_thread = threading.get_ident()
        with pytest.raises(RuntimeError, match="not ready"):
            await models._forward_handle(client.VISION)
        handles = await asyncio.gather(*(models._forward_handle(client.VISION) for _ in range(5)))
        return loop_thread, handles

    loop_thread, handles = run_in_own_loop(scenario)
    assert handles == ["forward handle"] * 5
    assert len(made) == 1 and made[0] != loop_thread  # one router, built in a worker thread
