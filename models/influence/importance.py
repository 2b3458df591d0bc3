"""The head-importance map (Michel et al. 2019, Section 3 "Ablating One Head": ablate one head at a time, measure the
task metric): layers x heads for each attention block, over a bundled evaluation set.

Evaluation sets (fixed, so a map is computed once per model and ablation mode):

- the date model: the hand-written dates of ``models/checkpoints/human_dates.tsv`` and
  ``DATE_HELDOUT`` examples generated with seed ``DATE_SEED`` from the held-out calendar days (no held-out
  day is ever trained on); metrics: exact match of the greedy output, mean log p(right answer);
- a sentence encoder (MiniLM): the pairs of ``models/influence/sentence_pairs.tsv``; metrics: mean |change| of
  the pair cosine and the mean pair cosine;
- a ViT (DINOv2): the sample photos of :mod:`models.vision.samples` at the model's default resolution;
  metrics: mean [CLS]-feature cosine and mean patch-feature cosine to the intact run.

The reference set of mean-ablation (:func:`models.influence.ablation.head_means`) is the same evaluation
set: every token of its inputs (the date decoder teacher-forced on the right answers).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.influence.ablation import AblationMode, HeadKey, HeadMeans, ablating, head_grid, head_means
from models.influence.outcomes import (
    date_outcome,
    exact_match,
    feature_change,
    pair_cosines,
    vision_features,
)
from models.text.dates import generate_pairs, load_human_eval
from models.text.dates.tokenizer import CharTokenizer
from models.transformer import Transformer
from models.vision.batches import Cancelled  # the one cancel signal the job registry knows

SENTENCE_PAIRS = Path(__file__).with_name("sentence_pairs.tsv")
DATE_HELDOUT, DATE_SEED = 64, 15
Measure = Callable[[list[HeadKey]], dict[str, float]]  # heads to cut -> metric name -> value


def date_eval_set(n_generated: int = DATE_HELDOUT, seed: int = DATE_SEED) -> list[tuple[str, str]]:
    """(text, ISO date): the hand-written set, then ``n_generated`` held-out examples (fixed seed)."""
    return load_human_eval() + generate_pairs(n_generated, seed, split="heldout")


def sentence_pairs(path: Path = SENTENCE_PAIRS) -> list[tuple[str, str, str]]:
    """(sentence a, sentence b, label) rows of the bundled TSV (``#`` comments and the header skipped)."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#") or line.startswith("sentence_a\t"):
            continue
        a, b, label = line.split("\t")
        rows.append((a, b, label))
    return rows


@dataclass
class Measured:
    """A measure and what mean-ablation needs: the model, and one forward per reference input."""

    model: nn.Module
    measure: Measure
    reference: list[Callable[[], object]] = field(default_factory=list)


def date_reference(model: Transformer, tok: CharTokenizer, rows: Sequence[tuple[str, str]]) -> list[Callable]:
    """One teacher-forced forward per (text, answer): mean-ablation's reference for the date model."""
    device = next(model.parameters()).device

    def one(text: str, answer: str) -> Callable[[], object]:
        src = torch.tensor([tok.encode(text)], device=device)  # (1, Ts)
        tgt = torch.tensor([tok.encode(answer, bos=True)], device=device)  # (1, Tt)
        return lambda: model(src, tgt, need_weights=False)

    return [one(t, a) for t, a in rows]


def pair_reference(model: nn.Module, tokenizer: object, sentences: Sequence[str]) -> list[Callable]:
    """One forward per sentence (unpadded): mean-ablation's reference for a sentence encoder."""
    device = next(model.parameters()).device

    def one(sentence: str) -> Callable[[], object]:
        enc = tokenizer([sentence], return_tensors="pt")  # type: ignore[operator]
        enc = {k: v.to(device) for k, v in enc.items()}
        return lambda: model(**enc)

    return [one(s) for s in sentences]


def vision_reference(model: nn.Module, x: torch.Tensor) -> list[Callable]:
    """One forward per image of ``x`` (B, 3, R, R): mean-ablation's reference for a ViT."""
    return [lambda i=i: vision_features(model, x[i : i + 1]) for i in range(len(x))]


def date_measure(model: Transformer, tok: CharTokenizer, rows: Sequence[tuple[str, str]]) -> Measured:
    texts, answers = [t for t, _ in rows], [a for _, a in rows]

    def measure(_heads: list[HeadKey]) -> dict[str, float]:
        out = date_outcome(model, tok, texts, answers)
        return {"exact_match": exact_match(out.decoded, answers), "mean_logp": float(out.logp.mean())}

    return Measured(model, measure, date_reference(model, tok, rows))


def pair_measure(model: nn.Module, tokenizer: object, pairs: Sequence[tuple[str, str]]) -> Measured:
    """Runs the intact pairs once (a forward) to have the baseline cosines."""
    base = pair_cosines(model, tokenizer, pairs)  # (P,) intact

    def measure(_heads: list[HeadKey]) -> dict[str, float]:
        cos = pair_cosines(model, tokenizer, pairs)
        return {"mean_abs_delta_cos": float(np.abs(cos - base).mean()), "mean_cos": float(cos.mean())}

    return Measured(model, measure, pair_reference(model, tokenizer, [s for pair in pairs for s in pair]))


def vision_measure(model: nn.Module, x: torch.Tensor, num_prefix: int, has_cls: bool) -> Measured:
    """``x`` (B, 3, R, R): the preprocessed evaluation images on the model's device and dtype. Runs the
    intact forward once to have the baseline features."""
    base = vision_features(model, x)  # (B, N, C) intact

    def measure(_heads: list[HeadKey]) -> dict[str, float]:
        ch = feature_change(base, vision_features(model, x), num_prefix, has_cls)
        return {"cls_cos": float(ch.cls_cos.mean()), "patch_cos": float(ch.patch_cos.mean())}

    return Measured(model, measure, vision_reference(model, x))


@dataclass(frozen=True)
class ImportanceMap:
    """Metric values with one head ablated. ``values[metric][block]`` is (L, H) float64; ``base`` is intact."""

    mode: str
    base: dict[str, float]
    values: dict[str, dict[str, np.ndarray]]
    n_examples: int

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for per in self.values.values() for a in per.values()) + 1024


