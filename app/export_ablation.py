"""``python -m app export`` flags of issue 15, items 3 and 5: head ablation, the head-importance map and the
date decoder's logit lens, written beside the attention maps in the same ``.npz``. The numbers come from the
functions the web service and the notebook call (``models/influence/``).

    python -m app export --text "7 Dec '41" --model dates-seq2seq --ablate cross:2:0,cross:2:1 --out d.npz
    python -m app export --text "A cat." --pair "The cat." --model all-minilm-l6-v2 --ablate 0:1 --out p.npz
    python -m app export --image cat.jpg --ablate 11:0 --importance --out cat.npz
    python -m app export --text "7 Dec '41" --model dates-seq2seq --logit-lens --out lens.npz

Heads are 0-based: ``layer:head`` (a model with one attention block) or ``block:layer:head``. Arrays written:
``ablation_*`` (the intact and ablated outcome), ``importance_<metric>_<block>`` (L, H) with
``importance_base_<metric>`` (intact), ``lens_*`` (see :class:`models.influence.logit_lens.LogitLens`).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from app.model_args import CliError

BLOCKS = ("encoder_self", "decoder_self", "cross")


def add_arguments(e: argparse.ArgumentParser) -> None:
    e.add_argument(
        "--ablate", help="heads to ablate together, 0-based: layer:head or block:layer:head, commas"
    )
    e.add_argument("--ablate-mode", default="zero", choices=("zero", "mean"), help="zero or mean-ablation")
    # --pair (a sentence encoder's second sentence) is declared once, by app/cli.py's influence group
    e.add_argument("--importance", action="store_true", help="the layers x heads importance map (slow)")
    e.add_argument("--logit-lens", action="store_true", help="date model: the decoder's logit lens")


def parse_heads(text: str) -> list[tuple[str, int, int]]:
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        bits = part.split(":")
        try:
            if len(bits) == 2:
                out.append(("encoder_self", int(bits[0]), int(bits[1])))
            elif len(bits) == 3 and bits[0] in BLOCKS:
                out.append((bits[0], int(bits[1]), int(bits[2])))
            else:
                raise ValueError
        except ValueError:
            raise CliError(
                f"--ablate {part!r}: write layer:head or block:layer:head ({', '.join(BLOCKS)})"
            ) from None
    return out


def _ablation(model: Any, args: argparse.Namespace, image: Any) -> dict[str, np.ndarray]:
    from models.influence.ablation_run import run_ablation

    heads = parse_heads(args.ablate)
    try:
        run = run_ablation(
            model, heads, args.ablate_mode, text=args.text or "", pair=args.pair or "", target=args.target,
            image=image,
        )  # fmt: skip
    except ValueError as e:
        raise CliError(f"--ablate: {e}") from None
    out = {
        "ablation_heads": np.array([(BLOCKS.index(b), lay, h) for b, lay, h in heads], np.int64).reshape(
            -1, 3
        ),
        "ablation_blocks": np.array(BLOCKS),
        "ablation_mode": np.array(run.mode),
        "ablation_reference": np.array(run.reference),
    }
    for k, v in run.as_dict().items():
        if k in ("heads", "kind", "mode", "reference") or v is None:
            continue
        out[f"ablation_{k}"] = np.asarray(v)
    return out


def _importance(kind: str, model: Any) -> dict[str, np.ndarray]:
    from models.influence.ablation_run import eval_measure
    from models.influence.importance import head_importance

    m, n = eval_measure(kind, model)  # type: ignore[arg-type]
    imap = head_importance(m, "zero", n)
    out = {f"importance_base_{k}": np.asarray(v) for k, v in imap.base.items()}
    for metric, per in imap.values.items():
        for block, a in per.items():
            out[f"importance_{metric}_{block}"] = a  # (L, H) float64, one head zero-ablated
    return out


def _lens(model: Any, args: argparse.Namespace) -> dict[str, np.ndarray]:
    import torch

    from models.influence.logit_lens import logit_lens
    from models.text.dates import normalise_dates

    tok = model.tokenizer
    target = args.target if args.target is not None else normalise_dates(model.model, tok, [args.text])[0]
    src = torch.tensor(tok.encode(args.text), device=model.device)  # (Ts,)
    tgt = torch.tensor(tok.encode(target, bos=True), device=model.device)  # (Tt,)
    lens = logit_lens(model.model, src, tgt)
    out = {f"lens_{k}": np.asarray(v) for k, v in vars(lens).items() if k != "stages"}
    out["lens_stages"] = np.array([f"{layer}:{stage}" for layer, stage in lens.stages])
    out["lens_vocab"] = np.array(tok.itos)
    return out


def influence_arrays(model: Any, args: argparse.Namespace, image: Any = None) -> dict[str, np.ndarray]:
    """The arrays the flags ask for (none: an empty dict)."""
    from models.influence.ablation_run import kind_of

    wanted = args.ablate is not None or args.importance or args.logit_lens
    if not wanted:
        return {}
    kind = kind_of(model)
    if kind is None:
        raise CliError(
            "--ablate/--importance/--logit-lens: not implemented for this model (date model, BERT-like encoders, ViTs)"
        )
    out: dict[str, np.ndarray] = {}
    if args.ablate is not None:
        out.update(_ablation(model, args, image))
    if args.importance:
        out.update(_importance(kind, model))
    if args.logit_lens:
        if kind != "dates":
            raise CliError("--logit-lens is for the date model's decoder (the paper Transformer)")
        out.update(_lens(model, args))
    return out
