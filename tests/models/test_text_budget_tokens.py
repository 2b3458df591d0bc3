"""The live token counter's core (models/text/budget.py): counts as the analysis counts, and the longest
prefix that fits the limit, checked against a linear scan."""

import pytest

from models.text.analysis import DATES, MINILM, load_text_model
from models.text.budget import count_tokens, longest_fitting_prefix, token_budget

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/models/conftest.py


def brute_force(count, text: str, limit: int) -> int:
    return max(n for n in range(len(text) + 1) if count(text[:n]) <= limit)


@pytest.mark.parametrize("limit", [2, 3, 7, 100])
def test_longest_fitting_prefix_equals_a_linear_scan(limit):
    def words(t: str) -> int:  # a word tokenizer with [CLS] and [SEP]: monotone in the prefix
        return len(t.split()) + 2

    text = "the quick brown fox jumps over the lazy dog"
    assert longest_fitting_prefix(words, text, limit) == brute_force(words, text, limit)
    assert longest_fitting_prefix(len, text, limit) == min(limit, len(text))


@pytest.fixture(scope="module")
def minilm():
    return load_text_model(MINILM)


def test_minilm_counts_what_the_analysis_tokenizes_and_the_cut_fits(minilm):
    text = "The animal didn't cross the street because it was too tired. " * 50  # ~ 700 tokens
    assert count_tokens(minilm, "The cat sat.") == len(minilm.tokenize("The cat sat.").ids)
    b = token_budget(minilm, text)
    assert b.max_tokens == 512 and b.tokens > 512 and b.fits_chars is not None
    assert b.tokens == len(minilm.tokenizer(text)["input_ids"])
    assert len(minilm.tokenize(text[: b.fits_chars]).ids) <= 512  # the prefix is accepted by the analysis
    assert count_tokens(minilm, text[: b.fits_chars + 1]) > 512  # and it is the longest one
    assert token_budget(minilm, "short").fits_chars is None and not b.per_character


def test_date_model_counts_characters():
    dates = load_text_model(DATES)
    assert count_tokens(dates, "July 4, 1776") == len("July 4, 1776")
    b = token_budget(dates, "x" * 200)
    assert (b.tokens, b.max_tokens, b.fits_chars, b.per_character) == (200, 128, 128, True)