def head_importance(
    m: Measured,
    mode: AblationMode = "zero",
    n_examples: int = 0,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
    run_step: Callable[[Callable[[], dict[str, float]]], dict[str, float]] | None = None,
    means: HeadMeans | None = None,
) -> ImportanceMap:
    """Ablate each head alone and measure: one intact run, then one run per head (cancellable between runs).

    ``run_step(fn)`` runs one step (default: here; the server: its compute queue). ``mode="mean"`` computes
    the heads' means on ``m.reference`` first (one step), unless ``means`` are given."""
    step = run_step or (lambda fn: fn())
    grid = head_grid(m.model)
    heads = [
        (b, lay, h)
        for b, (n_layers, n_heads) in grid.items()
        for lay in range(n_layers)
        for h in range(n_heads)
    ]
    total = len(heads) + 1
    if mode == "mean" and means is None:
        means = step(lambda: head_means(m.model, m.reference))  # type: ignore[arg-type,return-value]

    def run(cut: list[HeadKey]) -> Callable[[], dict[str, float]]:
        def fn() -> dict[str, float]:
            with torch.inference_mode(), ablating(m.model, cut, mode, means):
                return m.measure(cut)

        return fn

    base = step(run([]))
    values = {k: {b: np.full(shape, np.nan) for b, shape in grid.items()} for k in base}
    if progress:
        progress(1, total)
    for i, (block, layer, head) in enumerate(heads):
        if cancel is not None and cancel.is_set():
            raise Cancelled("the head-importance sweep was cancelled")
        out = step(run([(block, layer, head)]))
        for k, v in out.items():
            values[k][block][layer, head] = v
        if progress:
            progress(i + 2, total)
    return ImportanceMap(mode=mode, base=base, values=values, n_examples=n_examples)
