"""Dynamic batching (app/batching.py): concurrent single-image analyses run as batched forwards, give the same
results as unbatched runs, and keep the compute queue's budget (503 when full, merged keys, cancellation).

Tolerance, batched vs unbatched on the CPU. Every op after the linear layers is per image (LayerNorm, softmax,
the per-(image, head) attention matmuls, the rollout), but a linear layer is one GEMM over all B * N tokens,
and the BLAS may block an M = B * N GEMM differently from an M = N one (and the head's M = B from M = 1, a
GEMV). Measured here (torch 2.14, tiny random ViT and DeiT): the float16 maps and the float32 CLS maps are
bit-identical, the rollout and the class probabilities differ by at most one float32 ulp; a row's result can
even depend on its position in the GEMM (the BLAS's remainder blocks), so two copies of one image in one batch
are not promised bit-identical either. We assert float32 rounding (2^-23) x a margin of 16 (three layers of
accumulated rounding) relative to the largest value, and one float16 spacing (2^-10 relative) for the maps
stored in float16.
"""

from __future__ import annotations

import asyncio
import io
import threading
from concurrent.futures import CancelledError

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from app.backend.local import VisionRequest
from app.batching import MicroBatcher, batching_enabled
from app.compute import ComputeQueue, QueueFull
from app.main import create_app
from app.services import vision as vision_service
from app.state import AppState
from models.vision.analysis import VisionAnalysis, analyze_image, analyze_images, load_vision_model
from tests.conftest import run_in_own_loop, wait_until
from tests.factories import TINY_SPECS, image_bytes, photo, tiny_settings

EPS32 = 2.0**-23
MARGIN = 16
F16_SPACING = 2.0**-10


def assert_same(a: VisionAnalysis, b: VisionAnalysis) -> None:
    """Batched ``a`` vs unbatched ``b`` within the tolerance of the module docstring."""
    assert (a.model_id, a.resolution, a.grid, a.num_prefix_tokens, a.has_cls) == (
        b.model_id,
        b.resolution,
        b.grid,
        b.num_prefix_tokens,
        b.has_cls,
    )
    assert a.attentions.shape == b.attentions.shape and a.attentions.dtype == b.attentions.dtype
    top = float(b.attentions.float().abs().max())
    assert float((a.attentions.float() - b.attentions.float()).abs().max()) <= F16_SPACING * top
    for x, y in ((a.cls_attention, b.cls_attention), (a.rollout, b.rollout)):
        assert x.shape == y.shape and x.dtype == y.dtype == np.float32
        assert np.abs(x - y).max() <= MARGIN * EPS32 * np.abs(y).max()
    assert (a.predictions is None) == (b.predictions is None)
    if b.predictions is not None:
        assert [n for n, _ in a.predictions] == [n for n, _ in b.predictions]
        pa, pb = np.array([p for _, p in a.predictions]), np.array([p for _, p in b.predictions])
        assert np.abs(pa - pb).max() <= MARGIN * EPS32 * pb.max()
    assert a.image.tobytes() == b.image.tobytes()


@pytest.mark.parametrize("spec", TINY_SPECS, ids=lambda s: s.id)
def test_analyze_images_equals_analyze_image(spec, tmp_path) -> None:
    vm = load_vision_model(spec, "cpu", torch.float32, tmp_path)
    images = [photo(i, 40) for i in range(4)]
    batched = analyze_images(vm, [*images, images[0]])
    for image, a in zip(images, batched, strict=False):
        assert_same(a, analyze_image(vm, image))
    assert_same(batched[-1], batched[0])  # the same image twice in one batch


def test_batching_setting() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not batching_enabled("auto", cpu) and batching_enabled("auto", cuda)
    assert batching_enabled("on", cpu) and not batching_enabled("off", cuda)
    with pytest.raises(ValueError):
        batching_enabled("sometimes", cpu)  # type: ignore[arg-type]


def gated_state(tmp_path, **overrides) -> tuple[AppState, threading.Event]:
    """A state with batching on whose compute worker is held by a gate job until the event is set."""
    settings = tiny_settings(tmp_path, batching="on", batch_wait_ms=0, preload=False, **overrides)
    state = AppState.create(settings)
    gate = threading.Event()
    state.queue.submit(gate.wait, 30)
    return state, gate


