"""Dataset jobs across a two-node Ray cluster (issue 9 §2), on one machine with ``ray.cluster_utils.Cluster``.

Head and worker node each declare one CPU and listen on 127.0.0.1 only. One cluster is shared by the
module and shut down at its end; the node-loss test runs last (it removes the worker node).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray")

from ray.cluster_utils import Cluster  # noqa: E402

from app.cache import BoundedCache  # noqa: E402
from app.cluster.dataset import TaskOptions, distributed_distance  # noqa: E402
from app.cluster.loopback import init_ray  # noqa: E402
from app.cluster.store import SharedCache, index_actor  # noqa: E402
from models.vision.analysis import load_vision_model  # noqa: E402
from models.vision.distance import Cancelled, dataset_mean_attention_distance  # noqa: E402
from models.vision.samples import sample_images  # noqa: E402
from tests.factories import TINY_SPECS, tiny_settings  # noqa: E402

OPTIONS = TaskOptions(num_cpus=1, device="cpu", max_retries=3)
# forwards on 1 thread (a Ray task) vs the test's threads: float32 matmuls may round differently; the
# mean distances are O(10) px, float32 relative rounding ~1e-7 accumulated over a few layers
RTOL = 1e-5


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[tuple[Cluster, object]]:
    loopback = dict(num_cpus=1, node_ip_address="127.0.0.1")
    cluster = Cluster(initialize_head=True, head_node_args={**loopback, "include_dashboard": False})
    worker = cluster.add_node(**loopback)
    cluster.wait_for_nodes()
    init_ray(cluster.address, log_to_driver=False)  # a loopback address stays on loopback
    try:
        yield cluster, worker
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture(scope="module")
def vm():
    return load_vision_model(TINY_SPECS[0], torch.device("cpu"), torch.float32)


@pytest.fixture(scope="module")
def images() -> list:
    return list(sample_images().values())


@pytest.fixture(scope="module")
def local_result(vm, images) -> np.ndarray:
    return dataset_mean_attention_distance(vm, images, batch_size=2).mad  # (L, H) pixels


def test_batches_run_on_both_nodes_and_equal_local(two_nodes, vm, images, local_result) -> None:
    cluster, worker = two_nodes
    seen: list[tuple[int, int | None]] = []
    run = distributed_distance(
        vm, images, 2, vm.info.default_resolution, False, OPTIONS, progress=lambda d, t: seen.append((d, t))
    )
    assert set(run.node_ids) == {cluster.head_node.node_id, worker.node_id}
    assert run.result.n_images == len(images)
    np.testing.assert_allclose(run.result.mad, local_result, rtol=RTOL)
    assert seen[0] == (0, len(images)) and seen[-1] == (len(images), len(images))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)  # progress only moves forward


def test_cancel_stops_the_run(two_nodes, vm, images) -> None:
    cancel = threading.Event()

    def progress(done: int, total: int | None) -> None:
        if done > 0:
            cancel.set()  # after the first finished batch

    with pytest.raises(Cancelled):
        distributed_distance(vm, images * 4, 1, None, False, OPTIONS, progress=progress, cancel=cancel)


def test_shared_cache_serves_another_ingress_and_stays_bounded(two_nodes, tmp_path) -> None:
    """Two ingress-like caches over one AnalysisIndex: a put on one is a hit on the other (ingress_replicas
    > 1); the index drops the least recently used entry past its byte bound, which is then a plain miss."""
    cache = lambda: BoundedCache(1 << 20, 3600, lambda v: v.nbytes)  # noqa: E731
    settings = tiny_settings(tmp_path, serve_app_name="atlas-store-test", shared_cache_mb=1)
    index = index_actor(settings)
    a = SharedCache(cache(), index, "vision:")
    b = SharedCache(cache(), index, "vision:")
    first = np.arange(100_000, dtype=np.float32)  # 400 kB
    a.put("one", first)
    ray.get(index.nbytes.remote())  # the put has reached the index
    np.testing.assert_array_equal(b.get("one"), first)
    a.put("two", first + 1)
    a.put("three", first + 2)  # 1.2 MB > 1 MB: "one" leaves the index
    assert ray.get(index.nbytes.remote()) <= 1 << 20
    assert SharedCache(cache(), index, "vision:").get("one") is None
    np.testing.assert_array_equal(SharedCache(cache(), index, "vision:").get("three"), first + 2)
    ray.kill(index)


def test_lost_worker_node_job_finishes_with_same_result(two_nodes, vm, images, local_result) -> None:
    """Remove the worker node (all its processes killed) after the first batch: its batches in flight are
    re-run by Ray on the head node, and the result is unchanged."""
    cluster, worker = two_nodes
    removed = threading.Event()

    def progress(done: int, total: int | None) -> None:
        if done > 0 and not removed.is_set():
            removed.set()
            cluster.remove_node(worker, allow_graceful=False)

    run = distributed_distance(vm, images, 1, None, False, OPTIONS, progress=progress, window=4)
    assert removed.is_set()
    deadline = time.monotonic() + 60  # the GCS marks the killed node dead after its health checks fail
    while sum(n["Alive"] for n in ray.nodes()) != 1:
        assert time.monotonic() < deadline, "the removed node is still alive"
        time.sleep(0.2)
    # (which node a batch submitted around the loss ran on depends on when the GCS marks the node dead,
    # so only the batches' count and the result are asserted, not their placement)
    assert len(run.node_ids) == len(images)
    np.testing.assert_allclose(run.result.mad, local_result, rtol=RTOL)
