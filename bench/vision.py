"""Vision benchmark: capture and server overhead, and the native-resolution goals, side by side at 224, 448, 518 px.

For DINOv2 ViT-S/14 (the offline default) at each resolution, in one run:

- forward with attention capture vs the plain timm forward (fused attention), as a ratio;
- ``POST /api/vision/analyze`` (in-process ASGI client, a new image each call so nothing is cached) vs the bare
  forward, as a ratio (target <= 1.3x on CPU), and the response size (goal <= 1 MB);
- a clicked patch's maps for all L x H heads: server time of the view (goal <= 100 ms at 518 px), from the stored
  analysis (compact: recomputed from the residual stream) and, as today's baseline, from full float16 maps;
- bytes per cached analysis and how many the default analysis cache holds (goals >= 50 at 448, >= 30 at 518),
  stored as the server now does and as full maps (today);
- peak RSS of one analysis above the idle server (goal <= 0.5 GB at 518), in a fresh process each
  (``--rss-child``), with ``make run``'s malloc settings; today's storage (full maps) beside it;
- with ``--browser``: first paint in headless Chromium after the analyze response, and after a click (goal <= 2 s).

    python bench/vision.py [--resolutions 224,448,518] [--repeats 3] [--browser] [--no-baseline]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import forward_pair, interleaved  # noqa: E402
from models.vision.registry import DINOV2_VITS14  # noqa: E402
from models.vision.samples import sample_images  # noqa: E402
from tests.factories import image_bytes  # noqa: E402

MALLOC = {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "1048576"}  # as `make run`
MiB = 2**20


def payloads(photo: Image.Image, n: int, salt: int = 0) -> list[bytes]:
    """Distinct JPEG uploads (a corner block recoloured) so every call misses the analysis cache."""
    base = np.asarray(photo).copy()
    out = []
    for i in range(n):
        arr = base.copy()
        arr[:16, :16] = ((i + salt) * 37 % 256, (i + salt) * 91 % 256, (i * 13 + salt) % 256)
        out.append(image_bytes(Image.fromarray(arr), "JPEG", quality=92))
    return out


def clicked_ms(analysis, repeats: int) -> float:
    """Median server time of the clicked-patch view (app.services.vision.patch_rows_map), distinct patches."""
    from app.services.vision import patch_rows_map

    P = analysis.grid[0] * analysis.grid[1]
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        patch_rows_map(analysis, (i * 7919) % P)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:]) * 1e3


def measure(client, state, res: int, repeats: int, baseline: bool) -> dict:
    from app.state import MB, analysis_nbytes
    from models.vision import views
    from models.vision.analysis import analyze_image

    vm = state.vision_store.get(DINOV2_VITS14.id)
    photo = sample_images()["astronaut"].convert("RGB")
    x, _ = vm.prepare(photo, res)
    plain, captured = forward_pair(vm.model, x).values()
    uploads, sizes, ids = iter(payloads(photo, repeats + 2, salt=res)), [], []

    def server() -> None:
        r = client.post(
            "/api/vision/analyze",
            files={"image": ("photo.jpg", next(uploads), "image/jpeg")},
            data={"resolution": str(res)},
        )
        r.raise_for_status()
        sizes.append(len(r.content))
        ids.append(r.json()["analysis_id"])

    # The bare forwards run on the server's compute thread too (torch's intra-op pool belongs to the thread).
    t = interleaved(
        {
            "plain": lambda: state.queue.run_sync(plain),
            "capture": lambda: state.queue.run_sync(captured),
            "server": server,
        },
        repeats,
        vm.device,
        warmup=1,
    )
    stored = state.analyses.get(ids[-1])
    out = {
        "plain_ms": t["plain"] * 1e3,
        "capture_ms": t["capture"] * 1e3,
        "server_ms": t["server"] * 1e3,
        "response_bytes": int(np.median(sizes)),
        "compact": stored.compact,
        "click_ms": clicked_ms(stored, 9),
        "analysis_mb": analysis_nbytes(stored) / MiB,
        "cache_holds": state.analyses.max_bytes // analysis_nbytes(stored),
    }
    for name, fn in (("rollout_opts_ms", views.rollout), ("entropy_ms", views.patch_entropy)):
        t0 = time.perf_counter()
        state.queue.run_sync(lambda fn=fn: fn(stored, "max", 0.5) if fn is views.rollout else fn(stored))
        out[name] = (time.perf_counter() - t0) * 1e3
    t0 = time.perf_counter()
    r = client.get(f"/api/vision/analysis/{ids[-1]}/patch", params={"query": 3})
    out["click_http_ms"] = (time.perf_counter() - t0) * 1e3
    out["click_http_bytes"] = len(r.content)
    if baseline:  # today's storage: the full float16 maps
        full = state.queue.run_sync(lambda: analyze_image(vm, photo, res, keep_maps=True))
        out["full_click_ms"] = clicked_ms(full, 9)
        today = full.attentions.numel() * 2 + full.cls_attention.nbytes + 3 * res**2  # main's analysis_nbytes
        out["full_mb"] = today / MiB
        out["full_cache_holds"] = state.analyses.max_bytes // today
        del full
    out["cache_mb"] = state.analyses.max_bytes / MB
    return out


def rss_child(res: int, full: bool) -> None:
    """In a fresh process: idle server RSS, then the peak (VmHWM, reset first) of one analyze at ``res``."""
    from fastapi.testclient import TestClient

    import models.vision.analysis as analysis_module
    from app.main import create_app
    from app.settings import Settings

    if full:
        analysis_module.FULL_MAPS_MAX_BYTES = 1 << 62
    app = create_app(Settings(device="cpu", cache_dir=Path(".cache")))
    photo = sample_images()["astronaut"].convert("RGB")
    data = payloads(photo, 2, salt=7)
    with TestClient(app, base_url="http://localhost") as client:
        client.post("/api/vision/analyze", data={"sample": "chelsea", "resolution": "224"}).raise_for_status()

        def status(key: str) -> int:
            line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(key))
            return int(line.split()[1]) * 1024

        time.sleep(0.5)
        idle = status("VmRSS:")
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        r = client.post(
            "/api/vision/analyze",
            files={"image": ("p.jpg", data[0], "image/jpeg")},
            data={"resolution": str(res)},
        )
        r.raise_for_status()
        print(json.dumps({"idle": idle, "peak": status("VmHWM:"), "after": status("VmRSS:")}))


def rss(res: int, full: bool) -> dict:
    env = {**os.environ, **MALLOC, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    args = [sys.executable, __file__, "--rss-child", str(res)] + (["--full"] if full else [])
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def table(rows: list[tuple[str, list[str]]], resolutions: list[int]) -> None:
    print(f"{'':46s}" + "".join(f"{str(r) + ' px':>14s}" for r in resolutions))
    for name, cells in rows:
        print(f"{name:46s}" + "".join(f"{c:>14s}" for c in cells))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolutions", default="224,448,518")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--browser", action="store_true", help="also first paint in headless Chromium")
    ap.add_argument("--no-baseline", action="store_true", help="skip today's full-maps storage")
    ap.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--full", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rss_child:
        return rss_child(args.rss_child, args.full)
    resolutions = [int(r) for r in args.resolutions.split(",")]

    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.settings import Settings

    app = create_app(Settings(device="cpu", cache_dir=Path(".cache")))
    with TestClient(app, base_url="http://localhost") as client:
        state = app.state.atlas
        m = {res: measure(client, state, res, args.repeats, not args.no_baseline) for res in resolutions}
    for res in resolutions:
        m[res]["rss"] = rss(res, full=False)
        if not args.no_baseline:
            m[res]["full_rss"] = rss(res, full=True)
    paint = {}
    if args.browser:
        from app.settings import Settings as S
        from bench.vision_paint import run
        from tests.conftest import serve

        with serve(S(device="cpu", cache_dir=Path(".cache"), allowed_hosts=["127.0.0.1"])) as url:
            paint = run(url, resolutions)
    report(m, paint, resolutions, args)


def report(m: dict, paint: dict, resolutions: list[int], args) -> None:
    def col(fmt, key, src=m):
        return [fmt(src[r][key]) if key in src[r] else "-" for r in resolutions]

    def gb(key):
        return [
            f"{(m[r][key]['peak'] - m[r][key]['idle']) / 1e9:.2f} GB" if key in m[r] else "-"
            for r in resolutions
        ]

    print(
        f"device: CPU, threads: {torch.get_num_threads()}, {os.cpu_count()} cores; load average "
        f"{os.getloadavg()[0]:.1f}; model dinov2_vits14; {args.repeats} interleaved repeats, medians"
    )
    rows = [
        ("plain forward (fused attention) ms", col("{:.0f}".format, "plain_ms")),
        ("forward with attention capture ms", col("{:.0f}".format, "capture_ms")),
        ("POST /api/vision/analyze ms", col("{:.0f}".format, "server_ms")),
        (
            "capture overhead (x plain)",
            [f"{m[r]['capture_ms'] / m[r]['plain_ms']:.2f}x" for r in resolutions],
        ),
        (
            "server overhead (x plain; target <= 1.3x)",
            [f"{m[r]['server_ms'] / m[r]['plain_ms']:.2f}x" for r in resolutions],
        ),
        ("analyze response bytes (goal <= 1 MB)", col("{:,}".format, "response_bytes")),
        ("stored as", ["compact" if m[r]["compact"] else "full maps" for r in resolutions]),
        ("clicked patch, all heads, server ms (<= 100)", col("{:.1f}".format, "click_ms")),
        ("  same over HTTP, ms", col("{:.0f}".format, "click_http_ms")),
        ("  its response bytes", col("{:,}".format, "click_http_bytes")),
        ("  today (full float16 maps), server ms", col("{:.1f}".format, "full_click_ms")),
        ("rollout with options (max, 50 %), lazy, ms", col("{:.0f}".format, "rollout_opts_ms")),
        ("entropy of every row, every layer, ms", col("{:.0f}".format, "entropy_ms")),
        ("MiB per cached analysis", col("{:.1f}".format, "analysis_mb")),
        ("  today (full maps)", col("{:.1f}".format, "full_mb")),
        (f"default cache ({m[resolutions[0]]['cache_mb']:.0f} MB) holds", col("{:d}".format, "cache_holds")),
        ("  today (full maps)", col("{:d}".format, "full_cache_holds")),
        ("peak RSS of one analysis above idle (<= 0.5)", gb("rss")),
        ("  today (full maps)", gb("full_rss")),
    ]
    if paint:
        rows += [
            ("first paint after the response, ms (<= 2000)", [f"{paint[r][0]:.0f}" for r in resolutions]),
            ("clicked patch drawn after the click, ms", [f"{paint[r][1]:.0f}" for r in resolutions]),
        ]
    table(rows, resolutions)


if __name__ == "__main__":
    main()
