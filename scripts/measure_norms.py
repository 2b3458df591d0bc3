"""Measure token norms and sink mass of DINOv2 ViT-S/14 on the eight sample photos (issue 16, item 3).

    .venv/bin/python scripts/measure_norms.py [--res 224 448 518] [--out docs/data/norms_dinov2_vits14.json]

For each resolution and photo: per layer, the max/median patch-token norm, the outliers by the rule of
models/vision/norms.py (median + k * MAD), and the mean over heads of the sink mass on [CLS] / registers /
outliers. The vision page's norms tab quotes the JSON this writes (what was measured, not a paper's claim).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from models.vision.analysis import analyze_image, load_vision_model
from models.vision.norms import MAD_K, norm_stats, sink_mass
from models.vision.registry import DINOV2_VITS14
from models.vision.samples import sample_images


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--res", type=int, nargs="+", default=[224, 448, 518])
    ap.add_argument("--k", type=float, default=MAD_K)
    ap.add_argument("--out", default="docs/data/norms_dinov2_vits14.json")
    args = ap.parse_args()
    spec = dataclasses.replace(DINOV2_VITS14, resolutions=tuple(args.res))
    vm = load_vision_model(spec, cache_dir=Path(".cache"))
    photos = sample_images()
    out: dict = {
        "model": spec.id,
        "k": args.k,
        "rule": "norm > median + k * MAD (raw MAD), per layer",
        "runs": {},
    }
    for res in args.res:
        per: dict = {}
        for name, image in photos.items():
            t0 = time.perf_counter()
            try:
                a = analyze_image(vm, image, res)
            except Exception as e:  # noqa: BLE001 - report what the model refused
                per[name] = {"error": f"{type(e).__name__}: {e}"}
                continue
            st = norm_stats(a.token_norms, a.num_prefix_tokens, args.k)
            sinks = sink_mass(a.attentions, a.num_prefix_tokens, a.has_cls, st.outliers)  # (L, H, 3)
            per[name] = {
                "max_over_median": [round(float(x), 4) for x in st.max_ratio],
                "outliers": [int(x) for x in st.counts],
                "cls_norm_over_median": [
                    round(float(c / m), 4) for c, m in zip(st.prefix_norms[:, 0], st.median, strict=True)
                ],
                "sink_mass_mean_over_heads": np.round(sinks.mean(1), 4).tolist(),  # (L, 3)
                "seconds": round(time.perf_counter() - t0, 2),
            }
            del a
            print(res, name, max(per[name]["max_over_median"]), sum(per[name]["outliers"]), flush=True)
        out["runs"][str(res)] = per
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    torch.set_num_threads(2)
    raise SystemExit(main())
