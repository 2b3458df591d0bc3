"""A generated date-normalisation task: free-form dates in four languages -> ISO 8601 ``YYYY-MM-DD``.

Conventions (they make every surface form map to exactly one date, so the task is learnable):
- Dates lie in 1950-01-01 .. 2049-12-31.
- Two-digit years use the pivot 50: ``50..99 -> 1950..1999`` and ``00..49 -> 2000..2049``. This covers
  the range exactly (Python's ``%y`` uses 69 instead; we do not).
- Numeric forms: the separator decides the field order, and a leading 4-digit year is always Y-M-D.
  ``/`` = US month/day/year ("3/18/22"), ``.`` = day.month.year ("18.03.2022"), ``-`` with the year last =
  day-month-year ("18-03-2022"), ``2022/3/18`` and ``2022-03-18`` = year-month-day, ``20220318`` = YYYYMMDD.
- Weekdays, when present, are always the correct ones; they carry no extra information.
- Held-out split: about 10% of calendar days (a fixed hash of the date) never appear in training, so the
  held-out strings cannot overlap the training strings.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from models.transformer import Transformer, TransformerConfig, greedy_decode

FIRST_DATE = dt.date(1950, 1, 1)
LAST_DATE = dt.date(2049, 12, 31)
YEAR_PIVOT = 50  # two-digit yy < 50 -> 20yy, else 19yy
HELDOUT_PERCENT = 10
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "dates_seq2seq.safetensors"
TARGET_LEN = 10  # len("YYYY-MM-DD")

# (full month names, abbreviated month names, full weekday names Monday-first, abbreviated weekdays)
EN = (
    [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ],
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"],
    ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
)
FR = (
    [
        "janvier",
        "février",
        "mars",
        "avril",
        "mai",
        "juin",
        "juillet",
        "août",
        "septembre",
        "octobre",
        "novembre",
        "décembre",
    ],
    ["janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.", "nov.", "déc."],
    ["lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"],
    ["lun.", "mar.", "mer.", "jeu.", "ven.", "sam.", "dim."],
)
DE = (
    [
        "Januar",
        "Februar",
        "März",
        "April",
        "Mai",
        "Juni",
        "Juli",
        "August",
        "September",
        "Oktober",
        "November",
        "Dezember",
    ],
    ["Jan.", "Feb.", "März", "Apr.", "Mai", "Juni", "Juli", "Aug.", "Sep.", "Okt.", "Nov.", "Dez."],
    ["Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"],
    ["Mo", "Di", "Mi", "Do", "Fr", "Sa", "So"],
)
ES = (
    [
        "enero",
        "febrero",
        "marzo",
        "abril",
        "mayo",
        "junio",
        "julio",
        "agosto",
        "septiembre",
        "octubre",
        "noviembre",
        "diciembre",
    ],
    ["ene", "feb", "mar", "abr", "may", "jun", "jul", "ago", "sep", "oct", "nov", "dic"],
    ["lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"],
    ["lun", "mar", "mié", "jue", "vie", "sáb", "dom"],
)
LANGUAGES = {"en": EN, "fr": FR, "de": DE, "es": ES}


@dataclass(frozen=True)
class DateExample:
    text: str  # surface form, e.g. "Fri 3/18/22"
    iso: str  # target, e.g. "2022-03-18"
    fmt: str  # name of the format family that produced it


# ----------------------------------------------------------------------------- surface forms


def _ordinal_en(day: int) -> str:
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _yy(d: dt.date) -> str:
    return f"{d.year % 100:02d}"


def _num(n: int, rng: random.Random) -> str:
    """A day or month number, zero-padded or not."""
    return f"{n:02d}" if rng.random() < 0.5 else str(n)


def _year(d: dt.date, rng: random.Random) -> str:
    return str(d.year) if rng.random() < 0.6 else _yy(d)


def _weekday(d: dt.date, lang: tuple, rng: random.Random, sep: str = ", ") -> str:
    """Correct weekday prefix (full or abbreviated) or empty, with probability 1/2."""
    if rng.random() < 0.5:
        return ""
    return rng.choice((lang[2], lang[3]))[d.weekday()] + sep


def _en_month_day_year(d: dt.date, rng: random.Random) -> str:  # "Friday, March 18th, 2022", "Mar. 18 '22"
    month = rng.choice((EN[0][d.month - 1], EN[1][d.month - 1], EN[1][d.month - 1] + "."))
    day = rng.choice((str(d.day), _ordinal_en(d.day)))
    year = rng.choice((f", {d.year}", f" {d.year}", f" '{_yy(d)}", f", '{_yy(d)}"))
    return f"{_weekday(d, EN, rng)}{month} {day}{year}"


def _en_day_month_year(d: dt.date, rng: random.Random) -> str:  # "18 March 2022", "Fri, 18 Mar 2022"
    month = rng.choice((EN[0][d.month - 1], EN[1][d.month - 1]))
    day = rng.choice((str(d.day), f"{d.day:02d}", _ordinal_en(d.day)))
    return f"{_weekday(d, EN, rng, rng.choice((', ', ' ')))}{day} {month}{rng.choice((' ', ', '))}{d.year}"


def _en_the_nth_of(d: dt.date, rng: random.Random) -> str:  # "the 18th of March, 2022"
    weekday = _weekday(d, EN, rng, rng.choice((", ", " ")))
    the = rng.choice(("the ", "") if weekday else ("the ", "", "The "))
    comma = rng.choice((", ", " "))
    return f"{weekday}{the}{_ordinal_en(d.day)} of {EN[0][d.month - 1]}{comma}{d.year}"


def _en_dd_mon_yy(d: dt.date, rng: random.Random) -> str:  # "18-Mar-22", "18-MAR-2022", "18 Mar 22"
    sep = rng.choice(("-", " "))
    return f"{d.day:02d}{sep}{EN[1][d.month - 1]}{sep}{_year(d, rng)}"


def _us_slash(d: dt.date, rng: random.Random) -> str:  # "Fri 3/18/22", "03/18/2022"
    weekday = _weekday(d, EN, rng, rng.choice((", ", " ")))
    return f"{weekday}{_num(d.month, rng)}/{_num(d.day, rng)}/{_year(d, rng)}"


def _dotted(d: dt.date, rng: random.Random) -> str:  # "18.03.2022", "Fr, 18.3.22"
    return f"{_weekday(d, DE, rng)}{_num(d.day, rng)}.{_num(d.month, rng)}.{_year(d, rng)}"


def _day_month_year_dash(d: dt.date, rng: random.Random) -> str:  # "18-03-2022"
    return f"{d.day:02d}-{d.month:02d}-{d.year}"


def _year_first(d: dt.date, rng: random.Random) -> str:  # "2022-03-18", "2022/3/18", "20220318"
    kind = rng.randrange(3)
    if kind == 0:
        return d.isoformat()
    if kind == 1:
        return f"{d.year}/{_num(d.month, rng)}/{_num(d.day, rng)}"
    return f"{d.year}{d.month:02d}{d.day:02d}"


def _french(d: dt.date, rng: random.Random) -> str:  # "le vendredi 18 mars 2022", "1er janv. 2022"
    month = rng.choice(FR[:2])[d.month - 1]
    day = "1er" if d.day == 1 and rng.random() < 0.7 else str(d.day)
    prefix = rng.choice(("", "le "))
    return f"{prefix}{_weekday(d, FR, rng, ' ')}{day} {month} {d.year}"


def _german(d: dt.date, rng: random.Random) -> str:  # "Freitag, 18. März 2022", "Fr, 18. Okt. 2022"
    month = rng.choice(DE[:2])[d.month - 1]
    return f"{_weekday(d, DE, rng)}{d.day}. {month} {d.year}"


def _spanish(d: dt.date, rng: random.Random) -> str:  # "viernes, 18 de marzo de 2022", "18 mar 2022"
    if rng.random() < 0.7:
        return f"{_weekday(d, ES, rng)}{d.day} de {ES[0][d.month - 1]} de {d.year}"
    return f"{_weekday(d, ES, rng, ' ')}{d.day} {ES[1][d.month - 1]} {d.year}"


FORMATS: dict[str, Callable[[dt.date, random.Random], str]] = {
    "en_month_day_year": _en_month_day_year,
    "en_day_month_year": _en_day_month_year,
    "en_the_nth_of": _en_the_nth_of,
    "en_dd_mon_yy": _en_dd_mon_yy,
    "us_slash": _us_slash,
    "dotted": _dotted,
    "day_month_year_dash": _day_month_year_dash,
    "year_first": _year_first,
    "french": _french,
    "german": _german,
    "spanish": _spanish,
}


def _casing(text: str, rng: random.Random) -> str:
    r = rng.random()
    return text.lower() if r < 0.15 else text.upper() if r < 0.3 else text


def render_date(d: dt.date, rng: random.Random, fmt: str | None = None) -> tuple[str, str]:
    """One random surface form of ``d`` -> (text, format name). ``fmt`` picks a family from FORMATS."""
    fmt = fmt or rng.choice(list(FORMATS))
    return _casing(FORMATS[fmt](d, rng), rng), fmt


# ----------------------------------------------------------------------------- splits and sampling


def split_of(d: dt.date) -> str:
    """'heldout' for ~10% of calendar days (fixed multiplicative hash of the ordinal), else 'train'."""
    h = (d.toordinal() * 2654435761) % 2**32
    return "heldout" if (h >> 8) % 100 < HELDOUT_PERCENT else "train"


def sample_date(rng: random.Random, split: str = "train") -> dt.date:
    """Uniform date in [FIRST_DATE, LAST_DATE] from ``split`` ('train', 'heldout' or 'all')."""
    if split not in ("train", "heldout", "all"):
        raise ValueError(f"unknown split {split!r}")
    while True:
        d = dt.date.fromordinal(rng.randint(FIRST_DATE.toordinal(), LAST_DATE.toordinal()))
        if split == "all" or split_of(d) == split:
            return d


def generate_examples(n: int, seed: int, split: str = "train") -> list[DateExample]:
    """``n`` examples with dates drawn from ``split``; fully determined by ``seed``."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        d = sample_date(rng, split)
        text, fmt = render_date(d, rng)
        out.append(DateExample(text=text, iso=d.isoformat(), fmt=fmt))
    return out


