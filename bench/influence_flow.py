"""Influence benchmark (issue 15, items 2 and 4): ALTI contributions, one relevance map and its curves, on the
shipped models (DINOv2 ViT-S/14 at 224 px, all-MiniLM-L6-v2, the date model), with the plain capture forward
timed in the same run for scale. Goals on the 2-core CPU: one ViT-S relevance map <= 1 s, its curves <= 5 s.

(bench/influence.py belongs to the value-weighted work on another branch; this file covers contributions,
relevancy and curves and can be folded into it.)

    python bench/influence_flow.py [--repeats 3] [--steps 10] [--resolution 224]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import interleaved  # noqa: E402
from models.influence import run  # noqa: E402
from models.text.analysis import DATES, MINILM, load_text_model  # noqa: E402
from models.vision.analysis import analyze_image, load_vision_model  # noqa: E402
from models.vision.registry import DINOV2_VITS14  # noqa: E402
from models.vision.samples import sample_images  # noqa: E402

SENTENCE = "The cat sat on the mat because it was tired."
PAIR = "A tired cat is lying on a rug."


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time in seconds of ``fn()`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--cache-dir", default=".cache")
    ap.add_argument("--only", choices=("vision", "text"), help="one family only")
    args = ap.parse_args(argv)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU; load average {load} on {os.cpu_count()} cores"
    )
    rows: list[tuple[str, float, str]] = []

    if args.only != "text":
        vision_rows(args, rows)
    if args.only != "vision":
        text_rows(args, rows)
    width = max(len(n) for n, _, _ in rows)
    for name, sec, note in rows:
        print(f"{name:<{width}}  {sec * 1000:9.1f} ms  {note}")


def vision_rows(args: argparse.Namespace, rows: list) -> None:
    """Every DINOv2 measure and the plain forward, interleaved round by round (bench.common.interleaved), so
    a neighbour's load spike hits them all alike; medians."""
    vm = load_vision_model(DINOV2_VITS14, "cpu", cache_dir=args.cache_dir)
    image = next(iter(sample_images().values()))
    a = analyze_image(vm, image, args.resolution)
    x = run.vision_input(vm, a)
    rel = run.vision_relevance(vm, a)

    def plain() -> None:
        with torch.inference_mode():
            vm.model.forward_features(x)

    fns = {
        "DINOv2 plain forward (fused attention, for scale)": plain,
        "DINOv2 capture forward (the analysis)": lambda: analyze_image(vm, image, args.resolution),
        "DINOv2 ALTI contributions": lambda: run.vision_contributions(vm, a),
        "DINOv2 relevance map ([CLS])": lambda: run.vision_relevance(vm, a),
        f"DINOv2 curves (3 maps x 2 curves x {args.steps + 1} points)": lambda: run.vision_curves(
            vm, a, rel, args.steps
        ),
    }
    t = interleaved(fns, args.repeats, torch.device("cpu"), warmup=1)
    base = t[next(iter(fns))]
    goals = {"relevance": 1.0, "curves": 5.0}
    for name, sec in t.items():
        goal = next((g for k, g in goals.items() if k in name), None)
        note = f"{sec / base:.2f}x" + (
            "" if goal is None else f"; goal <= {goal:g} s " + ("MET" if sec <= goal else "MISSED")
        )
        rows.append((name, sec, note))


def text_rows(args: argparse.Namespace, rows: list) -> None:
    r = args.repeats
    tm = load_text_model(MINILM, "cpu")
    ta = tm.analyze(SENTENCE)
    rows.append(("MiniLM ALTI contributions", timed(lambda: run.text_contributions(tm, ta), r), ""))
    rows.append(("MiniLM relevance (pair cosine)", timed(lambda: run.text_relevance(tm, ta, PAIR), r), ""))
    trel = run.text_relevance(tm, ta, PAIR)
    rows.append(("MiniLM curves", timed(lambda: run.text_curves(tm, ta, trel, PAIR, args.steps), r), ""))

    dm = load_text_model(DATES, "cpu")
    da = dm.analyze("3rd of May, 1999")
    rows.append(
        ("date model ALTI contributions (encoder)", timed(lambda: run.text_contributions(dm, da), r), "")
    )
    rows.append(("date model relevance (1 char)", timed(lambda: run.text_relevance(dm, da, None, 0), r), ""))
    drel = run.text_relevance(dm, da, None, 0)
    rows.append(("date model curves", timed(lambda: run.text_curves(dm, da, drel, None, args.steps), r), ""))


if __name__ == "__main__":
    main()
