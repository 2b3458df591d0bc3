"""The GPU path in one run (issue 9 §3): ratios side by side, correctness checks that fail the run.

For each model (the default DINOv2 ViT-S/14 and a random-init ViT-B/16), measured in the same process:

1. capture vs fused forward at batch 1: forward_features with attention capture (manual attention, hooks)
   vs timm's fused path (F.scaled_dot_product_attention), median of interleaved repeats (target <= 1.15x);
2. POST /api/vision/analyze p50 latency, one client, a new image per call (nothing cached), the app's
   default settings for the device (batching auto) (target <= 25 ms);
3. throughput under 64 concurrent clients, batching off vs on, the same images (target batched >= 5x);
4. dataset mean attention distance (capture + DistanceAccumulator) vs the fused forward alone, batch 64,
   bfloat16, as throughput (target >= 0.8x).

Correctness (any failure -> exit 1): batched analyses equal unbatched ones (library and through the app),
capture's features equal the fused forward's, the bfloat16 dataset distance equals the float32 one, and
every request of the load runs answers 200. Tolerances are the dtype's rounding x a stated margin (see
``TOL``); missed speed targets are reported (MISSED), they do not fail the run.

The clients are in-process (httpx over ASGITransport on the app's own event loop): no sockets, and the
clients' own cost is in the numbers, the same for both sides of each ratio.

    python bench/gpu_bench.py --device cuda          # on the GPU (bench/gpu_check.sh runs this)
    python bench/gpu_bench.py --tiny                 # tiny random models on the CPU: the script works
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import forward_pair, interleaved, sync  # noqa: E402
from models.vision.analysis import (  # noqa: E402
    VisionModel,
    analyze_image,
    analyze_images,
    load_vision_model,
)
from models.vision.capture import capture_attention  # noqa: E402
from models.vision.distance import DistanceAccumulator  # noqa: E402
from models.vision.registry import DINOV2_VITS14, VisionModelSpec  # noqa: E402
from tests.factories import image_bytes, random_vit, tiny_vit_spec  # noqa: E402

VIT_B16 = VisionModelSpec(
    id="vit_b16_random",
    arch_tag="vit_base_patch16_224.augreg2_in21k_ft_in1k",
    source="random",
    label="ViT-B/16, random init (benchmark)",
)
TINY = [
    tiny_vit_spec(label="Tiny random ViT (self-test)"),  # the tests' tiny ViT (tests/factories.py)
    random_vit(
        VisionModelSpec,
        "tiny_vit_b16_shape",
        "Tiny random ViT-B/16-shaped (self-test)",
        "vit_base_patch16_224.random",
        **dict(img_size=64, patch_size=16, embed_dim=48, depth=2, num_heads=3, num_classes=10),
    ),
]

# Relative tolerance (x the largest value) per comparison: rounding level x margin.
# - float32 on the CPU: 2^-23 x 16 (three layers of accumulated rounding; batched GEMMs block differently);
# - float32 on CUDA: cuDNN convolutions (the patch embedding) use TF32 by default, 2^-11 x 8;
# - the float16 attention cache: one float16 spacing, 2^-10, on top;
# - bfloat16 model vs float32: 2^-8 x 4 (tests/models/test_half_precision.py measured 1.7 on tiny models).
EPS16_CACHE = 2.0**-10


def tol_fp32(device: torch.device) -> float:
    return 16 * 2.0**-23 if device.type == "cpu" else 8 * 2.0**-11


TOL_BF16 = 4 * 2.0**-8


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> None:
        self.lines.append(f"  [{'ok' if ok else 'FAIL'}] {what}")
        print(self.lines[-1], flush=True)
        if not ok:
            self.failures.append(what)


def rel(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    a = np.asarray(a.float().cpu() if isinstance(a, torch.Tensor) else a, dtype=np.float64)
    b = np.asarray(b.float().cpu() if isinstance(b, torch.Tensor) else b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def photos(n: int, size: int = 256) -> list[Image.Image]:
    """n distinct photos: the sample photos with a recoloured corner block (so every one misses the caches)."""
    from models.vision.samples import sample_images

    base = [np.asarray(im.convert("RGB").resize((size, size))) for im in sample_images().values()]
    out = []
    for i in range(n):
        arr = base[i % len(base)].copy()
        arr[:16, :16] = (i * 37 % 256, i * 91 % 256, i * 13 % 256)
        arr[16:32, :16] = (i // 256 * 53 % 256, i * 7 % 256, 255 - i % 256)
        out.append(Image.fromarray(arr))
    return out


def jpeg(image: Image.Image) -> bytes:
    return image_bytes(image, "JPEG", quality=92)


# ----------------------------------------------------------------------------------------------------------
# 1. capture vs fused, and the library-level correctness checks


def forward_checks(vm: VisionModel, report: Report, repeats: int) -> dict:
    res = vm.info.default_resolution
    imgs = photos(4)
    x, _ = vm.prepare(imgs[0], res)  # (1, 3, R, R)
    model = vm.model
    tol = tol_fp32(vm.device)

    with torch.inference_mode():
        fused = model.forward_features(x)
        with capture_attention(model) as rec:
            manual = model.forward_features(x)
    report.check(
        rel(manual, fused) <= tol * 8,
        f"capture's features = fused forward's (rel {rel(manual, fused):.1e} <= {tol * 8:.1e})",
    )
    report.check(len(rec.maps) == vm.info.num_layers, f"capture recorded {len(rec.maps)} blocks")

    batched = analyze_images(vm, imgs, res, keep_maps=True)  # full maps: compared map for map
    worst = 0.0
    for image, a in zip(imgs, batched, strict=True):
        b = analyze_image(vm, image, res, keep_maps=True)
        worst = max(worst, rel(a.attentions, b.attentions) - EPS16_CACHE, rel(a.rollout, b.rollout))
        worst = max(worst, rel(a.cls_attention, b.cls_attention))
    report.check(
        worst <= tol, f"analyze_images (batch 4) = analyze_image each (rel {worst:.1e} <= {tol:.1e})"
    )

    t = interleaved(forward_pair(model, x), repeats, vm.device)
    return {
        "fused_ms": t["plain"] * 1e3,
        "capture_ms": t["capture"] * 1e3,
        "capture_x": t["capture"] / t["plain"],
    }


# ----------------------------------------------------------------------------------------------------------
# 4. dataset mean attention distance vs the fused forward, batch B, bfloat16


def dataset_check(vm32: VisionModel, report: Report, batch: int, repeats: int) -> dict:
    dtype = torch.bfloat16
    vm = VisionModel(vm32.spec, vm32.info, copy.deepcopy(vm32.model).to(dtype), vm32.device, dtype)
    res = vm.info.default_resolution
    grid = vm.info.grid(res, res)
    imgs = photos(min(batch, 16))
    x32 = torch.cat([vm32.preprocess(im, res)[0] for im in imgs])  # (b, 3, R, R) float32 on the CPU
    x32 = x32.repeat((batch + len(imgs) - 1) // len(imgs), 1, 1, 1)[:batch].to(vm.device)  # (B, 3, R, R)
    x = x32.to(dtype)

    def mad(model: torch.nn.Module, inputs: torch.Tensor) -> DistanceAccumulator:
        acc = DistanceAccumulator(grid, vm.info.num_prefix_tokens, vm.info.patch_size)
        with torch.inference_mode(), capture_attention(model, reduce=acc.update):
            model.forward_features(inputs)
        return acc

    got, ref = mad(vm.model, x).result(), mad(vm32.model, x32).result()  # (L, H)
    report.check(
        rel(got, ref) <= TOL_BF16,
        f"dataset distance bf16 = fp32 at batch {batch} (rel {rel(got, ref):.1e} <= {TOL_BF16:.1e})",
    )

    def plain() -> None:
        with torch.inference_mode():
            vm.model.forward_features(x)

    t = interleaved({"plain": plain, "mad": lambda: mad(vm.model, x)}, repeats, vm.device, warmup=1)
    return {
        "fused_img_s": batch / t["plain"],
        "mad_img_s": batch / t["mad"],
        "mad_x": t["plain"] / t["mad"],  # throughput ratio: MAD / fused
    }


# ----------------------------------------------------------------------------------------------------------
# 2-3. the app: p50 latency, and throughput under concurrent clients with and without batching


def make_app(
    spec: VisionModelSpec, device: str, cache_dir: Path, batching: str, queue_size: int, max_batch: int
):
    from app.main import create_app
    from app.settings import Settings

    settings = Settings(
        device=device,
        cache_dir=cache_dir,
        preload=False,
        vision_models=[spec],
        default_vision_model=spec.id,
        batching=batching,
        batch_max_size=max_batch,
        queue_size=queue_size,
        queue_mb=4096,
        cpu_pool_size=4 * queue_size,
        analysis_cache_mb=4096,
    )
    return create_app(settings)


async def serve(app, fn):
    """Run ``fn(client)`` against ``app`` (lifespan included) with an in-process httpx client."""
    import httpx

    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=300) as c:
            return await fn(c)


async def post(client, data: bytes):
    return await client.post("/api/vision/analyze", files={"image": ("p.jpg", data, "image/jpeg")})


def latency_p50(app, uploads: list[bytes], device: torch.device) -> tuple[float, list]:
    async def run(client):
        first = await post(client, uploads[0])  # loads the model, warms up
        times, bodies = [], [first.json()]
        for data in uploads[1:]:
            sync(device)
            t0 = time.perf_counter()
            r = await post(client, data)
            times.append(time.perf_counter() - t0)
            bodies.append(r.json() if r.status_code == 200 else {"status": r.status_code})
        return statistics.median(times) * 1e3, bodies

    return asyncio.run(serve(app, run))


def throughput(app, uploads: list[bytes], clients: int) -> tuple[float, list[int], dict, list[int]]:
    """req/s with ``clients`` concurrent clients posting ``uploads`` (split among them); statuses; the
    bodies by upload index; the batch sizes the app ran."""

    async def run(client):
        warm = await post(client, jpeg(photos(1, 64)[0]))  # model load and first forward, not timed
        assert warm.status_code == 200, warm.text
        statuses: list[int] = []
        bodies: dict[int, dict] = {}

        async def one_client(k: int) -> None:
            for i in range(k, len(uploads), clients):
                r = await post(client, uploads[i])
                statuses.append(r.status_code)
                if r.status_code == 200:
                    bodies[i] = r.json()

        t0 = time.perf_counter()
        await asyncio.gather(*(one_client(k) for k in range(clients)))
        elapsed = time.perf_counter() - t0
        batcher = app.state.atlas.backend.batcher
        sizes = list(batcher.batch_sizes)[1:] if batcher is not None else []  # [0]: the warm-up
        return len(uploads) / elapsed, statuses, bodies, sizes

    return asyncio.run(serve(app, run))


def app_checks(spec, args, report: Report, device: torch.device) -> dict:
    n_latency = args.repeats + 1
    lat_app = make_app(spec, args.device, args.cache_dir, "auto", max(32, args.clients), args.max_batch)
    p50, _ = latency_p50(lat_app, [jpeg(p) for p in photos(n_latency)], device)

    n_load = args.clients * args.per_client
    uploads = [jpeg(p) for p in photos(n_load + n_latency)[n_latency:]]
    result = {"p50_ms": p50}
    runs = {}
    for mode in ("off", "on"):
        app = make_app(spec, args.device, args.cache_dir, mode, 2 * args.clients, args.max_batch)
        rps, statuses, bodies, sizes = throughput(app, uploads, args.clients)
        bad = [s for s in statuses if s != 200]
        report.check(not bad, f"load run, batching {mode}: {len(statuses)} requests, non-200: {len(bad)}")
        runs[mode] = bodies
        result[f"rps_{mode}"] = rps
        if mode == "on":
            result["mean_batch"] = float(np.mean(sizes)) if sizes else 0.0
    result["batched_x"] = result["rps_on"] / result["rps_off"]

    from app.serialization import decode_typed_array

    worst = 0.0
    for i, body in runs["on"].items():
        if i in runs["off"]:
            for key in ("cls_attention", "rollout"):
                worst = max(
                    worst, rel(decode_typed_array(body[key]), decode_typed_array(runs["off"][i][key]))
                )
    tol = tol_fp32(device)
    report.check(worst <= tol, f"app answers, batched = unbatched (rel {worst:.1e} <= {tol:.1e})")
    return result


# ----------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tiny", action="store_true", help="tiny random models, few requests (CPU self-test)")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--per-client", type=int, default=4, help="requests each client sends in a load run")
    ap.add_argument("--batch", type=int, default=64, help="dataset-distance batch size")
    ap.add_argument("--max-batch", type=int, default=32, help="the app's batch_max_size in the load runs")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--cache-dir", type=Path, default=Path(".cache"))
    args = ap.parse_args(argv)
    if args.tiny:
        specs = TINY
        args.clients, args.per_client, args.batch, args.repeats = 8, 2, 8, 3
        args.max_batch = min(args.max_batch, 8)
    else:
        specs = [DINOV2_VITS14, VIT_B16]
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("CUDA was requested but torch sees no GPU")
        return 1
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    report = Report()
    for spec in specs:
        print(f"== {spec.id}", flush=True)
        vm = load_vision_model(spec, device, torch.float32, args.cache_dir)
        row = {"model": spec.id, "res": vm.info.default_resolution}
        row |= forward_checks(vm, report, args.repeats)
        row |= dataset_check(vm, report, args.batch, max(3, args.repeats // 3))
        del vm
        row |= app_checks(spec, args, report, device)
        report.rows.append(row)
        print(
            "  " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
        )

    def mark(ok: bool) -> str:
        return "met" if ok else "MISSED"

    print()
    print(
        f"{'model':<22} {'capture/fused b1':>17} {'analyze p50':>12} {'batched/unbatched':>18} {'MAD/fused b' + str(args.batch) + ' bf16':>20}"
    )
    for r in report.rows:
        print(
            f"{r['model']:<22} {r['capture_x']:>16.3f}x {r['p50_ms']:>10.1f}ms {r['batched_x']:>17.2f}x "
            f"{r['mad_x']:>19.3f}x"
        )
        print(
            f"{'  target':<22} {'<= 1.15x ' + mark(r['capture_x'] <= 1.15):>17} "
            f"{'<= 25ms ' + mark(r['p50_ms'] <= 25):>12} {'>= 5x ' + mark(r['batched_x'] >= 5):>18} "
            f"{'>= 0.8x ' + mark(r['mad_x'] >= 0.8):>20}"
        )
        print(
            f"{'  measured':<22} fused {r['fused_ms']:.2f} ms, capture {r['capture_ms']:.2f} ms; "
            f"{args.clients} clients: {r['rps_off']:.1f} req/s unbatched, {r['rps_on']:.1f} req/s batched "
            f"(mean batch {r['mean_batch']:.1f}); fused {r['fused_img_s']:.3g} img/s, MAD {r['mad_img_s']:.3g} img/s"
        )
    if report.failures:
        print(f"GPU BENCH: {len(report.failures)} correctness failure(s):")
        for f in report.failures:
            print(f"  - {f}")
        return 1
    print("GPU BENCH: correctness OK")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