async def wait_for(condition, what: str, timeout_s: float = 30) -> None:
    """Poll ``condition()`` on the event loop (no fixed sleep)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


def test_concurrent_analyses_run_as_batches_with_merged_keys(tmp_path) -> None:
    state, gate = gated_state(tmp_path, batch_max_size=4)
    try:
        vm, res = state.vision_store.get_at(None, None)
        batcher = state.backend.batcher
        assert batcher is not None
        images = [photo(i, 40) for i in range(6)]
        uploads = [image_bytes(im) for im in images] + [
            image_bytes(images[0])
        ]  # the last one repeats the first

        async def main():
            tasks = [
                asyncio.create_task(vision_service.analyze(state, vm, res, data=data)) for data in uploads
            ]
            await wait_for(lambda: batcher.waiting == 6 and state.queue.merged == 1, "6 waiting + 1 merged")
            gate.set()
            return await asyncio.gather(*tasks)

        done = run_in_own_loop(lambda: main())
        assert list(batcher.batch_sizes) == [4, 2]  # six distinct images, at most four per forward
        assert done[0].analysis_id == done[-1].analysis_id and done[0].analysis is done[-1].analysis
        for image, d in zip(images, done, strict=False):
            assert d.forward_ms > 0 and not d.cached
            assert state.analyses.get(d.analysis_id) is d.analysis
            assert_same(d.analysis, analyze_image(vm, Image.open(io.BytesIO(image_bytes(image))), res))
        assert state.queue.pending == 0 and state.queue.pending_cost == 0  # every slot and byte released
    finally:
        gate.set()
        state.shutdown()


def test_admission_stays_bounded_and_a_full_queue_answers_503(tmp_path) -> None:
    state, gate = gated_state(tmp_path, queue_size=3)
    try:
        vm, res = state.vision_store.get_at(None, None)

        async def main():
            tasks = [
                asyncio.create_task(vision_service.analyze(state, vm, res, data=image_bytes(photo(i, 40))))
                for i in range(2)
            ]
            await wait_for(lambda: state.queue.pending == 3, "two analyses admitted behind the gate")
            with pytest.raises(QueueFull):  # each batched request still holds its own slot
                await vision_service.analyze(state, vm, res, data=image_bytes(photo(9, 40)))
            gate.set()
            return await asyncio.gather(*tasks)

        assert len(run_in_own_loop(lambda: main())) == 2
        assert list(state.backend.batcher.batch_sizes) == [2]
    finally:
        gate.set()
        state.shutdown()

    # and through the route: the same 503 + Retry-After as without batching
    settings = tiny_settings(tmp_path, batching="on", queue_size=1, preload=False)
    with TestClient(create_app(settings)) as client:
        state = client.app.state.atlas
        gate = threading.Event()
        state.queue.submit(gate.wait, 30)
        try:
            r = client.post(
                "/api/vision/analyze", files={"image": ("a.png", image_bytes(photo(1, 40)), "image/png")}
            )
            assert r.status_code == 503 and r.headers["Retry-After"] == str(settings.limits.retry_after_s)
        finally:
            gate.set()
        wait_until(
            lambda: state.queue.pending == 0, 10.0, "the gate's slot"
        )  # the gate's slot is released by its worker thread
        r = client.post(
            "/api/vision/analyze", files={"image": ("a.png", image_bytes(photo(1, 40)), "image/png")}
        )
        assert r.status_code == 200 and r.json()["forward_ms"] > 0
        aid = r.json()["analysis_id"]
        assert client.get(f"/api/vision/analysis/{aid}/attention?layer=0&query=0").status_code == 200
        assert list(state.backend.batcher.batch_sizes) == [1]


def test_a_cancelled_request_leaves_its_batch_and_the_others_still_finish(tmp_path) -> None:
    state, gate = gated_state(tmp_path)
    try:
        vm, res = state.vision_store.get_at(None, None)
        batcher = state.backend.batcher
        group = (vm.info.id, res)
        futures = []
        for i in range(3):
            x, shown = vm.preprocess(photo(i, 40), res)
            futures.append(
                batcher.submit(
                    group, VisionRequest(vm, f"a{i}", x, shown, state.analyses), key=f"vision:a{i}"
                )
            )
        assert futures[1].cancel()  # waiting behind the gate: cancellable, and the cancel must stick
        assert batcher.waiting == 2
        gate.set()
        results = [futures[0].result(timeout=30), futures[2].result(timeout=30)]
        with pytest.raises(CancelledError):
            futures[1].result()
        assert list(batcher.batch_sizes) == [2]
        assert state.analyses.get("a1") is None  # never computed
        assert state.analyses.get("a0") is results[0][0] and state.analyses.get("a2") is results[1][0]

        # shutdown cancels what still waits, and the batcher forgets it
        gate2 = threading.Event()
        state.queue.submit(gate2.wait, 30)
        x, shown = vm.preprocess(photo(5, 40), res)
        late = batcher.submit(group, VisionRequest(vm, "a5", x, shown, state.analyses), key="vision:a5")
        state.queue.shutdown()
        assert late.cancelled() and batcher.waiting == 0
        gate2.set()
    finally:
        gate.set()
        state.shutdown()


def test_an_error_in_a_batch_reaches_every_request_of_it() -> None:
    queue = ComputeQueue(8)
    gate = threading.Event()
    queue.submit(gate.wait, 30)
    calls: list[list[int]] = []

    def run_batch(_group, payloads):
        calls.append(list(payloads))
        if 13 in payloads:
            raise ValueError("unlucky batch")
        return [p * 2 for p in payloads]

    batcher = MicroBatcher(queue, run_batch, max_size=2, wait_ms=0)
    futures = [batcher.submit("g", p) for p in (13, 1, 2, 3)]
    other = batcher.submit("h", 5)  # another group is never mixed in
    gate.set()
    for f in futures[:2]:
        with pytest.raises(ValueError, match="unlucky"):
            f.result(timeout=30)
    assert [f.result(timeout=30) for f in futures[2:]] == [4, 6]
    assert other.result(timeout=30) == 10
    assert calls == [[13, 1], [2, 3], [5]]
    queue.shutdown()


def test_a_full_batch_starts_without_waiting_out_the_window() -> None:
    queue = ComputeQueue(8)
    batcher = MicroBatcher(queue, lambda _g, ps: [p + 1 for p in ps], max_size=3, wait_ms=60_000)
    gate = threading.Event()
    queue.submit(gate.wait, 30)
    futures = [batcher.submit("g", p) for p in range(3)]
    gate.set()
    assert [f.result(timeout=30) for f in futures] == [1, 2, 3]  # a 60 s window would time this out
    assert list(batcher.batch_sizes) == [3]
    queue.shutdown()


def test_many_threads_submitting_and_cancelling_lose_nothing() -> None:
    """4 threads x 50 requests, every 7th cancelled if still waiting: each other one gets its own result,
    each is computed once, no batch mixes groups or exceeds the cap, and nothing hangs."""
    queue = ComputeQueue(1000)
    seen: list[tuple[str, int]] = []

    def run_batch(group, payloads):
        seen.extend((group, p) for p in payloads)
        return [(group, p * 2) for p in payloads]

    batcher = MicroBatcher(queue, run_batch, 5, wait_ms=1)
    futures: dict[tuple[str, int], object] = {}
    lock = threading.Lock()

    def client(t: int) -> None:
        for i in range(50):
            p, group = t * 1000 + i, f"g{i % 3}"
            f = batcher.submit(group, p)
            if i % 7 == 0:
                f.cancel()
            with lock:
                futures[(group, p)] = f

    threads = [threading.Thread(target=client, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    for (group, p), f in futures.items():
        if f.cancelled():
            assert (group, p) not in seen
        else:
            assert f.result(timeout=60) == (group, p * 2)
    assert len(seen) == len(set(seen)) == sum(batcher.batch_sizes)
    assert max(batcher.batch_sizes) <= 5 and batcher.waiting == 0
    queue.shutdown()
