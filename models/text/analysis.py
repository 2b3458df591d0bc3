"""Text models and attention capture: every layer and head, on real weights.

Three model kinds, covering the three uses of multi-head attention in "Attention Is All You Need"
(Section 3.2.3):

- ``encoder`` (BERT-like): encoder self-attention over the source;
- ``seq2seq`` (the paper's encoder-decoder; Marian; our date model): encoder self-attention, masked decoder
  self-attention and encoder-decoder (cross) attention, for a given target or the model's greedy output;
- ``causal`` (GPT-2): masked self-attention over the input (the decoder stack alone).

Capture is Hugging Face's own ``output_attentions=True`` on the *eager* attention implementation (the
fused SDPA kernel never materialises the probabilities); the plain path for timing uses SDPA. For the
paper Transformer, capture is ``need_weights=True`` (explicit softmax) and plain is SDPA.

Blocks are float32 numpy arrays ``(L, H, Tq, Tk)`` named ``encoder_self``, ``decoder_self`` and ``cross``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from models.text.dates import TARGET_LEN, CharTokenizer, load_date_model
from models.text.entropy_attention import (  # noqa: F401 (eager_attention_with_entropy: re-exported)
    ENTROPY_ATTENTION,
    eager_attention_with_entropy,
    recording_entropy,
    register_entropy_attention,
)
from models.text.kinds import TextKind  # declared once, in kinds.py
from models.text.random_models import MINILM_PACKAGE, build_random_text_model, package_model_dir
from models.text.stats import char_word_ids, word_ids_from_pieces
from models.text.steps import date_warning, step_probabilities
from models.text.value_norms import date_value_sites, hf_value_sites
from models.transformer import Transformer, greedy_decode
from models.value_norms import ValueNormRecord, record_value_norms

TextSource = Literal["package", "hub", "dates_checkpoint", "random"]
BlockKind = Literal["encoder_self", "decoder_self", "cross"]
BLOCK_ORDER: tuple[BlockKind, ...] = ("encoder_self", "decoder_self", "cross")


@dataclass(frozen=True)
class TextModelSpec:
    """Where a text model comes from. ``name``: package import name, Hub repo id, checkpoint path ("" =
    the committed default) or random architecture ("bert", "gpt2", "marian", "dates"); "" means ``id``
    except for a ``dates_checkpoint``. ``config``: extra from_pretrained kwargs, or the random model's
    config overrides. It is also the operator's allowlist entry (settings, TOML), validated by pydantic."""

    id: str
    kind: TextKind
    source: TextSource = "hub"
    name: str = ""
    label: str = ""
    max_tokens: int = 512
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name and self.source != "dates_checkpoint":
            object.__setattr__(self, "name", self.id)
        if self.max_tokens < 1:
            raise ValueError(f"text model {self.id!r}: max_tokens must be at least 1, not {self.max_tokens}")


MINILM = TextModelSpec("all-minilm-l6-v2", "encoder", "package", MINILM_PACKAGE, "all-MiniLM-L6-v2", 512)
DATES = TextModelSpec("dates-seq2seq", "seq2seq", "dates_checkpoint", "", "Date Transformer (ours)", 128)
HUB_EXAMPLES = (
    TextModelSpec("bert-base-uncased", "encoder", "hub", "bert-base-uncased", "BERT base uncased (Hub)", 512),
    TextModelSpec("gpt2", "causal", "hub", "gpt2", "GPT-2 small (Hub, decoder-only)", 1024),
    TextModelSpec(
        "opus-mt-en-de", "seq2seq", "hub", "Helsinki-NLP/opus-mt-en-de", "Marian opus-mt en→de (Hub)", 512
    ),
)


class TextInputError(ValueError):
    """The text cannot be analysed as given (too many tokens, a target for a model without a decoder)."""


@dataclass
class TokenSeq:
    """One tokenised sequence: ids, display tokens, special-token flags and word index per token."""

    ids: list[int]
    tokens: list[str]
    special: list[bool]
    word_ids: list[int | None]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class TextAnalysis:
    """Everything captured for one input. ``axes[block] = (query side, key side, causal)``."""

    model_id: str
    kind: TextKind
    source: TokenSeq
    target: TokenSeq | None
    generated_text: str | None
    predicted: list[str] | None  # per decoder row: the token the model predicts next there
    blocks: dict[str, np.ndarray]  # (L, H, Tq, Tk) float32
    axes: dict[str, tuple[str, str, bool]]
    forward_ms: float
    entropy: dict[str, np.ndarray] = field(default_factory=dict)  # (L, H, Tq) row entropies, when captured
    step_probs: list[float] | None = None  # per decoder row, P(the token it writes) (models/text/steps.py)
    input_warning: str | None = None  # e.g. the date model's "no date-like token" (models/text/steps.py)
    value_norms: dict[str, np.ndarray] = field(
        default_factory=dict
    )  # (L, H, Tk) ‖f_h(x_j)‖ per key, if known

    @property
    def nbytes(self) -> int:
        return int(sum(b.nbytes for b in self.blocks.values())) + 64 * (len(self.source) + 16)

    def side(self, name: str) -> TokenSeq:
        seq = self.source if name == "source" else self.target
        if seq is None:
            raise KeyError(f"this analysis has no {name} sequence")
        return seq


