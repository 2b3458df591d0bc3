"""Vision benchmark: capture overhead and server overhead, measured side by side in one run.

Prints, for the default model (DINOv2 ViT-S/14 at 224 px unless --model says otherwise):
- forward with attention capture vs plain timm forward (fused attention), as a ratio (target <= 1.25x on CPU);
- server latency of POST /api/vision/analyze (in-process ASGI client, new image each call so nothing is
  cached) vs the bare forward, as a ratio (target <= 1.3x on CPU), and the response size in bytes.

    python bench/vision.py [--device auto|cpu|cuda] [--dtype float32|float16|bfloat16] [--repeats 15]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import forward_pair, interleaved  # noqa: E402
from models.vision.registry import DINOV2_VITS14  # noqa: E402
from models.vision.samples import sample_images  # noqa: E402
from tests.factories import image_bytes  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--cache-dir", default=".cache")
    args = ap.parse_args(argv)

    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.settings import Settings

    settings = Settings(device=args.device, dtype=args.dtype, cache_dir=Path(args.cache_dir))
    app = create_app(settings)
    with TestClient(app, base_url="http://localhost") as client:
        state = app.state.atlas
        vm = state.vision_store.get(DINOV2_VITS14.id)
        device = vm.device
        photo = sample_images()["astronaut"].convert("RGB")
        x, _ = vm.prepare(photo, args.resolution)
        model = vm.model

        plain, captured = forward_pair(model, x).values()

        # Distinct JPEG uploads (a corner block recoloured) so every call misses the analysis cache; encoded
        # up front so the client's encoding is not timed.
        base = np.asarray(photo).copy()
        payloads = []
        for i in range(args.repeats + 4):
            arr = base.copy()
            arr[:16, :16] = (i * 37 % 256, i * 91 % 256, i * 13 % 256)
            payloads.append(image_bytes(Image.fromarray(arr), "JPEG", quality=92))
        uploads = iter(payloads)
        sizes: list[int] = []

        def server() -> None:
            r = client.post(
                "/api/vision/analyze",
                files={"image": ("photo.jpg", next(uploads), "image/jpeg")},
                data={"resolution": str(args.resolution)},
            )
            r.raise_for_status()
            assert not r.json()["cached"], "benchmark uploads must miss the cache"
            sizes.append(len(r.content))

        # The bare forwards run on the server's compute thread too: torch's intra-op thread pool belongs to
        # the calling thread, and two pools taking turns on the same cores would slow whichever ran second.
        t = interleaved(
            {
                "plain": lambda: state.queue.run_sync(plain),
                "capture": lambda: state.queue.run_sync(captured),
                "server": server,
            },
            args.repeats,
            device,
        )

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {device} ({name}), dtype: {vm.dtype}, threads: {torch.get_num_threads()}")
    print(
        f"model: {vm.info.id} ({vm.info.arch_tag}), input {args.resolution}x{args.resolution}, "
        f"{args.repeats} interleaved repeats, medians"
    )
    print(f"plain forward (fused attention):   {t['plain'] * 1e3:8.2f} ms")
    print(f"forward with attention capture:    {t['capture'] * 1e3:8.2f} ms")
    print(f"POST /api/vision/analyze:          {t['server'] * 1e3:8.2f} ms")
    print(f"capture overhead: {t['capture'] / t['plain']:.3f}x  (target <= 1.25x on CPU)")
    print(f"server overhead:  {t['server'] / t['plain']:.3f}x  (target <= 1.3x on CPU)")
    print(f"response bytes:   {int(np.median(sizes)):,}")


if __name__ == "__main__":
    main()
