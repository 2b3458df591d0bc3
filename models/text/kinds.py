"""One rule for a Hugging Face text model's kind: encoder, causal (decoder-only) or seq2seq (encoder-decoder).

The kind decides which attention blocks a model has ("Attention Is All You Need", Section 3.2.3: encoder
self-attention, masked decoder self-attention, encoder-decoder attention) and how it is loaded. It is read
from the config and from transformers' own auto mappings, so a model type transformers learns is placed
without a hand list here. In order:

1. ``is_encoder_decoder`` in the config: seq2seq;
2. ``is_decoder``, or an architecture named ``...ForCausalLM`` / ``...LMHeadModel``: causal;
3. no ``is_encoder_decoder`` key at all and a model type with a sequence-to-sequence LM class: seq2seq;
4. a model type with a causal LM class and no masked LM class (GPT-2, Llama, ...): causal;
5. otherwise: encoder (BERT, RoBERTa, ... have both a masked and a causal LM class: encoder).

The server's ``--text-model`` argument, the export command and the notebook all call :func:`config_kind`
(the notebook through :func:`model_kind` for a model object).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal

TextKind = Literal[
    "encoder", "seq2seq", "causal"
]  # models.text.analysis.TextKind (this module stays import-light)
KINDS: tuple[TextKind, ...] = ("encoder", "seq2seq", "causal")
CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")


@lru_cache(maxsize=1)
def _mappings() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(causal LM, masked LM, seq2seq LM) model types of the installed transformers."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
    )

    return (
        frozenset(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES),
        frozenset(MODEL_FOR_MASKED_LM_MAPPING_NAMES),
        frozenset(MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES),
    )


def config_kind(config: dict[str, Any]) -> TextKind:
    """The kind of a model from its ``config.json`` as a dict (module docstring)."""
    if config.get("is_encoder_decoder"):
        return "seq2seq"
    archs = [str(a) for a in config.get("architectures") or []]
    if config.get("is_decoder") or any(a.endswith(CAUSAL_SUFFIXES) for a in archs):
        return "causal"
    causal, masked, seq2seq = _mappings()
    mt = config.get("model_type")
    if "is_encoder_decoder" not in config and mt in seq2seq:
        return "seq2seq"
    return "causal" if mt in causal and mt not in masked else "encoder"


def model_kind(model: Any) -> TextKind:
    """The kind of a loaded Hugging Face model: its config, plus its own class name as an architecture."""
    cfg = model.config
    d = cfg.to_dict() if hasattr(cfg, "to_dict") else dict(vars(cfg))
    d["architectures"] = [*(d.get("architectures") or []), type(model).__name__]
    return config_kind(d)
