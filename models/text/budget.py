"""How many tokens a text is for one model, and the longest prefix that fits its limit (the text page's live
token counter and its "truncate to the limit" action). Tokenizer only: no forward pass."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from models.text.analysis import DateTextModel, TextModel


@dataclass(frozen=True)
class TokenBudget:
    tokens: int  # the text's length in the model's tokens, special tokens included (what the limit counts)
    max_tokens: int  # the model's limit
    fits_chars: int | None  # None when the text fits; else the longest prefix (in characters) that does
    per_character: bool  # the model's tokens are characters (the date model)


def count_tokens(model: TextModel, text: str) -> int:
    """Source tokens of ``text`` as the analysis counts them (the model's special tokens included)."""
    if isinstance(model, DateTextModel):
        return len(model.tokenizer.encode(text))
    return len(model.tokenizer(text, truncation=False)["input_ids"])


def longest_fitting_prefix(count: Callable[[str], int], text: str, limit: int) -> int:
    """The largest n with count(text[:n]) <= limit, by binary search (O(log len) calls of ``count``).

    Assumes a longer prefix never has fewer tokens (true of character and subword tokenizers up to a
    word piece re-split at the cut, which can only add tokens: the search then stops a little earlier)."""
    lo, hi = 0, len(text)  # invariant: count(text[:lo]) <= limit (or lo == 0), count(text[:hi + 1]) > limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count(text[:mid]) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return lo


def token_budget(model: TextModel, text: str) -> TokenBudget:
    """The text's token count for ``model``, its limit, and (when over it) the prefix that fits."""
    n, limit = count_tokens(model, text), model.max_tokens
    cut = None if n <= limit else longest_fitting_prefix(lambda t: count_tokens(model, t), text, limit)
    return TokenBudget(n, limit, cut, isinstance(model, DateTextModel))
