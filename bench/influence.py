"""Influence benchmark (issue 15): what the measurements beyond attention weights cost, on the shipped models,
each measured side by side with its baseline in one run.

The file is a list of measured functions (``MEASURES``): each takes (device, repeats) and returns rows
``(model, what, baseline ms, measured ms, ratio)``: value-weighted attention and the ablation sweep
(bench/influence_ablation.py). The relevance map, the deletion/insertion curves and ALTI follow in their own
table (bench/influence_flow.py), each against a plain forward in the same run.

- ``value_weighted``: value-weighted attention (Kobayashi et al. 2020, ``models/value_norms.py``). The pages
  need the (L, H, N) norms ‖f_h(x_j)‖ recorded by hooks in the forward that captures attention; the maps are
  multiplied in the browser. Baseline: the same analysis without the norm hooks (plain capture); measured:
  with them. Also the server's norms response (patch norms + prefix survival, a CPU-pool job) against the
  forward. Models: DINOv2 ViT-S/14 at 224 and 448 px, all-MiniLM-L6-v2 (a 128-token text), the date model.

    .venv/bin/python bench/influence.py --device cpu --repeats 10
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import interleaved as common_interleaved  # noqa: E402

Row = tuple[str, str, float, float, float]


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict:
    """bench.common's interleaved runs, the fastest run per name (seconds)."""
    return common_interleaved(fns, repeats, device, reduce=min)


def _vision_rows(device: torch.device, repeats: int) -> list[Row]:
    from models.vision.analysis import analyze_batch, load_vision_model
    from models.vision.registry import DINOV2_VITS14
    from models.vision.samples import sample_images

    vm = load_vision_model(DINOV2_VITS14, device)
    image = next(iter(sample_images().values()))
    rows = []
    for res in vm.info.resolutions:
        x, shown = vm.preprocess(image, res)
        t = interleaved(
            {
                "capture": lambda x=x, s=shown: analyze_batch(vm, x, [s], value_norms=False),
                "capture+norms": lambda x=x, s=shown: analyze_batch(vm, x, [s], value_norms=True),
            },
            repeats,
            device,
        )
        rows.append(_row(f"{vm.info.id} @ {res} px", "forward with norm hooks", t))
        rows.append(_response_row(vm, x, shown, res, t["capture"]))
    return rows


def _response_row(vm, x, shown, res, capture_s: float) -> Row:
    from app.services.value_norms import build_vision
    from models.vision.analysis import analyze_batch

    a = analyze_batch(vm, x, [shown])[0]
    t0 = time.perf_counter()
    build_vision("bench", a)
    s = time.perf_counter() - t0
    return (f"{vm.info.id} @ {res} px", "norms response (CPU pool)", capture_s * 1e3, s * 1e3, s / capture_s)


def _text_rows(device: torch.device, repeats: int) -> list[Row]:
    from bench.text_long import text_with_tokens
    from models.text.analysis import DATES, MINILM, load_text_model

    rows = []
    for spec, make in (
        (MINILM, lambda m: (text_with_tokens(m, 128), None)),
        (DATES, lambda m: ("3 March 2021", "2021-03-03")),
    ):
        tm = load_text_model(spec, device)
        text, target = make(tm)
        sites = tm.value_sites

        def plain(tm=tm, text=text, target=target, sites=sites) -> None:
            tm.value_sites = []
            try:
                tm.analyze(text, target)
            finally:
                tm.value_sites = sites

        t = interleaved(
            {
                "capture": plain,
                "capture+norms": lambda tm=tm, text=text, target=target: tm.analyze(text, target),
            },
            repeats,
            device,
        )
        rows.append(_row(f"{spec.id} ({len(tm.tokenize(text))} tokens)", "analysis with norm hooks", t))
    return rows


def _row(model: str, what: str, t: dict) -> Row:
    return (model, what, t["capture"] * 1e3, t["capture+norms"] * 1e3, t["capture+norms"] / t["capture"])


def value_weighted(device: torch.device, repeats: int) -> list[Row]:
    """Value-weighted attention's cost against plain capture, per shipped model (module docstring)."""
    return _vision_rows(device, repeats) + _text_rows(device, repeats)


def ablation_sweep(device: torch.device, repeats: int) -> list[Row]:
    """Head-importance sweep (one head cut at a time over the bundled set) against one intact run, per model."""
    from bench.influence_ablation import ablation_rows

    return ablation_rows(device, max(1, repeats // 10))


MEASURES: list[Callable[[torch.device, int], list[Row]]] = [value_weighted, ablation_sweep]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(
        f"device {device}, torch threads {torch.get_num_threads()}, fastest of {args.repeats} interleaved runs"
    )
    print(f"{'model':<34} {'what':<28} {'baseline ms':>12} {'measured ms':>12} {'ratio':>7}")
    for measure in MEASURES:
        print(f"-- {measure.__name__}: {(measure.__doc__ or '').splitlines()[0]}")
        for model, what, base, meas, ratio in measure(device, args.repeats):
            print(f"{model:<34} {what:<28} {base:12.2f} {meas:12.2f} {ratio:7.3f}")
    # relevance map, deletion/insertion curves and ALTI against a plain forward (its own table)
    print("-- relevance, curves, contributions (bench/influence_flow.py), each against a plain forward")
    from bench.influence_flow import main as flow_main

    flow_main(["--repeats", str(max(1, args.repeats // 3))])


if __name__ == "__main__":
    main()
