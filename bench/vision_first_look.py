"""What /vision opens on, measured: per layer, how compact DINOv2 ViT-S/14's head-mean [CLS] maps are on the
bundled sample photos, and how far the largest output patch norm stands above the median.

Score of a layer (models/vision/first_look.py, clustered_top_mass): the share of the head-mean [CLS] map's
mass (over the patches) held by its top 10% of patches that touch another top-10% patch. Uniform: ~0.10; one
compact blob: 1; isolated specks: 0. The page opens at the layer with the highest mean over the samples at
448 px (static/js/vision/firstlook.js holds the numbers; tests/models/test_first_look.py pins them).

    python bench/vision_first_look.py [--resolutions 224 448]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.vision.analysis import load_vision_model  # noqa: E402
from models.vision.first_look import measure  # noqa: E402
from models.vision.registry import DINOV2_VITS14  # noqa: E402
from models.vision.samples import sample_images  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--resolutions", type=int, nargs="+", default=[224, 448])
    ap.add_argument("--cache-dir", default=".cache")
    args = ap.parse_args(argv)
    vm = load_vision_model(DINOV2_VITS14, cache_dir=args.cache_dir)
    images = sample_images()
    for res in args.resolutions:
        m = measure(vm, images, res)
        layers = " ".join(f"L{i + 1:<4d}" for i in range(len(m["mean"])))
        print(f"\n{vm.info.label} at {res} px: clustered top-10% mass of the head-mean [CLS] map")
        print(f"{'photo':22s} {layers} | max/median patch norm")
        for name, s in m["scores"].items():
            print(f"{name:22s} " + " ".join(f"{x:.2f} " for x in s) + f" | {m['norm_ratios'][name]:.2f}")
        print(f"{'mean':22s} " + " ".join(f"{x:.2f} " for x in m["mean"]) + f" | best layer {m['layer'] + 1}")


if __name__ == "__main__":
    main()
