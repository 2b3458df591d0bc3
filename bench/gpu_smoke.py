"""Correctness on an accelerator, in one short run (called by bench/gpu_check.sh; runs on CPU too).

- DINOv2 capture on the device (float32) equals the CPU capture (max abs diff on attention probabilities);
- bfloat16/float16 capture runs and stays close to float32;
- the app answers /api/vision/analyze and /api/text/analyze with ATLAS_DEVICE set to the device, through
  the batched vision path on CUDA (settings.batching.mode "auto");
- dataset mean attention distance on the device equals the CPU result.

    python bench/gpu_smoke.py [--device cuda]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.vision.analysis import load_vision_model  # noqa: E402
from models.vision.capture import capture_attention  # noqa: E402
from models.vision.distance import dataset_mean_attention_distance  # noqa: E402
from models.vision.registry import DINOV2_VITS14  # noqa: E402
from models.vision.samples import sample_images  # noqa: E402


def captured(vm, x) -> list[torch.Tensor]:
    with torch.inference_mode(), capture_attention(vm.model) as rec:
        vm.model.forward_features(x)
    return [m.float().cpu() for m in rec.maps]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--cache-dir", default=".cache")
    args = ap.parse_args()
    ok = True
    photos = sample_images()
    cpu = load_vision_model(DINOV2_VITS14, "cpu", torch.float32, args.cache_dir)
    x_cpu, _ = cpu.prepare(photos["astronaut"], 224)
    ref = captured(cpu, x_cpu)
    dtypes = [torch.float32] + ([torch.bfloat16, torch.float16] if args.device == "cuda" else [])
    for dtype in dtypes:
        dev = load_vision_model(DINOV2_VITS14, args.device, dtype, args.cache_dir)
        x, _ = dev.prepare(photos["astronaut"], 224)
        got = captured(dev, x)
        diff = max(float((a - b).abs().max()) for a, b in zip(got, ref, strict=True))
        limit = 1e-3 if dtype == torch.float32 else 5e-2
        ok &= diff <= limit
        print(f"capture {args.device} {dtype}: max |p - p_cpu| = {diff:.2e} (limit {limit:g})")

    dev = load_vision_model(DINOV2_VITS14, args.device, torch.float32, args.cache_dir)
    imgs = list(photos.values())[:4]
    mad_dev = dataset_mean_attention_distance(dev, imgs, batch_size=4).mad
    mad_cpu = dataset_mean_attention_distance(cpu, imgs, batch_size=4).mad
    diff = float(np.abs(mad_dev - mad_cpu).max())
    ok &= diff <= 0.05
    print(f"dataset MAD {args.device} vs cpu: max diff {diff:.2e} px (limit 0.05)")

    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.settings import Settings

    app = create_app(Settings(device=args.device, cache_dir=Path(args.cache_dir)))
    with TestClient(app, base_url="http://localhost") as client:
        health = client.get("/api/health").json()
        v = client.post("/api/vision/analyze", data={"sample": "chelsea"})
        t = client.post("/api/text/analyze", json={"text": "The quick brown fox jumps over the lazy dog."})
        s = client.post(
            "/api/text/analyze", json={"text": "Friday, March 18th, 2022", "model": "dates-seq2seq"}
        )
        print(
            f"app on {health['device']}: vision {v.status_code}, text {t.status_code}, seq2seq {s.status_code} "
            f"-> {s.json().get('generated_text') if s.status_code == 200 else s.text[:200]}"
        )
        ok &= v.status_code == t.status_code == s.status_code == 200
        ok &= health["device"].split(":")[0] == args.device.split(":")[0]  # no silent fallback to the CPU
        batcher = app.state.atlas.backend.batcher  # batching "auto": on for CUDA, off on the CPU
        print(f"batching: {'on, batch sizes ' + str(list(batcher.batch_sizes)) if batcher else 'off'}")
        ok &= (batcher is not None) == (args.device.split(":")[0] == "cuda")
    print("GPU SMOKE", "OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
