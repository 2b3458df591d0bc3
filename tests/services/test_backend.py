"""app/backend: the local backend's forwards equal direct model calls, identical in-flight keys share one
forward (app/inflight.py, the one merging place), and the one dataset loop run through the backend's
``submit`` equals a brute-force computation (every map kept, then averaged)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future

import numpy as np
import pytest
import torch
from PIL import Image

from app.backend import create_backend
from app.backend import local as local_backend
from app.backend.local import LocalBackend
from app.cache import BoundedCache
from app.compute import ComputeQueue, CpuPool
from app.inflight import InFlight
from app.services.errors import ServiceError
from models.text.analysis import load_text_model
from models.vision.analysis import analyze_image, load_vision_model
from models.vision.capture import capture_attention
from models.vision.distance import (
    BatchMad,
    Cancelled,
    batch_mad,
    dataset_mean_attention_distance,
    mean_attention_distance,
)
from tests.conftest import TINY_SPECS, run_in_own_loop, tiny_settings
from tests.services.test_batching import assert_same


def photo(seed: int, size: int = 40):
    """The photo test_batching used before the factories: square, ``size`` px."""
    from tests.factories import photo as factory_photo

    return factory_photo(seed, size)


def cache() -> BoundedCache:
    return BoundedCache(1 << 30, 600, lambda _v: 1)


@pytest.fixture(scope="module")
def vm():
    return load_vision_model(TINY_SPECS[0], "cpu", torch.float32)


def test_inflight_merges_until_done() -> None:
    inflight: InFlight[Future] = InFlight()
    first = inflight.add("k", Future())
    assert inflight.find("k") is first and inflight.merged == 1 and len(inflight) == 1
    assert inflight.find(None) is None and inflight.find("other") is None
    first.set_result(1)
    assert inflight.find("k") is None and len(inflight) == 0 and inflight.merged == 1


@pytest.mark.parametrize("batching", [False, True], ids=["queue", "batcher"])
def test_local_vision_forward_equals_a_direct_call_and_caches(vm, batching) -> None:
    queue, cpu = ComputeQueue(8), CpuPool(8, 1)
    backend = LocalBackend(queue, cpu, batching=batching, wait_ms=0)
    store = cache()
    image = photo(3)
    try:
        analysis, ms = run_in_own_loop(lambda: backend.vision_forward(vm, image, 32, key="a1", cache=store))
        assert ms > 0 and store.get("a1") is analysis
        assert_same(analysis, analyze_image(vm, image, 32))
        again, ms2 = run_in_own_loop(lambda: backend.vision_forward(vm, image, 32, key="a1", cache=store))
        assert again is analysis and ms2 == 0.0  # cached meanwhile: no second forward
    finally:
        queue.shutdown()
        cpu.shutdown()


def test_identical_in_flight_keys_share_one_forward(vm, monkeypatch) -> None:
    queue, cpu = ComputeQueue(8), CpuPool(8, 1)
    backend = LocalBackend(queue, cpu)
    forwards: list[int] = []
    real = local_backend.analyze_image
    monkeypatch.setattr(local_backend, "analyze_image", lambda *a: forwards.append(1) or real(*a))
    gate = threading.Event()
    queue.submit(gate.wait, 30)  # hold the worker so the three requests are in flight together

    async def main():
        store = cache()
        tasks = [
            asyncio.create_task(backend.vision_forward(vm, photo(1), 32, key="same", cache=store))
            for _ in range(3)
        ]
        while queue.merged < 2:
            await asyncio.sleep(0.005)
        gate.set()
        return await asyncio.gather(*tasks)

    try:
        results = run_in_own_loop(lambda: main())
    finally:
        gate.set()
        queue.shutdown()
        cpu.shutdown()
    assert forwards == [1] and all(r[0] is results[0][0] for r in results)


def test_local_text_forward_equals_a_direct_call(tmp_path) -> None:
    settings = tiny_settings(tmp_path)
    model = load_text_model(settings.models.text_specs()["tiny-bert"], torch.device("cpu"))
    queue = ComputeQueue(8)
    backend = LocalBackend(queue, CpuPool(4, 1))
    store = cache()
    text = "The animal did not cross the street."
    try:
        a = run_in_own_loop(lambda: backend.text_forward(model, text, None, key="t1", cache=store, cost=10))
        assert store.get("t1") is a
        direct = model.analyze(text, None)
        for kind in direct.blocks:
            np.testing.assert_allclose(np.asarray(a.blocks[kind]), np.asarray(direct.blocks[kind]), rtol=1e-6)
        with pytest.raises(ServiceError) as e:  # over the model's token limit: 422, as the route says
            run_in_own_loop(lambda: backend.text_forward(model, "word " * 2000, None, key="t2", cache=store))
        assert e.value.status == 422
    finally:
        queue.shutdown()


def test_create_backend_picks_local_with_batching_from_the_settings(tmp_path) -> None:
    queue, cpu = ComputeQueue(4), CpuPool(4, 1)
    off = create_backend(tiny_settings(tmp_path), queue, cpu, torch.device("cpu"))
    on = create_backend(tiny_settings(tmp_path, batching="on"), queue, cpu, torch.device("cpu"))
    assert isinstance(off, LocalBackend) and off.batcher is None and off.name == "local"
    assert isinstance(on, LocalBackend) and on.batcher is not None
    assert run_in_own_loop(lambda: off.replicas()) is None
    queue.shutdown()
    cpu.shutdown()


# ----------------------------------------------------------------------------------------------------------
# The one dataset loop


def images(n: int) -> list[Image.Image]:
    return [photo(i, size=30 + 7 * i) for i in range(n)]


def brute_force(vm, imgs: list[Image.Image], renormalize: bool) -> np.ndarray:
    """(L, H): every image's maps kept, MAD per image, averaged (the definition, no accumulator)."""
    info = vm.info
    per_image = []
    for im in imgs:
        x = vm.prepare(im)[0]  # (1, 3, R, R)
        with torch.inference_mode(), capture_attention(vm.model) as rec:
            vm.model.forward_features(x)
        grid = info.grid(x.shape[-2], x.shape[-1])
        mad = mean_attention_distance(
            rec.stacked(), grid, info.num_prefix_tokens, info.patch_size, renormalize
        )
        per_image.append(mad[:, 0].double().numpy())  # (L, 1, H) -> (L, H)
    return np.mean(per_image, axis=0)


