"""The date model's files: the committed checkpoint (float16 safetensors with its config and tokenizer in the
header) and the hand-written evaluation dates kept next to it in ``models/checkpoints/``."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import torch

from models.text.dates.tokenizer import CharTokenizer
from models.transformer import Transformer, TransformerConfig

CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"  # models/checkpoints/
DEFAULT_CHECKPOINT = CHECKPOINTS / "dates_seq2seq.safetensors"
HUMAN_EVAL = CHECKPOINTS / "human_dates.tsv"  # typed by hand before training; their days never train


def load_human_eval(path: str | Path | None = None) -> list[tuple[str, str]]:
    """The hand-written evaluation set: (text, ISO date) rows of a TSV, by default HUMAN_EVAL.

    HUMAN_EVAL is ``models/checkpoints/human_dates.tsv``. Lines starting with ``#`` and the header
    ``text<TAB>iso`` are skipped.
    """
    rows = []
    for line in Path(path or HUMAN_EVAL).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#") or line == "text\tiso":
            continue
        text, iso = line.split("\t")[:2]
        rows.append((text, dt.date.fromisoformat(iso).isoformat()))
    return rows


def _tied_aliases(cfg: TransformerConfig) -> tuple[str, ...]:
    """State-dict keys that share ``src_embed.lut.weight`` when the embeddings are tied (Section 3.4)."""
    return ("tgt_embed.lut.weight", "generator.weight") if cfg.tie_embeddings else ()


def save_date_model(
    model: Transformer, tok: CharTokenizer, path: str | Path, info: dict | None = None
) -> None:
    """float16 safetensors; config, tokenizer and ``info`` go into the header metadata as JSON strings."""
    from safetensors.torch import save_file

    tensors = {
        k: v.detach().to("cpu", torch.float16).contiguous()
        for k, v in model.state_dict().items()
        if k not in _tied_aliases(model.cfg)
    }  # a tied matrix is stored once, under src_embed.lut.weight
    metadata = {
        "config": json.dumps(model.cfg.__dict__),
        "tokenizer": tok.to_json(),
        "info": json.dumps(info or {}),
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)


def load_date_model(path: str | Path | None = None, device: str = "cpu") -> tuple[Transformer, CharTokenizer]:
    """Load a checkpoint (default: the committed models/checkpoints/dates_seq2seq.safetensors).

    Returns the model in float32 and eval mode on ``device``, and its tokenizer.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
    cfg = TransformerConfig(**json.loads(metadata["config"]))
    tok = CharTokenizer.from_json(metadata["tokenizer"])
    model = Transformer(cfg)
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    for alias in _tied_aliases(cfg):
        state[alias] = state["src_embed.lut.weight"]
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), tok