@dataclass(frozen=True)
class TextModelInfo:
    id: str
    kind: TextKind
    source: TextSource
    label: str
    max_tokens: int
    num_layers: int  # encoder layers (decoder layers for causal models)
    num_heads: int
    num_decoder_layers: int


def _norms(record: ValueNormRecord) -> dict[str, np.ndarray]:
    """Per block (L, H, Tk) value norms of the forward just recorded ({} when the model has no sites)."""
    return record.by_kind() if record.complete() else {}


def _stack(attentions) -> np.ndarray:
    """tuple of L (1, H, Tq, Tk) tensors -> (L, H, Tq, Tk) float32 numpy."""
    return torch.stack([a[0] for a in attentions]).float().cpu().numpy()  # (L, H, Tq, Tk)


class HFTextModel:
    """A Hugging Face model (BERT, GPT-2, Marian, ...) and its tokenizer."""

    def __init__(self, spec: TextModelSpec, model: torch.nn.Module, tokenizer: Any, device: torch.device):
        self.spec, self.model, self.tokenizer, self.device = spec, model, tokenizer, device
        cfg = model.config
        limit = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
        self.max_tokens = min(spec.max_tokens, int(limit)) if limit else spec.max_tokens
        hidden = [
            s for s in tokenizer.all_special_ids if s not in (tokenizer.unk_token_id, tokenizer.mask_token_id)
        ]
        self.special_ids = set(hidden)
        # BERT-family encoders capture through eager_attention_with_entropy (same maps, plus row entropies)
        self.records_entropy = (
            spec.kind == "encoder"
            and getattr(cfg, "model_type", "") == "bert"
            and getattr(cfg, "_attn_implementation", "") == "eager"
        )
        if self.records_entropy:
            register_entropy_attention()
            model.set_attn_implementation(ENTROPY_ATTENTION)
        self.value_sites = hf_value_sites(model)  # models/value_norms.py: value-weighted attention
        layers = (
            getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "encoder_layers", None) or cfg.n_layer
        )
        heads = (
            getattr(cfg, "num_attention_heads", None)
            or getattr(cfg, "encoder_attention_heads", None)
            or cfg.n_head
        )
        self.info = TextModelInfo(
            id=spec.id,
            kind=spec.kind,
            source=spec.source,
            label=spec.label or spec.id,  # never a path
            max_tokens=self.max_tokens,
            num_layers=int(layers),
            num_heads=int(heads),
            num_decoder_layers=int(getattr(cfg, "decoder_layers", 0) or 0),
        )

    def _seq(self, ids: list[int], word_ids: list[int | None] | None) -> TokenSeq:
        tokens = self.tokenizer.convert_ids_to_tokens(ids)
        special = [i in self.special_ids for i in ids]
        if word_ids is None:
            word_ids = word_ids_from_pieces(tokens, special)
        else:  # the tokenizer's word index, but special tokens never belong to a word
            word_ids = [None if s else w for w, s in zip(word_ids, special, strict=True)]
        return TokenSeq(ids=list(ids), tokens=tokens, special=special, word_ids=word_ids)

    def _check_len(self, n: int, what: str) -> None:
        if n > self.max_tokens:
            raise TextInputError(
                f"The {what} is {n} tokens long; {self.info.label} takes at most {self.max_tokens} tokens."
            )

    def tokenize(self, text: str) -> TokenSeq:
        """Source tokens (with the model's special tokens); TextInputError past ``max_tokens``."""
        enc = self.tokenizer(text, truncation=False)
        word_ids = enc.word_ids() if getattr(self.tokenizer, "is_fast", False) else None
        seq = self._seq(enc["input_ids"], word_ids)
        self._check_len(len(seq), "text")
        return seq

    def tokenize_target(self, text: str) -> TokenSeq:
        """Decoder input for a given target: [decoder start] + target tokens (the final </s> is a prediction)."""
        if self.spec.kind != "seq2seq":
            raise TextInputError(
                f"{self.info.label} has no decoder; a target text only applies to encoder-decoder models."
            )
        ids = self.tokenizer(text_target=text, truncation=False)["input_ids"]
        if ids and ids[-1] == self.tokenizer.eos_token_id:
            ids = ids[:-1]
        seq = self._seq([self.model.config.decoder_start_token_id, *ids], None)
        self._check_len(len(seq), "target")
        return seq

    def forward(self, src: TokenSeq, dec_ids: list[int] | None = None, capture: bool = True):
        """One forward pass (``capture``: eager + output_attentions). Needs a model loaded with the
        matching attention implementation (``load_text_model(..., attn_implementation=...)``)."""
        ids = torch.tensor([src.ids], device=self.device)  # (1, Ts)
        kwargs: dict[str, Any] = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if dec_ids is not None:
            kwargs["decoder_input_ids"] = torch.tensor([dec_ids], device=self.device)  # (1, Tt)
        return self.model(**kwargs, output_attentions=capture)

    @torch.inference_mode()
    def analyze(self, text: str, target: str | None = None) -> TextAnalysis:
        t0 = time.perf_counter()
        src = self.tokenize(text)
        tgt = self.tokenize_target(target) if target is not None else None
        if self.spec.kind != "seq2seq":
            with (
                recording_entropy(self.records_entropy) as record,
                record_value_norms(self.value_sites) as vn,
            ):
                out = self.forward(src)
            block = "encoder_self" if self.spec.kind == "encoder" else "decoder_self"
            causal = self.spec.kind == "causal"
            maps = _stack(out.attentions)  # (L, H, T, T)
            entropy = {}
            if len(record) == maps.shape[0]:
                entropy[block] = torch.stack([h[0] for h in record]).float().cpu().numpy()  # (L, H, T)
            return TextAnalysis(
                self.spec.id, self.spec.kind, src, None, None, None,
                {block: maps}, {block: ("source", "source", causal)},
                (time.perf_counter() - t0) * 1000, entropy, value_norms=_norms(vn),
            )  # fmt: skip
        with record_value_norms(self.value_sites) as vn:  # generate's calls are overwritten by the last pass
            return self._analyze_seq2seq(src, tgt, vn, t0)

    def _analyze_seq2seq(
        self, src: TokenSeq, tgt: TokenSeq | None, vn: ValueNormRecord, t0: float
    ) -> TextAnalysis:
        generated = None
        if tgt is None:
            ids = torch.tensor([src.ids], device=self.device)  # (1, Ts)
            max_new = min(self.max_tokens - 1, 2 * len(src) + 16)
            gen = self.model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, num_beams=1,
                max_new_tokens=max_new, min_new_tokens=1,
            )[0].tolist()  # fmt: skip
            generated = self.tokenizer.decode(gen, skip_special_tokens=True)
            tgt = self._seq(gen[:-1] if len(gen) > 1 else gen, None)
        out = self.forward(src, tgt.ids)
        predicted = self.tokenizer.convert_ids_to_tokens(out.logits[0].argmax(-1).tolist())
        prob = step_probabilities(out.logits[0], gen[1:]) if generated is not None and len(gen) > 1 else None
        norms = _norms(vn)
        return TextAnalysis(
            self.spec.id, "seq2seq", src, tgt, generated, predicted,
            {
                "encoder_self": _stack(out.encoder_attentions),
                "decoder_self": _stack(out.decoder_attentions),
                "cross": _stack(out.cross_attentions),
            },
            {"encoder_self": ("source", "source", False), "decoder_self": ("target", "target", True),
             "cross": ("target", "source", False)},
            (time.perf_counter() - t0) * 1000, step_probs=prob, value_norms=norms,
        )  # fmt: skip


