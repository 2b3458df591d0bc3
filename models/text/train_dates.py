"""Train the small date-normalisation Transformer on CPU and write its checkpoint + model card.

    python -m models.text.train_dates --out models/checkpoints/dates_seq2seq.safetensors

Adam with the paper's warmup schedule (Section 5.3) and label smoothing (Section 5.4); fresh generated
training examples every step (no epochs, no repeats); greedy-decoding exact-match evaluation on held-out
calendar days that training never sees (see models/text/dates/forms.py for the conventions).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from models.text.dates.checkpoint import load_date_model, load_human_eval, save_date_model
from models.text.dates.forms import (
    FIRST_DATE,
    LAST_DATE,
    TWO_DIGIT_SHARE,
    YEAR_PIVOT,
    DateExample,
    generate_examples,
    render_date,
    sample_date,
)
from models.text.dates.inference import normalise_dates
from models.text.dates.tokenizer import CharTokenizer, build_date_tokenizer, encode_batch
from models.transformer import Transformer, TransformerConfig


@dataclass
class TrainConfig:
    out: str = "models/checkpoints/dates_seq2seq.safetensors"
    seed: int = 0
    steps: int = 3485  # the shipped run: started with 6000, stopped at 3485 by max_minutes of CPU time
    batch_size: int = 64
    warmup: int = 400
    lr_factor: float = 0.4  # peak lr = lr_factor * d_model^-0.5 * warmup^-0.5
    label_smoothing: float = 0.1
    max_minutes: float = 19.0  # safety stop on this process's CPU time; the card records the steps run
    eval_every: int = 500
    snapshot_every: int = 200  # Section 6.1: average the last checkpoints
    average_last: int = 5
    bucket_pool: int = 8  # generate this many batches at once and group them by source length
    eval_n: int = 2000  # final held-out examples
    eval_seed: int = 12345
    threads: int = 1
    d_model: int = 128
    n_heads: int = 8
    d_ff: int = 512
    n_layers: int = 3
    dropout: float = 0.0  # fresh examples every step (no repeats), so no regularisation is needed
    tie_embeddings: bool = True  # Section 3.4: both embeddings and the generator share one matrix
    human_eval: str = "models/checkpoints/human_dates.tsv"  # hand-written; their days never train


def rate(step: int, d_model: int, warmup: int, factor: float) -> float:
    """Section 5.3: lrate = factor * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5), step from 1."""
    step = max(step, 1)
    return factor * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)


def make_batch(
    examples: list[DateExample], tok: CharTokenizer
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> src (B, Ts), decoder input "<s> YYYY-MM-DD" (B, 11), decoder target "YYYY-MM-DD </s>" (B, 11)."""
    src = encode_batch(tok, [e.text for e in examples])  # (B, Ts)
    tgt = encode_batch(tok, [e.iso for e in examples], bos=True, eos=True)  # (B, 12)
    return src, tgt[:, :-1], tgt[:, 1:]


def training_batches(
    rng: random.Random, batch_size: int, pool: int, exclude: frozenset[dt.date] = frozenset()
) -> Iterator[list[DateExample]]:
    """Endless fresh training batches from the train split minus ``exclude``; each pool of ``pool`` batches
    is sorted by text length (less padding)."""
    while True:
        examples = []
        for _ in range(batch_size * pool):
            d = sample_date(rng, "train", exclude)
            text, fmt = render_date(d, rng)
            examples.append(DateExample(text, d.isoformat(), fmt))
        examples.sort(key=lambda e: len(e.text))
        batches = [examples[i : i + batch_size] for i in range(0, len(examples), batch_size)]
        rng.shuffle(batches)
        yield from batches


