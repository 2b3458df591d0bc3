"""The vision area under load: merged identical forwards, cached views, and memory that stays bounded when
many clients ask for the heaviest derived view (mean attention distance of a 448 px DINOv2-size analysis).

Memory is measured as the process's peak resident set (VmHWM, reset through /proc/self/clear_refs), never
by timing. Bound per distance view (models/vision/distance.py): the maps are reduced a 16 MB chunk at a
time, 2 * max(CHUNK_BYTES, 4 N^2) + 8 N^2 bytes; the CPU pool runs at most cpu_workers views at once.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app.backend import local as local_backend
from app.serialization import decode_typed_array
from app.services import distance as distance_service
from app.services import vision as vision_service
from app.settings import VisionModelEntry
from models.vision.analysis import VisionAnalysis
from models.vision.distance import CHUNK_BYTES, mean_attention_distance
from tests.factories import random_vit, tiny_settings

MB = 1024 * 1024
# DINOv2 ViT-S/14 geometry at 448 px (12 layers, 6 heads, 32 x 32 patches + CLS), random and narrow
MID = random_vit(
    VisionModelEntry,
    "mid_vit",
    "Random ViT with DINOv2-S/14 geometry at 448 px (tests)",
    **dict(img_size=448, patch_size=14, embed_dim=24, depth=12, num_heads=6, num_classes=0),
)
L, H, GRID = 12, 6, (32, 32)
P = GRID[0] * GRID[1]
N = P + 1


def per_view_bytes(n: int, renormalize: bool) -> int:
    """The per-view peak of mean_attention_distance over a float16 (L, H, N, N) cache (its docstring)."""
    chunk = max(CHUNK_BYTES, 4 * n * n)
    return chunk * (2 if renormalize else 1) + 8 * n * n


def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak() -> int:
    """Reset VmHWM to the current RSS; returns that RSS in bytes (skips where the kernel does not allow it)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pytest.skip("cannot reset the peak RSS (/proc/self/clear_refs) here")
    rss, hwm = status_kb("VmRSS"), status_kb("VmHWM")
    if hwm > rss + 8 * 1024:
        pytest.skip("this kernel does not reset VmHWM")
    return rss * 1024


def peak_bytes() -> int:
    return status_kb("VmHWM") * 1024


def random_cache(seed: int = 0) -> torch.Tensor:
    """(L, H, N, N) float16 attention probabilities, built one layer at a time."""
    g = torch.Generator().manual_seed(seed)
    out = torch.empty((L, H, N, N), dtype=torch.float16)  # (L, H, N, N)
    for layer in out:
        layer.copy_(torch.randn((H, N, N), generator=g).mul_(3).softmax(-1))
    return out


@pytest.fixture(scope="module")
def cache() -> torch.Tensor:
    return random_cache()


@pytest.mark.fresh_process
@pytest.mark.parametrize("renormalize", [False, True])
def test_mad_of_a_cached_analysis_is_computed_layer_by_layer(cache, renormalize) -> None:
    """One view's peak stays near one chunk's float32 copy, far below an (L, H, N, N) float32 copy."""
    mean_attention_distance(cache[:1], GRID, 1, 14, renormalize)  # warm up (distances, allocator)
    base = reset_peak()
    mad = mean_attention_distance(cache, GRID, 1, 14, renormalize)  # (L, H)
    extra = peak_bytes() - base
    assert mad.shape == (L, H) and mad.dtype == torch.float32
    bound = per_view_bytes(N, renormalize)
    full_copy = cache.numel() * 4  # what materialising the whole cache in float32 would take (302 MB)
    assert extra < 1.5 * bound + 16 * MB < full_copy / 2, (extra / MB, bound / MB)
    direct = mean_attention_distance(cache[3].float(), GRID, 1, 14, renormalize)  # (H,)
    torch.testing.assert_close(mad[3], direct)


@pytest.fixture
def client(tmp_path, app_client):
    base = tiny_settings(tmp_path)
    return app_client(tiny_settings(tmp_path, vision_models=[*base.models.vision_models, MID], preload=False))


