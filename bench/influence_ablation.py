"""Head-ablation sweep cost (issue 15, item 3): the head-importance map of each shipped model, timed against
one intact run over the same evaluation set, side by side in one process.

``ablation_rows(device, repeats)`` returns rows ``(model, what, baseline ms, measured ms, ratio)`` in the
format of ``bench/influence.py``'s ``MEASURES`` (add it there: ``MEASURES.append(ablation_rows)``); run alone
it prints them. Baseline: one evaluation-set run of the intact model (median of ``repeats``); measured: the
whole sweep (one run per head plus the intact one, :func:`models.influence.importance.head_importance`),
once. The ratio is about (number of heads + 1) when hooks cost nothing.

Evaluation sets: the date model on its 104 examples (hand-written + 64 held-out), all-MiniLM-L6-v2 on the
20 bundled pairs, DINOv2 ViT-S/14 on the 8 sample photos at 224 px.

    .venv/bin/python bench/influence_ablation.py --device cpu --repeats 3 [--models dates,minilm,dinov2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import sync  # noqa: E402

Row = tuple[str, str, float, float, float]


def _measured(name: str, device: torch.device):
    """(label, Measured, n heads) for one shipped model on ``device``."""
    from models.influence.ablation import all_heads
    from models.influence.ablation_run import vision_inputs
    from models.influence.importance import (
        date_eval_set,
        date_measure,
        pair_measure,
        sentence_pairs,
        vision_measure,
    )
    from models.text.analysis import DATES, MINILM, load_text_model

    if name == "dinov2":
        from models.vision.analysis import load_vision_model
        from models.vision.registry import DINOV2_VITS14
        from models.vision.samples import sample_images

        vm = load_vision_model(DINOV2_VITS14, device, cache_dir=Path(".cache"))
        x = vision_inputs(vm, list(sample_images().values()), 224)  # (8, 3, 224, 224)
        m = vision_measure(vm.model, x, vm.info.num_prefix_tokens, vm.info.has_cls_token)
        return f"{vm.info.id} (8 photos @ 224 px)", m, len(all_heads(vm.model))
    spec = DATES if name == "dates" else MINILM
    tm = load_text_model(spec, device)
    if name == "dates":
        rows = date_eval_set()
        return (
            f"{spec.id} ({len(rows)} dates)",
            date_measure(tm.model, tm.tokenizer, rows),
            len(all_heads(tm.model)),
        )
    pairs = [(a, b) for a, b, _ in sentence_pairs()]
    return (
        f"{spec.id} ({len(pairs)} pairs)",
        pair_measure(tm.model, tm.tokenizer, pairs),
        len(all_heads(tm.model)),
    )


def ablation_rows(
    device: torch.device, repeats: int, models: tuple[str, ...] = ("dates", "minilm", "dinov2")
) -> list[Row]:
    from models.influence.importance import head_importance

    rows: list[Row] = []
    for name in models:
        label, m, n_heads = _measured(name, device)
        with torch.inference_mode():
            m.measure([])  # warm-up
            sync(device)
            times = []
            for _ in range(max(1, repeats)):
                t0 = time.perf_counter()
                m.measure([])
                sync(device)
                times.append(time.perf_counter() - t0)
        intact = statistics.median(times)
        t0 = time.perf_counter()
        head_importance(m, "zero")
        sync(device)
        sweep = time.perf_counter() - t0
        rows.append(
            (label, f"importance sweep ({n_heads} heads + intact)", intact * 1e3, sweep * 1e3, sweep / intact)
        )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--models", default="dates,minilm,dinov2", help="comma-separated: dates, minilm, dinov2")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, torch threads {torch.get_num_threads()}")
    print(f"{'model':44} {'what':34} {'intact ms':>10} {'sweep ms':>11} {'ratio':>7}")
    for row in ablation_rows(device, args.repeats, tuple(args.models.split(","))):
        model, what, base, meas, ratio = row
        print(f"{model:44} {what:34} {base:10.1f} {meas:11.1f} {ratio:7.1f}", flush=True)


if __name__ == "__main__":
    main()
