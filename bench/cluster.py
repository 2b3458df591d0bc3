"""Ray Serve replica scaling: VisionModels throughput with 1, 2 and 4 replicas, side by side in one run.

Three Serve applications are deployed at once on one local Ray instance (every process on 127.0.0.1):
``bench-1``, ``bench-2`` and ``bench-4``, each only the ``VisionModels`` deployment with that many
replicas (1 CPU each, so torch runs one thread per replica). Measurement windows alternate between them
(round robin, ``--rounds`` x ``--window-s``), each window keeping ``2 x replicas x max_ongoing_requests``
forwards in flight through a DeploymentHandle; the table gives forwards/s and the ratio to 1 replica.
Goal: ratio >= 0.8 x replicas where the machine has that many free cores; on fewer cores the ratio
saturates at about (free cores), which is what a 2-core machine shows.

``--cold-start`` also times start to first healthy ``/api/health`` for ``make run`` (uvicorn) and for
``make run-cluster`` (``python -m app.cluster``, including the local Ray start), with the operator's
default models; each server is stopped afterwards.

    python bench/cluster.py --window-s 5 --rounds 2 [--cold-start | --only-cold-start]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ray  # noqa: E402
from ray import serve  # noqa: E402

from app.cluster.loopback import init_ray  # noqa: E402
from app.cluster.serve_app import VisionReplica  # noqa: E402
from app.settings import Settings, VisionModelEntry  # noqa: E402
from tests.factories import photo  # noqa: E402

BENCH_VIT = VisionModelEntry(
    id="bench_vit",
    arch_tag="vit_small_patch16_224.random",
    source="random",
    label="random ViT-S/16 (bench)",
    timm_kwargs=dict(num_classes=10),
)
REPLICAS = (1, 2, 4)


def bench_settings(max_ongoing: int) -> Settings:
    return Settings(
        device="cpu",
        vision_models=[BENCH_VIT],
        default_vision_model=BENCH_VIT.id,
        text_models=[],
        max_ongoing_requests=max_ongoing,
    )


async def window(handle, image: Image.Image, in_flight: int, seconds: float) -> int:
    """Forwards completed in ``seconds`` with ``in_flight`` requests kept outstanding."""
    deadline = time.perf_counter() + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await handle.forward.remote(BENCH_VIT.id, image, 224)
            done += 1

    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return done


def scaling(args: argparse.Namespace) -> None:
    settings = bench_settings(args.max_ongoing)
    init_ray(None, num_cpus=sum(REPLICAS), log_to_driver=False)  # a new local instance, on 127.0.0.1
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
        handles = {}
        for n in REPLICAS:
            dep = serve.deployment(VisionReplica).options(
                name="VisionModels",
                num_replicas=n,
                max_ongoing_requests=args.max_ongoing,
                ray_actor_options={"num_cpus": 1},
            )
            handles[n] = serve.run(dep.bind(settings), name=f"bench-{n}", route_prefix=f"/bench-{n}")
        image = photo(0, 256, high=255)
        for n in REPLICAS:  # warm-up: every replica loads and runs once
            asyncio.run(window(handles[n], image, 2 * n, 1.0))
        counts = {n: 0 for n in REPLICAS}
        seconds = {n: 0.0 for n in REPLICAS}
        for _ in range(args.rounds):
            for n in REPLICAS:
                t0 = time.perf_counter()
                counts[n] += asyncio.run(window(handles[n], image, 2 * n * args.max_ongoing, args.window_s))
                seconds[n] += time.perf_counter() - t0
        base = counts[1] / seconds[1]
        print(f"cores: {os.cpu_count()}  (load average {os.getloadavg()[0]:.1f})")
        print(f"{'replicas':>8} {'forwards/s':>11} {'ratio':>6} {'goal':>6}")
        for n in REPLICAS:
            rate = counts[n] / seconds[n]
            print(f"{n:>8} {rate:>11.2f} {rate / base:>6.2f} {0.8 * n:>6.1f}")
    finally:
        serve.shutdown()
        ray.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_to_healthy(cmd: list[str], port: int, timeout_s: float = 600) -> float:
    """Seconds from starting ``cmd`` to a 200 from /api/health on ``port``; the process is stopped after."""
    import httpx

    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        while time.perf_counter() - t0 < timeout_s:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[2]} exited with {proc.returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise TimeoutError(f"{cmd} not healthy after {timeout_s} s")
    finally:
        proc.send_signal(signal.SIGINT)  # app.cluster deletes its app and stops its local Ray on SIGINT
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def cold_start() -> None:
    py = sys.executable
    port = free_port()
    local = time_to_healthy(
        [py, "-m", "uvicorn", "app.main:create_app", "--factory", "--host", "127.0.0.1", "--port", str(port)],
        port,
    )
    port = free_port()
    cluster = time_to_healthy([py, "-m", "app.cluster", "--host", "127.0.0.1", "--port", str(port)], port)
    print(f"cold start to healthy: make run {local:.1f} s, make run-cluster {cluster:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--window-s", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-ongoing", type=int, default=1, help="max_ongoing_requests per replica")
    parser.add_argument("--cold-start", action="store_true", help="also time start to healthy")
    parser.add_argument("--only-cold-start", action="store_true")
    args = parser.parse_args()
    if not args.only_cold_start:
        scaling(args)
    if args.cold_start or args.only_cold_start:
        cold_start()


if __name__ == "__main__":
    main()
