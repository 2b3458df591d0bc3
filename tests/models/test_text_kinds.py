"""One rule for a Hugging Face model's kind (models/text/kinds.py): it agrees with the hand list the notebook
used and with transformers' own auto mappings, for configs and for model objects."""

from __future__ import annotations

import pytest
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
)

from models.text.kinds import config_kind, model_kind
from models.text.random_models import build_random_text_model

# The notebook's hand list of decoder-only model types before the rule (app/notebook.py at d399545).
OLD_CAUSAL_TYPES = {
    "gpt2", "gpt_neo", "gpt_neox", "gptj", "llama", "mistral", "mixtral", "opt", "bloom", "falcon", "phi",
    "phi3", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "codegen", "ctrl", "xglm", "olmo", "olmo2",
}  # fmt: skip


@pytest.mark.parametrize("model_type", sorted(OLD_CAUSAL_TYPES))
def test_agrees_with_the_old_hand_list(model_type):
    assert config_kind({"model_type": model_type}) == "causal"
    assert config_kind({"model_type": model_type, "is_encoder_decoder": False}) == "causal"


def test_agrees_with_the_auto_mappings():
    causal, masked = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES), set(MODEL_FOR_MASKED_LM_MAPPING_NAMES)
    seq2seq = set(MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES)
    for mt in causal - masked - seq2seq:
        assert config_kind({"model_type": mt}) == "causal", mt
    for mt in masked - seq2seq:
        assert config_kind({"model_type": mt}) == "encoder", mt
    for mt in seq2seq:
        assert config_kind({"model_type": mt}) == "seq2seq", mt
        assert config_kind({"model_type": mt, "is_encoder_decoder": True}) == "seq2seq", mt
    # the config's own flags and architectures come first
    assert config_kind({"model_type": "bart", "is_decoder": True, "is_encoder_decoder": False}) == "causal"
    assert config_kind({"model_type": "bert", "architectures": ["BertLMHeadModel"]}) == "causal"
    assert config_kind({"model_type": "roberta", "architectures": ["RobertaForMaskedLM"]}) == "encoder"
    assert config_kind({"model_type": "not-a-model"}) == "encoder"


@pytest.mark.parametrize(("arch", "kind"), [("bert", "encoder"), ("gpt2", "causal"), ("marian", "seq2seq")])
def test_model_objects(arch, kind):
    model, _ = build_random_text_model(arch)
    assert model_kind(model) == kind