class DateTextModel:
    """The paper Transformer (``models/transformer.py``) with the character tokenizer of the date task."""

    def __init__(
        self, spec: TextModelSpec, model: Transformer, tokenizer: CharTokenizer, device: torch.device
    ):
        self.spec, self.model, self.tokenizer, self.device = spec, model, tokenizer, device
        self.max_tokens = spec.max_tokens
        model.positional_encoding.extend(self.max_tokens)  # Section 3.5: a formula, not weights
        cfg = model.cfg
        self.info = TextModelInfo(
            spec.id, "seq2seq", spec.source, spec.label or "date model", self.max_tokens,
            cfg.n_enc_layers, cfg.n_heads, cfg.n_dec_layers,
        )  # fmt: skip
        self.value_sites = date_value_sites(model)  # models/value_norms.py: value-weighted attention

    def _seq(self, ids: list[int]) -> TokenSeq:
        tok = self.tokenizer
        tokens = [tok.itos[i] if tok.itos[i] != " " else "␣" for i in ids]
        special = [i in (tok.pad_id, tok.bos_id, tok.eos_id) for i in ids]
        return TokenSeq(
            ids=list(ids), tokens=tokens, special=special, word_ids=char_word_ids(tokens, special)
        )

    def _check_len(self, n: int, what: str) -> None:
        if n > self.max_tokens:
            raise TextInputError(
                f"The {what} is {n} characters long; {self.info.label} takes at most {self.max_tokens}."
            )

    def tokenize(self, text: str) -> TokenSeq:
        seq = self._seq(self.tokenizer.encode(text))
        self._check_len(len(seq), "text")
        return seq

    def tokenize_target(self, text: str) -> TokenSeq:
        seq = self._seq(self.tokenizer.encode(text, bos=True))
        self._check_len(len(seq), "target")
        return seq

    def forward(self, src: TokenSeq, dec_ids: list[int], capture: bool = True):
        s = torch.tensor([src.ids], device=self.device)  # (1, Ts)
        t = torch.tensor([dec_ids], device=self.device)  # (1, Tt)
        return self.model(s, t, need_weights=capture)

    @torch.inference_mode()
    def analyze(self, text: str, target: str | None = None) -> TextAnalysis:
        t0 = time.perf_counter()
        src = self.tokenize(text)
        tok = self.tokenizer
        with record_value_norms(self.value_sites) as vn:  # greedy steps are overwritten by the last full pass
            if target is None:
                s = torch.tensor([src.ids], device=self.device)  # (1, Ts)
                ys, _ = greedy_decode(self.model, s, tok.bos_id, tok.eos_id, TARGET_LEN + 1, False)
                ys = ys[0].tolist()
                generated = tok.decode(ys[1:])
                tgt = self._seq(ys[:-1])
                logits, attn = self.forward(src, tgt.ids)  # the pass greedy_decode would make, logits kept
                predicted = [tok.itos[i] for i in ys[1:]]
                prob = step_probabilities(logits[0], ys[1:])
            else:
                tgt = self.tokenize_target(target)
                logits, attn = self.forward(src, tgt.ids)
                generated, prob = None, None
                predicted = [tok.itos[i] for i in logits[0].argmax(-1).tolist()]
        return TextAnalysis(
            self.spec.id, "seq2seq", src, tgt, generated, predicted,
            {
                "encoder_self": attn.enc_self[:, 0].float().cpu().numpy(),  # (L, H, Ts, Ts)
                "decoder_self": attn.dec_self[:, 0].float().cpu().numpy(),  # (L, H, Tt, Tt)
                "cross": attn.cross[:, 0].float().cpu().numpy(),  # (L, H, Tt, Ts)
            },
            {"encoder_self": ("source", "source", False), "decoder_self": ("target", "target", True),
             "cross": ("target", "source", False)},
            (time.perf_counter() - t0) * 1000, step_probs=prob, input_warning=date_warning(text),
            value_norms=_norms(vn),
        )  # fmt: skip