@pytest.mark.parametrize("spec", TINY_SPECS, ids=lambda s: s.id)
@pytest.mark.parametrize("renormalize", [False, True])
def test_dataset_loop_through_the_local_queue_equals_brute_force(spec, renormalize) -> None:
    vm = load_vision_model(spec, "cpu", torch.float32)
    imgs = images(5)
    queue = ComputeQueue(4)
    backend = LocalBackend(queue, CpuPool(4, 1))
    cancel = threading.Event()
    names: list[str] = []
    submit_to_queue = queue.submit
    queue.submit = lambda fn, *a, **k: names.append(fn.__name__) or submit_to_queue(fn, *a, **k)  # type: ignore
    progress: list[tuple[int, int | None]] = []
    try:
        res = dataset_mean_attention_distance(
            vm,
            imgs,
            batch_size=2,
            renormalize=renormalize,
            progress=lambda d, t: progress.append((d, t)),
            cancel=cancel,
            submit=backend.dataset_submit(vm, vm.info.default_resolution, renormalize, cancel),
            window=backend.dataset_window,
        )
    finally:
        queue.shutdown()
    assert names == ["batch_mad"] * 3  # every batch through the compute queue
    assert progress == [(0, 5), (2, 5), (4, 5), (5, 5)] and res.n_images == 5
    np.testing.assert_allclose(res.mad, brute_force(vm, imgs, renormalize), rtol=1e-5)
    inline = dataset_mean_attention_distance(vm, imgs, batch_size=3, renormalize=renormalize, unit="patches")
    np.testing.assert_allclose(inline.mad * vm.info.patch_size, res.mad, rtol=1e-5)


def test_dataset_loop_with_a_window_cancels_what_is_in_flight(vm) -> None:
    """Several batches in flight (as on Ray): the result is combined in batch order; a cancel cancels the
    futures still pending and raises Cancelled."""
    submitted: list[Future] = []

    def slow_submit(x: torch.Tensor) -> Future:
        f: Future = Future()
        submitted.append(f)
        # computed here, one batch at a time (batch_mad hooks the shared model: two at once in one process
        # would mix their captures), and delivered later, out of order, as Ray tasks finish
        result = batch_mad(vm, x, 32, False)
        threading.Timer(0.05 * (3 - len(submitted) % 3), lambda: f.set_result(result)).start()
        return f

    imgs = images(6)
    res = dataset_mean_attention_distance(vm, imgs, batch_size=2, submit=slow_submit, window=3)
    np.testing.assert_allclose(res.mad, brute_force(vm, imgs, False), rtol=1e-5)

    cancel = threading.Event()
    pending: list[Future] = []

    def never(x: torch.Tensor) -> Future:
        pending.append(Future())
        if len(pending) == 2:
            cancel.set()
        return pending[-1]

    with pytest.raises(Cancelled):
        dataset_mean_attention_distance(vm, imgs, batch_size=1, submit=never, window=4, cancel=cancel)
    assert pending and all(f.cancelled() for f in pending)
    assert isinstance(batch_mad(vm, vm.prepare(imgs[0])[0], 32, False), BatchMad)