@pytest.mark.fresh_process
def test_forty_concurrent_distance_gets_stay_under_the_memory_bound(client, cache, monkeypatch) -> None:
    state = client.app.state.atlas
    vm = state.vision_store.get("mid_vit")
    assert (vm.info.num_layers, vm.info.num_heads, vm.info.grid(448, 448)) == (L, H, GRID)
    analysis = VisionAnalysis(
        model_id="mid_vit",
        resolution=448,
        grid=GRID,
        num_prefix_tokens=1,
        attentions=cache,
        cls_attention=cache[:, :, 0, 1:].float().numpy(),
        rollout=np.full(P, 1 / P, np.float32),
        predictions=None,
        image=Image.new("RGB", (448, 448)),
    )
    computed: list[bool] = []
    real = distance_service.analysis_distance

    def counting(vm_, analysis_, renormalize):
        computed.append(renormalize)
        return real(vm_, analysis_, renormalize)

    monkeypatch.setattr(distance_service, "analysis_distance", counting)

    def forty_gets(aid: str) -> dict[int, tuple[int, dict]]:
        state.analyses.put(aid, analysis)
        results: dict[int, tuple[int, dict]] = {}

        def get(i: int) -> None:
            params = {
                "renormalize": str(i % 2 == 1).lower(),
                "unit": ("pixels", "patches", "diagonal")[i % 3],
            }
            r = client.get(f"/api/distance/analysis/{aid}", params=params)
            results[i] = (r.status_code, r.json())

        threads = [threading.Thread(target=get, args=(i,)) for i in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        return results

    # A first round under another id warms up what is not the server's per-request memory: 40 client
    # threads, their allocator arenas, torch's first use on the pool threads.
    forty_gets("0" * 24)
    computed.clear()
    base = reset_peak()
    results = forty_gets("a" * 24)
    extra = peak_bytes() - base
    assert {s for s, _ in results.values()} == {200}, [b for s, b in results.values() if s != 200][:2]
    assert sorted(computed) == [False, True]  # two distinct views, each computed once (merged, then cached)
    bound = state.cpu.workers * per_view_bytes(N, renormalize=True)
    assert extra < bound + 64 * MB, (extra / MB, bound / MB)
    px = decode_typed_array(results[0][1]["mad"])  # renormalize false, pixels
    patches = decode_typed_array(results[4][1]["mad"])  # renormalize false, patches
    np.testing.assert_allclose(patches, px / 14)


def test_identical_in_flight_analyses_share_one_forward(client, monkeypatch) -> None:
    state = client.app.state.atlas
    state.vision_store.get("tiny_vit")
    forwards: list[int] = []
    real = local_backend.analyze_image  # the local backend's forward (app/backend/local.py)
    monkeypatch.setattr(local_backend, "analyze_image", lambda *a, **k: forwards.append(1) or real(*a, **k))
    release, started = threading.Event(), threading.Event()
    blocker = threading.Thread(target=state.queue.run_sync, args=(lambda: (started.set(), release.wait(20)),))
    blocker.start()
    started.wait(5)
    merged_before = state.queue.merged
    bodies: list[dict] = []
    threads = [
        threading.Thread(
            target=lambda: bodies.append(
                client.post("/api/vision/analyze", data={"sample": "chelsea"}).json()
            )
        )
        for _ in range(3)
    ]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 20
        while state.queue.merged < merged_before + 2:  # the 2nd and 3rd join the 1st's forward
            assert time.monotonic() < deadline, "the requests were not merged"
            time.sleep(0.01)
    finally:
        release.set()
        blocker.join(5)
    for t in threads:
        t.join(20)
    assert len(bodies) == 3 and len({b["analysis_id"] for b in bodies}) == 1 and forwards == [1]
    # a different resolution or model is a different analysis
    other = client.post(
        "/api/vision/analyze", data={"sample": "chelsea", "model": "tiny_deit_distilled"}
    ).json()
    assert other["analysis_id"] != bodies[0]["analysis_id"] and forwards == [1, 1]


def test_ids_are_keyed_and_views_cached(client, monkeypatch) -> None:
    import hashlib

    from app.services.images import sample_bytes

    body = client.post("/api/vision/analyze", data={"sample": "coffee"}).json()
    sha = hashlib.sha256(sample_bytes()["coffee"]).hexdigest()
    assert sha not in (body["image_hash"], body["analysis_id"]) and sha[:24] != body["analysis_id"]
    state = client.app.state.atlas
    assert body["image_hash"] == state.keyed_id("image", sha)
    aid = body["analysis_id"]
    calls: list[str] = []
    for name in ("rollout_map", "patch_map", "image_png"):
        real = getattr(vision_service, name)
        monkeypatch.setattr(
            vision_service, name, lambda *a, _r=real, _n=name, **k: calls.append(_n) or _r(*a, **k)
        )
    for _ in range(2):
        assert (
            client.get(f"/api/vision/analysis/{aid}/rollout", params={"head_fusion": "max"}).status_code
            == 200
        )
        assert (
            client.get(f"/api/vision/analysis/{aid}/attention", params={"layer": 1, "query": 3}).status_code
            == 200
        )
        assert client.get(f"/api/vision/analysis/{aid}/image.png").status_code == 200
    assert sorted(calls) == ["image_png", "patch_map", "rollout_map"]  # each computed once, then cached
