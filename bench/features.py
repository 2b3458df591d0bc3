"""Costs of the features and norms views (issue 16) on DINOv2 ViT-S/14, one sample photo, this machine's CPU.

    PYTHONPATH=. .venv/bin/python bench/features.py [--res 224 448] [--reps 3]

Prints, per resolution: the analysis forward with and without the residual-stream capture (models/vision/
hidden.py), the bytes the capture adds to an analysis, and the time of each view (PCA, similarity, K-means
parts, norms, sinks with rollout and distance without the sinks). Medians of ``--reps`` runs.
"""

from __future__ import annotations

import argparse
import dataclasses
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import torch

import models.vision.analysis as analysis_mod
from bench.common import median_ms
from models.vision import feature_views as fv
from models.vision.analysis import analyze_image, load_vision_model
from models.vision.registry import DINOV2_VITS14
from models.vision.samples import sample_images


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--res", type=int, nargs="+", default=[224, 448])
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    spec = dataclasses.replace(DINOV2_VITS14, resolutions=tuple(args.res))
    vm = load_vision_model(spec, cache_dir=Path(".cache"))
    image = sample_images()["chelsea"]
    print(f"torch threads {torch.get_num_threads()}; medians of {args.reps} runs, ms")
    for res in args.res:
        analyze_image(vm, image, res)  # warm-up
        with_ms = median_ms(lambda res=res: analyze_image(vm, image, res), args.reps)
        with mock.patch.object(analysis_mod, "capture_hidden", lambda m: nullcontext(_NoStream())):
            without_ms = median_ms(lambda res=res: analyze_image(vm, image, res), args.reps)
        a = analyze_image(vm, image, res)
        extra = a.hidden.numel() * 2 + a.features.numel() * 2 + a.token_norms.nbytes
        maps = a.attentions.numel() * 2
        views = {
            "pca": lambda a=a: fv.features_pca(a),
            "similarity": lambda a=a: fv.similarity(a, 40, 5),
            "parts k=6": lambda a=a: fv.parts([a], 6, 0),
            "norms": lambda a=a: fv.norms(a),
            "sinks": lambda a=a: fv.sinks(a, vm.info.patch_size),
        }
        timed = {k: median_ms(f, args.reps) for k, f in views.items()}
        print(
            f"{res} px: analyze {with_ms:.0f} with the stream capture, {without_ms:.0f} without "
            f"({with_ms / without_ms:.2f}x); the stream adds {extra / 1e6:.1f} MB to {maps / 1e6:.0f} MB of maps"
        )
        print("   views: " + ", ".join(f"{k} {v:.1f}" for k, v in timed.items()))
    return 0


class _NoStream:
    """Stands in for the capture record: nothing is hooked or copied (the baseline forward)."""

    def all_hidden(self):
        return torch.zeros(64, 1)

    def all_norms(self):
        return torch.zeros(64, 1)


if __name__ == "__main__":
    raise SystemExit(main())
