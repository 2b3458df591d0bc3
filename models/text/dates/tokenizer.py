"""A general character-level tokenizer, and the one the date task uses (every character its forms produce)."""

from __future__ import annotations

import json
import string

import torch

from models.text.dates.forms import LANGUAGES


class CharTokenizer:
    """Character-level tokenizer; ids 0..3 are ``<pad> <s> </s> <unk>``, then one id per character."""

    PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
    SPECIALS = (PAD, BOS, EOS, UNK)

    def __init__(self, chars: list[str]) -> None:
        self.itos: list[str] = list(self.SPECIALS) + [c for c in chars if c not in self.SPECIALS]
        self.stoi: dict[str, int] = {s: i for i, s in enumerate(self.itos)}
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = range(4)

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, text: str, bos: bool = False, eos: bool = False) -> list[int]:
        ids = [self.stoi.get(c, self.unk_id) for c in text]
        return [self.bos_id] * bos + ids + [self.eos_id] * eos

    def decode(self, ids: list[int] | torch.Tensor) -> str:
        """Characters up to the first ``</s>``; other special tokens are dropped."""
        out = []
        for i in ids.tolist() if isinstance(ids, torch.Tensor) else ids:
            if i == self.eos_id:
                break
            if i >= len(self.SPECIALS):
                out.append(self.itos[i])
        return "".join(out)

    def tokens(self, text: str, bos: bool = False, eos: bool = False) -> list[str]:
        """Display tokens for axis labels: one per character, spaces shown as '␣', unknowns as '<unk>'."""
        return [self.itos[i] if self.itos[i] != " " else "␣" for i in self.encode(text, bos, eos)]

    def to_json(self) -> str:
        return json.dumps({"type": "char", "itos": self.itos}, ensure_ascii=False)

    @classmethod
    def from_json(cls, s: str) -> CharTokenizer:
        itos = json.loads(s)["itos"]
        if tuple(itos[:4]) != cls.SPECIALS:
            raise ValueError("tokenizer JSON does not start with the special tokens")
        return cls(itos[4:])


def build_date_tokenizer() -> CharTokenizer:
    """Every character any format can produce, in every casing, in a fixed (sorted) order."""
    chars = set(string.ascii_letters + string.digits + " ,./-'")
    for lang in LANGUAGES.values():
        for names in lang:
            for name in names:
                chars.update(name + name.lower() + name.upper())
    return CharTokenizer(sorted(chars))


def encode_batch(tok: CharTokenizer, texts: list[str], bos: bool = False, eos: bool = False) -> torch.Tensor:
    """Right-padded id matrix (B, T_max)."""
    rows = [tok.encode(t, bos, eos) for t in texts]
    out = torch.full((len(rows), max(map(len, rows))), tok.pad_id, dtype=torch.long)  # (B, T_max)
    for i, r in enumerate(rows):
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out