def generate_pairs(n: int, seed: int, split: str = "train") -> list[tuple[str, str]]:
    """``n`` (surface form, ISO date) pairs; see :func:`generate_examples`."""
    return [(e.text, e.iso) for e in generate_examples(n, seed, split)]


# ----------------------------------------------------------------------------- tokenizer


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


# ----------------------------------------------------------------------------- checkpoint I/O


def save_date_model(
    model: Transformer, tok: CharTokenizer, path: str | Path, info: dict | None = None
) -> None:
    """float16 safetensors; config, tokenizer and ``info`` go into the header metadata as JSON strings."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu", torch.float16).contiguous() for k, v in model.state_dict().items()}
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
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), tok


def normalise_dates(
    model: Transformer, tok: CharTokenizer, texts: list[str], batch_size: int = 512
) -> list[str]:
    """Greedy-decode each text to its predicted ISO string."""
    device = next(model.parameters()).device
    preds: list[str] = []
    for i in range(0, len(texts), batch_size):
        src = encode_batch(tok, texts[i : i + batch_size]).to(device)  # (B, Ts)
        ys, _ = greedy_decode(model, src, tok.bos_id, tok.eos_id, TARGET_LEN + 1, return_attention=False)
        preds.extend(tok.decode(row[1:]) for row in ys)
    return preds
