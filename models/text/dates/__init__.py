"""The date-normalisation task and its model: free-form dates in four languages -> ISO 8601 ``YYYY-MM-DD``.

- :mod:`~models.text.dates.forms`: the task (conventions, surface-form generator, splits, sampling);
- :mod:`~models.text.dates.tokenizer`: a general character tokenizer and the date task's alphabet;
- :mod:`~models.text.dates.checkpoint`: the committed checkpoint and the hand-written evaluation dates
  beside it in ``models/checkpoints/``;
- :mod:`~models.text.dates.inference`: greedy decoding of date strings.

Every public name is re-exported here, so ``from models.text.dates import X`` works as before the split.
"""

from models.text.dates.checkpoint import (
    CHECKPOINTS,
    DEFAULT_CHECKPOINT,
    HUMAN_EVAL,
    load_date_model,
    load_human_eval,
    save_date_model,
)
from models.text.dates.forms import (
    DE,
    EN,
    EN_MONTH_ABBR_ALT,
    EN_WEEKDAY_ABBR_ALT,
    ES,
    FIRST_DATE,
    FORMATS,
    FR,
    HELDOUT_PERCENT,
    LANGUAGES,
    LAST_DATE,
    TARGET_LEN,
    TWO_DIGIT_FIRST,
    TWO_DIGIT_LAST,
    TWO_DIGIT_SHARE,
    YEAR_PIVOT,
    DateExample,
    generate_examples,
    generate_pairs,
    has_two_digit_year,
    render_date,
    sample_date,
    split_of,
    title_case,
)
from models.text.dates.inference import normalise_dates
from models.text.dates.tokenizer import CharTokenizer, build_date_tokenizer, encode_batch

__all__ = [
    "CHECKPOINTS",
    "DE",
    "DEFAULT_CHECKPOINT",
    "EN",
    "EN_MONTH_ABBR_ALT",
    "EN_WEEKDAY_ABBR_ALT",
    "ES",
    "FIRST_DATE",
    "FORMATS",
    "FR",
    "HELDOUT_PERCENT",
    "HUMAN_EVAL",
    "LANGUAGES",
    "LAST_DATE",
    "TARGET_LEN",
    "TWO_DIGIT_FIRST",
    "TWO_DIGIT_LAST",
    "TWO_DIGIT_SHARE",
    "YEAR_PIVOT",
    "CharTokenizer",
    "DateExample",
    "build_date_tokenizer",
    "encode_batch",
    "generate_examples",
    "generate_pairs",
    "has_two_digit_year",
    "load_date_model",
    "load_human_eval",
    "normalise_dates",
    "render_date",
    "sample_date",
    "save_date_model",
    "split_of",
    "title_case",
]
