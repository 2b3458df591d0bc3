"""Dataset mean attention distance vs a plain fused forward pass: throughput ratio and peak memory, one run.

What is timed, on the same model, batch size and images (the bundled sample photos, repeated):

- ``fused forward``: ``model.forward_features`` with timm's fused attention (SDPA), on tensors prepared
  beforehand: the model's own speed, the ceiling.
- ``prep + fused``: the same plus the model's preprocessing of every image (what any pipeline pays).
- ``manual, no reduce``: the manual attention path that materialises the probabilities, hooked but the
  hook does nothing: the cost of making the maps exist at all.
- ``dataset MAD``: :func:`models.vision.distance.dataset_mean_attention_distance`, end to end (preprocessing,
  manual attention, reduction on the device).

Ratios: MAD / fused forward (strict: MAD also pays preprocessing) and MAD / (prep + fused) (like for
like). Targets: >= 0.8 on a GPU, >= 0.6 on a CPU. Peak memory per phase, above the phase's start: CUDA
``max_memory_allocated``; CPU the live glibc heap (``mallinfo2``; RSS where that is missing), sampled every
2 ms by a thread (torch's CPU tensors are invisible to tracemalloc). Repeats are interleaved; medians.

    python bench/distance.py --device cpu --batch-size 8 --n-images 32
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.devices import resolve_device, resolve_dtype  # noqa: E402
from models.vision.analysis import load_vision_model  # noqa: E402
from models.vision.capture import capture_attention  # noqa: E402
from models.vision.distance import dataset_mean_attention_distance  # noqa: E402
from models.vision.registry import get_builtin_spec  # noqa: E402
from models.vision.samples import sample_images  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
        )
    ] + [("keepcost", ctypes.c_size_t)]


def _live_heap_fn() -> Callable[[], int] | None:
    """glibc's bytes in use (``uordblks`` + mmapped ``hblkhd``): live allocations, torch's CPU tensors included,
    without the freed memory that malloc keeps (RSS counts that too, so its deltas depend on phase order)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return None

    def live() -> int:
        info = libc.mallinfo2()
        return int(info.uordblks + info.hblkhd)

    return live


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


LIVE_HEAP = _live_heap_fn()
CPU_MEMORY = "live heap (glibc mallinfo2)" if LIVE_HEAP else "RSS"


class PeakMemory:
    """Peak memory above the starting point while the block runs (CUDA allocator or sampled RSS)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak = device, 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
        else:
            self._read = LIVE_HEAP or rss_bytes
            self._base = self._max = self._read()
            self._stop = threading.Event()

            def sample() -> None:
                while not self._stop.wait(0.002):
                    self._max = max(self._max, self._read())

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self._base
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self._max, self._read()) - self._base


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, float, int]:
    """(wall seconds, this process's CPU seconds, peak bytes) of one call."""
    with PeakMemory(device) as mem:
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return seconds, cpu, mem.peak


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--n-images", type=int, default=32)
    p.add_argument("--resolution", type=int, default=None, help="input side (default: the model's)")
    p.add_argument("--model", default="dinov2_vits14")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cache-dir", default=".cache")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    vm = load_vision_model(get_builtin_spec(args.model), device, dtype, args.cache_dir)
    res = vm.check_resolution(args.resolution)
    samples = list(sample_images().values())
    images = [samples[i % len(samples)] for i in range(args.n_images)]
    n, b = len(images), args.batch_size
    info = vm.info
    rows, cols = info.grid(res, res)
    tokens = info.num_prefix_tokens + rows * cols

    def prepare() -> list[torch.Tensor]:
        xs = [vm.prepare(im, res)[0] for im in images]  # each (1, 3, R, R)
        return [torch.cat(xs[i : i + b]) for i in range(0, n, b)]  # (B, 3, R, R) each

    batches = prepare()

    def fused() -> None:
        with torch.inference_mode():
            for x in batches:
                vm.model.forward_features(x)

    def prep_fused() -> None:
        with torch.inference_mode():
            for x in prepare():
                vm.model.forward_features(x)

    def manual_no_reduce() -> None:
        with torch.inference_mode(), capture_attention(vm.model, reduce=lambda i, a: None):
            for x in batches:
                vm.model.forward_features(x)

    def mad() -> None:
        dataset_mean_attention_distance(vm, images, batch_size=b, resolution=res)

    phases = {
        "fused forward": fused,
        "prep + fused": prep_fused,
        "manual, no reduce": manual_no_reduce,
        "dataset MAD": mad,
    }
    for fn in phases.values():  # warm-up (allocator, kernels, caches)
        fn()
    seconds: dict[str, list[float]] = {k: [] for k in phases}
    cpu_seconds: dict[str, list[float]] = {k: [] for k in phases}
    peaks: dict[str, int] = {k: 0 for k in phases}
    for _ in range(args.repeats):  # interleaved, so a noisy neighbour hits every phase alike
        for name, fn in phases.items():
            s, c, peak = timed(fn, device)
            seconds[name].append(s)
            cpu_seconds[name].append(c)
            peaks[name] = max(peaks[name], peak)
    rate = {k: n / statistics.median(v) for k, v in seconds.items()}
    cpu_rate = {k: n / statistics.median(v) for k, v in cpu_seconds.items()}

    dev = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    all_maps = info.num_layers * n * info.num_heads * tokens**2 * torch.finfo(dtype).bits // 8
    print(f"model {info.id} ({info.num_layers} layers x {info.num_heads} heads, {tokens} tokens at {res} px)")
    print(
        f"device {dev}, {str(dtype).removeprefix('torch.')}, batch {b}, {n} images, median of {args.repeats}"
    )
    memory = "torch.cuda.max_memory_allocated" if device.type == "cuda" else CPU_MEMORY
    print(
        f"peak MB: {memory}, above the phase's start; img/CPU-s: images per second of this process's CPU time"
    )
    print(f"{'phase':<20}{'images/s':>10}{'img/CPU-s':>11}{'peak MB':>10}")
    for name in phases:
        print(f"{name:<20}{rate[name]:>10.2f}{cpu_rate[name]:>11.2f}{peaks[name] / 2**20:>10.1f}")
    target = 0.8 if device.type == "cuda" else 0.6
    print(f"{'ratio':<32}{'wall':>6}{'CPU':>6}")
    for label, num, den in (
        (f"MAD / fused forward (>= {target})", "dataset MAD", "fused forward"),
        ("MAD / (prep + fused)", "dataset MAD", "prep + fused"),
        ("manual / fused forward", "manual, no reduce", "fused forward"),
    ):
        print(f"{label:<32}{rate[num] / rate[den]:>6.2f}{cpu_rate[num] / cpu_rate[den]:>6.2f}")
    print(f"all maps of all images would be {all_maps / 2**20:.0f} MB; MAD keeps one block's batch at a time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
