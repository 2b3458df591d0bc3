"""Decoder rows named by the step they write, the output's probability, and the date model's
"no date-like token" warning (models/text/steps.py, models/text/analysis.py)."""

import math

import numpy as np
import pytest
import torch

from models.text import views
from models.text.analysis import DATES, load_text_model
from models.text.steps import (
    date_like_tokens,
    date_warning,
    output_probability,
    step_labels,
    step_probabilities,
)
from models.transformer import greedy_decode

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/models/conftest.py


def test_step_labels_hand_made():
    # decoder inputs <s> 1 7 with written tokens 1 7 </s>: each row reads its input and writes the next token
    assert step_labels(["<s>", "1", "7"], ["1", "7", "</s>"], [(0, 1), (1, 2), (2, 3)]) == [
        "<s> → 1",
        "1 → 7",
        "7 → </s>",
    ]
    # a merged span (rows 1..3 read "177") writes what its three rows write
    assert step_labels(["<s>", "177"], ["1", "7", "7", "6"], [(0, 1), (1, 4)]) == ["<s> → 1", "177 → 776"]
    with pytest.raises(ValueError):
        step_labels(["a"], ["b"], [])


def test_step_probabilities_against_a_hand_softmax():
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(4.0), 0.0]])  # softmax rows (1/4, 3/4), (4/5, 1/5)
    probs = step_probabilities(logits, [1, 1])
    assert probs == pytest.approx([0.75, 0.2])
    assert output_probability(probs) == pytest.approx(0.15)
    assert output_probability(None) is None
    with pytest.raises(ValueError):
        step_probabilities(logits, [1])


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("July 4, 1776", ["1776"]),  # "4" alone is one digit: not a year
        ("Dec. 7th, '41", ["41"]),
        ("31/12/1999", ["31", "12", "1999"]),
        ("1941-12-07", ["1941", "12", "07"]),
        ("The animal didn't cross the street", []),
        ("hello 5", []),
        ("12345", []),  # five digits in a row are no year
        ("March", []),
    ],
)
def test_date_like_tokens(text, tokens):
    assert date_like_tokens(text) == tokens
    assert (date_warning(text) is None) == bool(tokens)


@pytest.fixture(scope="module")
def dates():
    return load_text_model(DATES)


def test_date_model_rows_steps_and_warning(dates):
    a = dates.analyze("The animal didn't cross the street")
    assert a.input_warning and "No date-like token" in a.input_warning
    assert len(a.step_probs) == len(a.target) == len(a.predicted)
    steps = views.decoder_steps(a, False, False)
    assert steps[0] == f"<s> → {a.generated_text[0]}"
    # row t reads target token t and writes target token t + 1 (the greedy output shifted left)
    written = [*a.target.tokens[1:], "</s>"]
    assert steps == [f"{i} → {w}" for i, w in zip(a.target.tokens, written, strict=True)]
    ok = dates.analyze("July 4, 1776")
    assert ok.generated_text == "1776-07-04" and ok.input_warning is None
    # label smoothing (eps 0.1) keeps each step near 0.9 at most; the output's probability is their product
    assert all(0 < p < 0.95 for p in ok.step_probs)
    assert output_probability(ok.step_probs) == pytest.approx(float(np.prod(ok.step_probs)))


def test_date_model_maps_equal_greedy_decode(dates):
    """The analysis keeps the logits of its final teacher-forced pass; its maps are greedy_decode's own."""
    text = "Friday, March 18th, 2022"
    a = dates.analyze(text)
    src = torch.tensor([dates.tokenize(text).ids])
    tok = dates.tokenizer
    with torch.inference_mode():
        ys, attn = greedy_decode(dates.model, src, tok.bos_id, tok.eos_id, 11)
    assert ys[0, :-1].tolist() == a.target.ids
    np.testing.assert_allclose(a.blocks["cross"], attn.cross[:, 0].numpy(), atol=1e-6)
    np.testing.assert_allclose(a.blocks["decoder_self"], attn.dec_self[:, 0].numpy(), atol=1e-6)