TextModel = HFTextModel | DateTextModel


def load_text_model(
    spec: TextModelSpec, device: torch.device | str = "cpu", attn_implementation: str = "eager"
) -> TextModel:
    """Load an allowlisted text model. ``attn_implementation="sdpa"`` gives the plain (uncaptured) path."""
    device = torch.device(device)
    if spec.source == "dates_checkpoint":
        model, tok = load_date_model(spec.name or None, str(device))
        return DateTextModel(spec, model, tok, device)
    if spec.source == "random":
        model, tok = build_random_text_model(spec.name, spec.config, attn_implementation)
        if spec.name == "dates":
            return DateTextModel(spec, model.to(device), tok, device)
        return HFTextModel(spec, model.to(device), tok, device)
    from transformers import AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer

    if spec.source == "package":
        where, local = str(package_model_dir(spec.name)), True
    elif spec.source == "hub":
        where, local = spec.name, False
    else:
        raise ValueError(f"unknown text model source {spec.source!r}")
    tok = AutoTokenizer.from_pretrained(where, local_files_only=local)
    cls = AutoModelForSeq2SeqLM if spec.kind == "seq2seq" else AutoModel
    model = cls.from_pretrained(
        where, local_files_only=local, attn_implementation=attn_implementation, **spec.config
    )
    return HFTextModel(spec, model.to(device).eval(), tok, device)
