"""The surface-form generator of the date task: free-form dates in four languages -> ISO 8601 ``YYYY-MM-DD``.

Conventions (they make every surface form map to exactly one date, so the task is learnable):
- Dates lie in 1000-01-01 .. 2999-12-31 (four-digit years). 30% of the sampled dates come from the
  two-digit-year window 1950..2049, the rest uniformly from the whole range, so the short forms are seen
  often enough. Dates are copied as written: the calendar is the proleptic Gregorian one of ``datetime``
  (weekdays too), and no Julian -> Gregorian conversion is made ("1066-10-14" stays 1066-10-14).
- Two-digit years ("3/18/22", "7 Dec '99") use the pivot 50: ``50..99 -> 1950..1999`` and
  ``00..49 -> 2000..2049``, so "7 Dec '41" is 2041-12-07 (Python's ``%y`` uses 69 instead; we do not).
  They are generated only for dates in that window, so "'63" always means 1963, never 1863.
- Numeric forms: the separator decides the field order, and a leading 4-digit year is always Y-M-D.
  ``/`` = month/day/year ("3/18/22", "12/31/1999"), except when the first field cannot be a month
  (> 12): then it is day/month/year ("31/12/1999", "18/3/22"). ``.`` = day.month.year ("18.03.2022"),
  ``-`` with the year last = day-month-year ("18-03-2022"), ``2022/3/18`` and ``2022-03-18`` =
  year-month-day, ``20220318`` = YYYYMMDD.
- Remaining ambiguities, settled by the rules above and not by the writer's locale: a ``/`` date whose
  first two fields are both <= 12 is month first ("3/4/2022" -> 2022-03-04, though a British writer means
  3 April); ``.`` and ``-`` dates are always day first ("12-25-2023" is out of distribution); a two-digit
  year follows the pivot even when the writer meant another century ("19 Nov '63" -> 1963-11-19).
- English forms people type: "July 4, 1776", "4th of July 1776", "the 4th of July, 1776", "Dec. 7th, 1941",
  "7 Dec '41", "07-Dec-41", "Sept. 11, 2001", "Thurs, 1 Jan 1970"; French, German and Spanish long forms;
  any of them in lower, UPPER or Title Case.
- Weekdays, when present, are always the correct ones; they carry no extra information.
- Held-out split: about 10% of calendar days (a fixed hash of the date) never appear in training, so the
  held-out strings cannot overlap the training strings. Training can also exclude a set of dates
  (``sample_date(..., exclude=...)``): the trainer excludes the days of the human-written evaluation set.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass

FIRST_DATE = dt.date(1000, 1, 1)
LAST_DATE = dt.date(2999, 12, 31)
TWO_DIGIT_FIRST = dt.date(1950, 1, 1)  # the window that two-digit years can name
TWO_DIGIT_LAST = dt.date(2049, 12, 31)
YEAR_PIVOT = 50  # two-digit yy < 50 -> 20yy, else 19yy
TWO_DIGIT_SHARE = 0.3  # share of sampled dates drawn from the two-digit-year window
HELDOUT_PERCENT = 10
TARGET_LEN = 10  # len("YYYY-MM-DD")

# Per language: full month names | abbreviated month names | full weekday names Monday-first | abbreviated
# weekdays, each a space-separated list (one line a language, so the four read as one table).
_NAMES = {
    "en": "January February March April May June July August September October November December | Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec | Monday Tuesday Wednesday Thursday Friday Saturday Sunday | Mon Tue Wed Thu Fri Sat Sun",
    "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre | janv. févr. mars avr. mai juin juil. août sept. oct. nov. déc. | lundi mardi mercredi jeudi vendredi samedi dimanche | lun. mar. mer. jeu. ven. sam. dim.",
    "de": "Januar Februar März April Mai Juni Juli August September Oktober November Dezember | Jan. Feb. März Apr. Mai Juni Juli Aug. Sep. Okt. Nov. Dez. | Montag Dienstag Mittwoch Donnerstag Freitag Samstag Sonntag | Mo Di Mi Do Fr Sa So",
    "es": "enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre | ene feb mar abr may jun jul ago sep oct nov dic | lunes martes miércoles jueves viernes sábado domingo | lun mar mié jue vie sáb dom",
}
LANGUAGES = {lang: tuple(part.split() for part in names.split(" | ")) for lang, names in _NAMES.items()}
EN, FR, DE, ES = (LANGUAGES[lang] for lang in ("en", "fr", "de", "es"))
# Other English abbreviations people type ("Sept.", "Tues", "Thurs"), used alongside EN's.
EN_MONTH_ABBR_ALT = ["Jan", "Feb", "Mar", "Apr", "May", "June", "July", "Aug", "Sept", "Oct", "Nov", "Dec"]
EN_WEEKDAY_ABBR_ALT = ["Mon", "Tues", "Wed", "Thurs", "Fri", "Sat", "Sun"]


@dataclass(frozen=True)
class DateExample:
    text: str  # surface form, e.g. "Fri 3/18/22"
    iso: str  # target, e.g. "2022-03-18"
    fmt: str  # name of the format family that produced it


# ----------------------------------------------------------------------------- surface forms


def _ordinal_en(day: int) -> str:
    suffix = "th" if 11 <= day % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def has_two_digit_year(d: dt.date) -> bool:
    """True if a two-digit year can name ``d`` under the pivot (1950..2049)."""
    return TWO_DIGIT_FIRST <= d <= TWO_DIGIT_LAST


def _yy(d: dt.date) -> str:
    if not has_two_digit_year(d):
        raise ValueError(f"{d} has no two-digit year under the pivot {YEAR_PIVOT}")
    return f"{d.year % 100:02d}"


def _num(n: int, rng: random.Random) -> str:
    """A day or month number, zero-padded or not."""
    return f"{n:02d}" if rng.random() < 0.5 else str(n)


def _year(d: dt.date, rng: random.Random, apostrophe: bool = False) -> str:
    """Four digits, or (inside the pivot window, 40%) two digits, optionally written "'41"."""
    if has_two_digit_year(d) and rng.random() < 0.4:
        return ("'" if apostrophe else "") + _yy(d)
    return str(d.year)


def _en_month_abbr(d: dt.date, rng: random.Random) -> str:
    """ "Dec", "Dec.", "Sept.", "June": a dot only after a shortened name."""
    name = rng.choice((EN[1], EN_MONTH_ABBR_ALT))[d.month - 1]
    return name + "." if name != EN[0][d.month - 1] and rng.random() < 0.5 else name


def _weekday(d: dt.date, lang: tuple, rng: random.Random, sep: str = ", ") -> str:
    """Correct weekday prefix (full or abbreviated) or empty, with probability 1/2."""
    if rng.random() < 0.5:
        return ""
    names = (lang[2], lang[3], EN_WEEKDAY_ABBR_ALT) if lang is EN else (lang[2], lang[3])
    return rng.choice(names)[d.weekday()] + sep


def _en_month_day_year(d: dt.date, rng: random.Random) -> str:  # "Friday, March 18th, 2022", "Dec. 7th, '41"
    month = EN[0][d.month - 1] if rng.random() < 0.5 else _en_month_abbr(d, rng)
    day = rng.choice((str(d.day), _ordinal_en(d.day)))
    return f"{_weekday(d, EN, rng)}{month} {day}{rng.choice((', ', ' '))}{_year(d, rng, apostrophe=True)}"


def _en_day_month_year(d: dt.date, rng: random.Random) -> str:  # "18 March 2022", "Fri, 7 Dec '41"
    month = EN[0][d.month - 1] if rng.random() < 0.5 else _en_month_abbr(d, rng)
    day = rng.choice((str(d.day), f"{d.day:02d}", _ordinal_en(d.day)))
    weekday = _weekday(d, EN, rng, rng.choice((", ", " ")))
    return f"{weekday}{day} {month}{rng.choice((' ', ', '))}{_year(d, rng, apostrophe=True)}"


def _en_the_nth_of(d: dt.date, rng: random.Random) -> str:  # "the 18th of March, 2022", "4th of July 1776"
    weekday = _weekday(d, EN, rng, rng.choice((", ", " ")))
    the = rng.choice(("the ", "") if weekday else ("the ", "", "The "))
    month = EN[0][d.month - 1] if rng.random() < 0.7 else _en_month_abbr(d, rng)
    return f"{weekday}{the}{_ordinal_en(d.day)} of {month}{rng.choice((', ', ' '))}{_year(d, rng, True)}"


def _en_dd_mon_yy(d: dt.date, rng: random.Random) -> str:  # "18-Mar-22", "07-DEC-1941", "7 Dec 41"
    sep = rng.choice(("-", " "))
    return f"{_num(d.day, rng)}{sep}{EN[1][d.month - 1]}{sep}{_year(d, rng)}"


def _slash(d: dt.date, rng: random.Random) -> str:  # "Fri 3/18/22", "12/31/1999", "31/12/1999"
    """Month first, or (half the time) day first when the day cannot be a month (> 12)."""
    weekday = _weekday(d, EN, rng, rng.choice((", ", " ")))
    first, second = (d.day, d.month) if d.day > 12 and rng.random() < 0.5 else (d.month, d.day)
    return f"{weekday}{_num(first, rng)}/{_num(second, rng)}/{_year(d, rng)}"


def _dotted(d: dt.date, rng: random.Random) -> str:  # "18.03.2022", "Fr, 18.3.22"
    return f"{_weekday(d, DE, rng)}{_num(d.day, rng)}.{_num(d.month, rng)}.{_year(d, rng)}"


def _day_month_year_dash(d: dt.date, rng: random.Random) -> str:  # "18-03-2022"
    return f"{d.day:02d}-{d.month:02d}-{d.year}"


def _year_first(d: dt.date, rng: random.Random) -> str:  # "2022-03-18" (half), "2022/3/18", "20220318"
    r = rng.random()
    if r < 0.5:
        return d.isoformat()
    if r < 0.8:
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
    "slash": _slash,
    "dotted": _dotted,
    "day_month_year_dash": _day_month_year_dash,
    "year_first": _year_first,
    "french": _french,
    "german": _german,
    "spanish": _spanish,
}

_WORD_START = re.compile(r"(^|\W)(\w)")  # a letter after a non-word character: "18th" keeps its "t"


def title_case(text: str) -> str:
    """Capitalise each word that starts with a letter ("le 1er mars" -> "Le 1er Mars"; "18th" stays)."""
    return _WORD_START.sub(lambda m: m.group(1) + m.group(2).upper(), text)


def _casing(text: str, rng: random.Random) -> str:
    """As written (66%), lower case (12%), UPPER CASE (12%) or Title Case (10%)."""
    r = rng.random()
    if r < 0.12:
        return text.lower()
    if r < 0.24:
        return text.upper()
    return title_case(text) if r < 0.34 else text


def render_date(d: dt.date, rng: random.Random, fmt: str | None = None) -> tuple[str, str]:
    """One random surface form of ``d`` -> (text, format name). ``fmt`` picks a family from FORMATS."""
    fmt = fmt or rng.choice(list(FORMATS))
    return _casing(FORMATS[fmt](d, rng), rng), fmt


# ----------------------------------------------------------------------------- splits and sampling


def split_of(d: dt.date) -> str:
    """'heldout' for ~10% of calendar days (fixed multiplicative hash of the ordinal), else 'train'."""
    h = (d.toordinal() * 2654435761) % 2**32
    return "heldout" if (h >> 8) % 100 < HELDOUT_PERCENT else "train"


def sample_date(rng: random.Random, split: str = "train", exclude: Collection[dt.date] = ()) -> dt.date:
    """A date from ``split`` ('train', 'heldout' or 'all') and not in ``exclude``.

    With probability TWO_DIGIT_SHARE uniform in the two-digit-year window 1950..2049, else uniform in
    [FIRST_DATE, LAST_DATE].
    """
    if split not in ("train", "heldout", "all"):
        raise ValueError(f"unknown split {split!r}")
    while True:
        lo, hi = (
            (TWO_DIGIT_FIRST, TWO_DIGIT_LAST) if rng.random() < TWO_DIGIT_SHARE else (FIRST_DATE, LAST_DATE)
        )
        d = dt.date.fromordinal(rng.randint(lo.toordinal(), hi.toordinal()))
        if (split == "all" or split_of(d) == split) and d not in exclude:
            return d


def generate_examples(
    n: int, seed: int, split: str = "train", exclude: Collection[dt.date] = ()
) -> list[DateExample]:
    """``n`` examples with dates drawn from ``split`` (minus ``exclude``); fully determined by ``seed``."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        d = sample_date(rng, split, exclude)
        text, fmt = render_date(d, rng)
        out.append(DateExample(text=text, iso=d.isoformat(), fmt=fmt))
    return out


def generate_pairs(n: int, seed: int, split: str = "train") -> list[tuple[str, str]]:
    """``n`` (surface form, ISO date) pairs; see :func:`generate_examples`."""
    return [(e.text, e.iso) for e in generate_examples(n, seed, split)]