def average_state_dicts(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Section 6.1: the base models use "a single model obtained by averaging the last 5 checkpoints"."""
    return {k: torch.stack([s[k] for s in states]).mean(0) for k in states[0]}


def evaluate(
    model: Transformer, tok: CharTokenizer, examples: list[DateExample]
) -> tuple[float, dict[str, float]]:
    """Exact-match accuracy of greedy decoding, overall and per format family."""
    preds = normalise_dates(model, tok, [e.text for e in examples])
    hits, totals = Counter(), Counter()
    for e, p in zip(examples, preds, strict=True):
        totals[e.fmt] += 1
        hits[e.fmt] += p == e.iso
    per_fmt = {f: hits[f] / totals[f] for f in sorted(totals)}
    return sum(hits.values()) / len(examples), per_fmt


def train(tc: TrainConfig) -> dict:
    torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)
    rng = random.Random(tc.seed)
    tok = build_date_tokenizer()
    cfg = TransformerConfig(
        src_vocab=len(tok),
        tgt_vocab=len(tok),
        d_model=tc.d_model,
        n_heads=tc.n_heads,
        d_ff=tc.d_ff,
        n_enc_layers=tc.n_layers,
        n_dec_layers=tc.n_layers,
        max_len=64,
        dropout=tc.dropout,
        pad_id=tok.pad_id,
        tie_embeddings=tc.tie_embeddings,
    )
    human = load_human_eval(tc.human_eval)
    exclude = frozenset(dt.date.fromisoformat(iso) for _, iso in human)
    model = Transformer(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=1.0, betas=(0.9, 0.98), eps=1e-9)  # Section 5.3
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: rate(s + 1, tc.d_model, tc.warmup, tc.lr_factor)
    )  # LambdaLR multiplies lr=1.0
    probe = generate_examples(500, tc.eval_seed + 1, "heldout")
    history = []
    t0, c0 = time.time(), time.process_time()  # wall clock, and CPU time of this process (all threads)
    step = 0
    snapshots: deque[dict[str, torch.Tensor]] = deque(maxlen=tc.average_last)
    batches = training_batches(rng, tc.batch_size, tc.bucket_pool, exclude)
    for step in range(1, tc.steps + 1):
        model.train()
        batch = next(batches)
        src, tgt_in, tgt_out = make_batch(batch, tok)
        logits, _ = model(src, tgt_in, need_weights=False)  # (B, 11, V)
        loss = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)),  # (B * 11, V)
            tgt_out.reshape(-1),  # (B * 11,)
            ignore_index=tok.pad_id,
            label_smoothing=tc.label_smoothing,
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        elapsed, cpu = time.time() - t0, time.process_time() - c0
        if step % tc.snapshot_every == 0:
            snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        if step % tc.eval_every == 0 or step == tc.steps:
            acc, _ = evaluate(model, tok, probe)
            history.append(
                {
                    "step": step,
                    "loss": round(loss.item(), 4),
                    "probe_acc": acc,
                    "s": round(elapsed),
                    "cpu_s": round(cpu),
                }
            )
            print(json.dumps(history[-1]), flush=True)
        elif step % 100 == 0:
            print(
                f"step {step} loss {loss.item():.4f} lr {sched.get_last_lr()[0]:.2e} "
                f"{elapsed:.0f}s cpu {cpu:.0f}s",
                flush=True,
            )
        if cpu > tc.max_minutes * 60:
            print(f"time budget reached at step {step}", flush=True)
            break
    if step % tc.snapshot_every != 0:
        snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    final_probe_acc, _ = evaluate(model, tok, probe)
    model.load_state_dict(average_state_dicts(list(snapshots)))
    averaged_probe_acc, _ = evaluate(model, tok, probe)
    print(
        json.dumps({"final_probe_acc": final_probe_acc, "averaged_probe_acc": averaged_probe_acc}), flush=True
    )
    train_seconds, train_cpu_seconds = time.time() - t0, time.process_time() - c0

    info = {
        "train_config": asdict(tc),
        "steps": step,
        "train_seconds": round(train_seconds),
        "train_cpu_seconds": round(train_cpu_seconds),
        "history": history,
        "averaged_snapshots": len(snapshots),
        "probe_acc_last_weights": final_probe_acc,
        "probe_acc_averaged": averaged_probe_acc,
    }
    save_date_model(model, tok, tc.out, info)
    # Final evaluation on the float16 checkpoint as shipped, loaded back into float32.
    loaded, tok2 = load_date_model(tc.out)
    heldout = generate_examples(tc.eval_n, tc.eval_seed, "heldout")
    acc, per_fmt = evaluate(loaded, tok2, heldout)
    human_preds = normalise_dates(loaded, tok2, [t for t, _ in human])
    info.update(
        heldout_acc=acc,
        heldout_n=tc.eval_n,
        per_format=per_fmt,
        human=[{"text": t, "iso": iso, "pred": p} for (t, iso), p in zip(human, human_preds, strict=True)],
        excluded_dates=sorted(d.isoformat() for d in exclude),
    )
    save_date_model(model, tok, tc.out, info)  # same weights, metadata now includes the accuracy
    n_human = sum(h["pred"] == h["iso"] for h in info["human"])
    print(
        json.dumps({"heldout_acc": acc, "per_format": per_fmt, "human": f"{n_human}/{len(human)}"}),
        flush=True,
    )
    write_model_card(Path(tc.out).with_suffix(".md"), cfg, info, os.path.getsize(tc.out))
    return info


def _card_tables(info: dict) -> tuple[str, str, str]:
    """The model card's markdown table rows: accuracy per format, training history, the hand-written dates."""
    per_fmt = "\n".join(f"| {f} | {a:.4f} |" for f, a in info["per_format"].items())
    history = "\n".join(
        f"| {h['step']} | {h['loss']} | {h['probe_acc']:.3f} | {h['s']} | {h['cpu_s']} |"
        for h in info["history"]
    )
    human_rows = "\n".join(
        f"| `{h['text']}` | {h['iso']} | {h['pred']} | {'yes' if h['pred'] == h['iso'] else '**no**'} |"
        for h in info["human"]
    )
    return per_fmt, history, human_rows


def write_model_card(path: Path, cfg: TransformerConfig, info: dict, size_bytes: int) -> None:
    """Write the checkpoint's markdown card: mostly one template, filled from ``info`` (see train())."""
    tc = info["train_config"]
    n_params = sum(p.numel() for p in Transformer(cfg).parameters())  # a tied matrix counts once
    per_fmt, history, human_rows = _card_tables(info)
    stopped = (
        f"; this run was started with `--steps {tc['steps']}` and stopped by that CPU budget"
        if info["steps"] < tc["steps"]
        else ""
    )
    human = info["human"]
    n_human = sum(h["pred"] == h["iso"] for h in human)
    tied = (
        "Tied as in Section 3.4: the source embedding, the target embedding and the generator's weight are "
        "one (vocab, d_model) matrix, stored once in the checkpoint (the generator keeps its own bias)."
        if cfg.tie_embeddings
        else "Not tied: the source embedding, the target embedding and the generator are three separate "
        "matrices (Section 3.4 shares one)."
    )
    text = f"""# dates_seq2seq: a small "Attention Is All You Need" Transformer that normalises dates

Weights: `{Path(tc["out"]).name}` (float16 safetensors, {size_bytes / 1e6:.2f} MB; config, tokenizer
vocabulary and training info are JSON strings in the safetensors header). Load with
`models.text.dates.load_date_model()` (float32, eval mode).

## What it knows
Dates from {FIRST_DATE.year} to {LAST_DATE.year} written in English (for example "July 4, 1776", "4th of July 1776",
"Dec. 7th, 1941", "7 Dec '99", "31/12/1999", "12/31/1999", "1941-12-07"), French, German or Spanish, with
or without a weekday, in lower, UPPER or Title Case -> ISO 8601 `YYYY-MM-DD`.

## Model
Post-norm encoder-decoder Transformer (`models/transformer.py`), {n_params:,} parameters:
`{json.dumps(cfg.__dict__)}`. Character-level tokenizer with {cfg.src_vocab} symbols shared by source and
target (`<pad> <s> </s> <unk>` + characters).

Differences from the paper's equations (Section 3):
- Embeddings: {tied}
- Biases: every projection is an `nn.Linear` with a bias: W^Q, W^K, W^V, W^O (Section 3.2.2 writes them
  without) and the generator. The FFN's b_1, b_2 are the paper's own (Section 3.3).
- Size: d_model {cfg.d_model}, {cfg.n_heads} heads, d_ff {cfg.d_ff}, {cfg.n_enc_layers}+{cfg.n_dec_layers} layers
  (the base model is 512, 8, 2048, 6+6), no dropout, character tokens instead of BPE.

## Data (generated, `models/text/dates/forms.py`)
Dates {FIRST_DATE}..{LAST_DATE} written in {len(info["per_format"])} format families (English month-day-year,
day-month-year, "the Nth of Month", dd-Mon-yy, numeric `/`, dotted d.m.y, d-m-y, year-first ISO-like,
French, German, Spanish; optional correct weekday, ordinals, "Sept."/"Tues"/"Thurs" abbreviations, 2-digit
years, lower/UPPER/Title casing) -> ISO 8601 `YYYY-MM-DD`. {TWO_DIGIT_SHARE:.0%} of the dates come from
1950..2049, the rest uniformly from the whole range. Dates are copied as written: proleptic Gregorian
calendar, no Julian -> Gregorian conversion.

Conventions, which also settle the ambiguous cases:
- Two-digit years ("3/18/22", "7 Dec '99") use the pivot {YEAR_PIVOT}: {YEAR_PIVOT}..99 -> 19xx,
  00..{YEAR_PIVOT - 1} -> 20xx ("7 Dec '41" is 2041-12-07). They appear only for dates in 1950..2049, so "'63" is always 1963, never 1863.
- `/` dates are month/day/year, except when the first field cannot be a month (> 12): then day/month/year
  ("31/12/1999" -> 1999-12-31). "3/4/2022" is therefore 2022-03-04, even if a British writer meant 3 April.
- `.` and `-` dates with the year last are day first ("18.03.2022", "18-03-2022"); "12-25-2023" is out of
  distribution. A leading 4-digit year is year-month-day ("2022/3/18", "2022-03-18", "20220318").

Training draws fresh examples every step from the ~90% of calendar days in the train split, minus the
{len(info["excluded_dates"])} days of the human-written set below; held-out examples come only from the
other ~10% of days, so no held-out string is ever seen in training.

## Training
Seed {tc["seed"]}; {info["steps"]} steps of batch {tc["batch_size"]} ({info["steps"] * tc["batch_size"]:,}
examples); Adam (beta1 0.9, beta2 0.98, eps 1e-9) with the Section 5.3 schedule (warmup {tc["warmup"]},
factor {tc["lr_factor"]}); label smoothing {tc["label_smoothing"]}; dropout {tc["dropout"]}; CPU,
{tc["threads"]} thread(s). Training took **{info["train_cpu_seconds"]} s of CPU time** ({info["train_seconds"]} s
of wall clock on a 2-core machine shared with other jobs; the final evaluation is not counted). Each
pool of {tc["bucket_pool"]} batches is grouped by input length. The shipped weights are the average of the last
{info["averaged_snapshots"]} snapshots taken every {tc["snapshot_every"]} steps (Section 6.1); on the 500-example
probe they score {info["probe_acc_averaged"]:.3f} vs {info["probe_acc_last_weights"]:.3f} for the last weights.
The probe only monitors training; nothing is selected on it.

Reproduce: `python -m models.text.train_dates --out {tc["out"]} --threads {tc["threads"]} --steps {info["steps"]}`
(same seed, same data stream, same learning-rate schedule; the step count ends training unless
`--max-minutes` of CPU time is hit first{stopped}).
With other processes busy on the 2-core machine, 1 thread trains faster than 2 (idle OpenMP threads spin).

Train loss includes label smoothing, so its floor is well above 0.

| step | train loss | greedy exact match (500 held-out) | wall s | CPU s |
|---|---|---|---|---|
{history}

## Evaluation
Greedy decoding, exact match of the full ISO string, on **{info["heldout_n"]} held-out examples**
(seed {tc["eval_seed"]}), using the float16 checkpoint loaded back into float32:
**{info["heldout_acc"]:.4f}**.

| format family | exact match |
|---|---|
{per_fmt}

### Dates as people write them
{len(human)} dates typed by hand (`{tc["human_eval"]}`), written before training; the generator never
produced them for training, because their calendar days are excluded from it. The expected dates are
what the writer meant; a two-digit year still follows the pivot, so "'41" reads as 2041 even where the writer
meant 1941. Exact match **{n_human}/{len(human)}**.

| input | expected | model | right |
|---|---|---|---|
{human_rows}

## Limitations
- Only the generated formats and the four languages above; other layouts, other languages, typos, times of
  day, numbers written as words ("the fourth of July") or extra words are out of distribution and will be
  "normalised" into some date anyway.
- Numeric dates follow this task's fixed conventions (see above), not the reader's locale.
- The weekday is ignored; an inconsistent weekday is neither detected nor corrected.
- Only {FIRST_DATE.year}-{LAST_DATE.year}; years outside the range, BC dates and invalid dates like 31/02 give
  undefined output.
- Built for teaching (attention maps), not for production parsing.
"""
    path.write_text(text, encoding="utf-8")


def rewrite_card(checkpoint: str | Path) -> None:
    """Write the model card again from the metadata stored in ``checkpoint`` (no training)."""
    from safetensors import safe_open

    with safe_open(str(checkpoint), framework="pt") as f:
        meta = f.metadata()
    cfg = TransformerConfig(**json.loads(meta["config"]))
    write_model_card(
        Path(checkpoint).with_suffix(".md"), cfg, json.loads(meta["info"]), os.path.getsize(checkpoint)
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--card-only", action="store_true", help="rewrite the card of --out; do not train")
    for name, default in asdict(TrainConfig()).items():
        kind = (lambda v: v.lower() in ("1", "true", "yes")) if isinstance(default, bool) else type(default)
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default)
    args = vars(parser.parse_args(argv))
    if args.pop("card_only"):
        rewrite_card(args["out"])
        return
    train(TrainConfig(**args))


if __name__ == "__main__":
    main()
