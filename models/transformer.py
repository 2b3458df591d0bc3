"""The Transformer of "Attention Is All You Need" (Vaswani et al., 2017) in one readable file.

Names follow the paper. Every attention module *returns* its probabilities; nothing is stored on
modules, so a forward pass has no side effects and the maps can be drawn directly.

Mask conventions (two kinds, never mixed):
- ``mask`` given to :func:`attention` / :class:`MultiHeadAttention`: boolean, ``True`` = this query
  may attend to this key. It broadcasts against the scores ``(B, H, Tq, Tk)``.
- ``*_pad_mask`` given to :class:`Transformer`: boolean ``(B, T)``, ``True`` = this position is
  padding (PyTorch's ``key_padding_mask`` convention). ``None`` means "derive it from ``pad_id``".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from models.figures.positional import sinusoidal_encoding


@dataclass
class TransformerConfig:
    """Hyper-parameters; defaults are the paper's base model (Table 3), except ``max_len``."""

    src_vocab: int
    tgt_vocab: int
    d_model: int = 512
    n_heads: int = 8
    d_ff: int = 2048
    n_enc_layers: int = 6
    n_dec_layers: int = 6
    max_len: int = 512
    dropout: float = 0.1
    pad_id: int = 0
    use_sdpa: bool = True  # fused kernel when probabilities are not requested (need_weights=False)
    # Section 3.4: one weight matrix for both embeddings and the pre-softmax linear layer (needs a shared
    # vocabulary). Off by default, so the two embeddings and the generator are three separate matrices.
    tie_embeddings: bool = False

    def __post_init__(self) -> None:
        if self.tie_embeddings and self.src_vocab != self.tgt_vocab:
            raise ValueError("tie_embeddings needs src_vocab == tgt_vocab (one shared vocabulary)")
        if self.d_model % self.n_heads != 0:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.d_model % 2 != 0:
            raise ValueError("d_model must be even for the sinusoidal encoding (Section 3.5)")


@dataclass
class Seq2SeqAttention:
    """Attention probabilities of every layer and head, stacked over layers.

    enc_self: (L_enc, B, H, Ts, Ts)  encoder self-attention
    dec_self: (L_dec, B, H, Tt, Tt)  masked decoder self-attention (upper triangle exactly 0)
    cross:    (L_dec, B, H, Tt, Ts)  encoder-decoder attention
    """

    enc_self: Tensor
    dec_self: Tensor
    cross: Tensor


def attention(query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Scaled dot-product attention, Section 3.2.1: softmax(Q K^T / sqrt(d_k)) V.

    query (..., Tq, d_k), key (..., Tk, d_k), value (..., Tk, d_v); ``mask`` is boolean, True = keep.
    Returns ``(output (..., Tq, d_v), probs (..., Tq, Tk))``. Masked positions get probability exactly 0;
    a fully-masked row gets all-zero probabilities (and a zero output) instead of NaN.
    """
    d_k = query.size(-1)
    scores = (query / math.sqrt(d_k)) @ key.transpose(-2, -1)  # (..., Tq, Tk); scaling q is cheaper
    if mask is not None:
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be boolean (True = may attend), got {mask.dtype}")
        if not bool(mask.all()):
            scores.masked_fill_(~mask, float("-inf"))  # exp(-inf) = 0: masked probabilities are exactly 0
    probs = scores.softmax(dim=-1)
    if mask is not None and not bool(mask.any(dim=-1).all()):
        probs = probs.nan_to_num(nan=0.0)  # a fully-masked row is all -inf: zeros instead of NaN
    return probs @ value, probs


def subsequent_mask(size: int, device: torch.device | str | None = None) -> Tensor:
    """Causal mask (Section 3.2.3): (size, size) boolean, True where key position <= query position."""
    return torch.ones(size, size, dtype=torch.bool, device=device).tril()


class MultiHeadAttention(nn.Module):
    """Section 3.2.2: MultiHead(Q, K, V) = Concat(head_1..head_h) W^O, head_i = Attention(Q W^Q_i, ...)."""

    def __init__(self, d_model: int, n_heads: int, use_sdpa: bool = True) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.d_k = d_model // n_heads
        self.use_sdpa = use_sdpa
        self.w_q = nn.Linear(d_model, d_model)  # all heads' W^Q_i side by side
        self.w_k = nn.Linear(d_model, d_model)
        self.w_v = nn.Linear(d_model, d_model)
        self.w_o = nn.Linear(d_model, d_model)

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None, need_weights: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """query (B, Tq, d_model), key/value (B, Tk, d_model).

        Returns (out (B, Tq, d_model), probs (B, H, Tq, Tk)), or (out, None) when ``need_weights`` is False.
        """
        B, Tq, d_model = query.shape
        Tk = key.size(1)
        q = self.w_q(query).view(B, Tq, self.n_heads, self.d_k).transpose(1, 2)  # (B, H, Tq, d_k)
        k = self.w_k(key).view(B, Tk, self.n_heads, self.d_k).transpose(1, 2)  # (B, H, Tk, d_k)
        v = self.w_v(value).view(B, Tk, self.n_heads, self.d_k).transpose(1, 2)  # (B, H, Tk, d_k)
        probs: Tensor | None = None
        if need_weights or not self.use_sdpa:
            out, probs = attention(q, k, v, mask)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # same maths, fused
        out = out.transpose(1, 2).contiguous().view(B, Tq, d_model)  # (B, Tq, H * d_k)
        return self.w_o(out), (probs if need_weights else None)


class PositionwiseFeedForward(nn.Module):
    """Section 3.3: FFN(x) = max(0, x W_1 + b_1) W_2 + b_2."""

    def __init__(self, d_model: int, d_ff: int) -> None:
        super().__init__()
        self.w_1 = nn.Linear(d_model, d_ff)
        self.w_2 = nn.Linear(d_ff, d_model)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_2(F.relu(self.w_1(x)))


class Embeddings(nn.Module):
    """Section 3.4: learned token embeddings, multiplied by sqrt(d_model)."""

    def __init__(self, vocab: int, d_model: int) -> None:
        super().__init__()
        self.lut = nn.Embedding(vocab, d_model)
        self.d_model = d_model

    def forward(self, ids: Tensor) -> Tensor:
        return self.lut(ids) * math.sqrt(self.d_model)  # (B, T, d_model)


class PositionalEncoding(nn.Module):
    """Section 3.5 (+ dropout on the sum, Section 5.4): x + PE[:T]. The table is a non-persistent buffer.

    PE(pos, 2i) = sin(pos / 10000^(2i/d_model)) and PE(pos, 2i+1) = cos(pos / 10000^(2i/d_model)), computed
    in float64 by :func:`models.figures.positional.sinusoidal_encoding` (the one implementation of the
    formula; the figures check its "relative position is a linear map" property) and stored as float32.
    """

    def __init__(self, d_model: int, max_len: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.d_model = d_model
        self.register_buffer("pe", self.table(max_len, d_model), persistent=False)
        self.dropout = nn.Dropout(dropout)

    @staticmethod
    def table(max_len: int, d_model: int) -> Tensor:
        """The (max_len, d_model) float32 table of Section 3.5."""
        return torch.from_numpy(sinusoidal_encoding(max_len, d_model)).float()  # (max_len, d_model)

    def extend(self, max_len: int) -> None:
        """Grow the table to ``max_len`` positions: the sinusoids are a formula, not weights (Section 3.5)."""
        if self.pe.size(0) < max_len:
            self.pe = self.table(max_len, self.d_model).to(self.pe.device)

    def forward(self, x: Tensor) -> Tensor:
        T = x.size(1)
        if self.pe.size(0) < T:
            raise ValueError(f"sequence length {T} exceeds max_len {self.pe.size(0)}")
        return self.dropout(x + self.pe[:T].to(x.dtype))  # (B, T, d_model)


class EncoderLayer(nn.Module):
    """Section 3.1: self-attention then FFN, each as post-norm LayerNorm(x + Dropout(Sublayer(x)))."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(cfg.d_model, cfg.n_heads, cfg.use_sdpa)
        self.feed_forward = PositionwiseFeedForward(cfg.d_model, cfg.d_ff)
        self.norm_1 = nn.LayerNorm(cfg.d_model)
        self.norm_2 = nn.LayerNorm(cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, x: Tensor, src_mask: Tensor | None, need_weights: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        a, probs = self.self_attn(x, x, x, src_mask, need_weights)
        x = self.norm_1(x + self.dropout(a))
        x = self.norm_2(x + self.dropout(self.feed_forward(x)))
        return x, probs


class DecoderLayer(nn.Module):
    """Section 3.1: masked self-attention, encoder-decoder (cross) attention, FFN; post-norm residuals."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.self_attn = MultiHeadAttention(cfg.d_model, cfg.n_heads, cfg.use_sdpa)
        self.cross_attn = MultiHeadAttention(cfg.d_model, cfg.n_heads, cfg.use_sdpa)
        self.feed_forward = PositionwiseFeedForward(cfg.d_model, cfg.d_ff)
        self.norm_1 = nn.LayerNorm(cfg.d_model)
        self.norm_2 = nn.LayerNorm(cfg.d_model)
        self.norm_3 = nn.LayerNorm(cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, x: Tensor, memory: Tensor, src_mask: Tensor | None, tgt_mask: Tensor, need_weights: bool = True
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        a, self_probs = self.self_attn(x, x, x, tgt_mask, need_weights)
        x = self.norm_1(x + self.dropout(a))
        a, cross_probs = self.cross_attn(x, memory, memory, src_mask, need_weights)
        x = self.norm_2(x + self.dropout(a))
        x = self.norm_3(x + self.dropout(self.feed_forward(x)))
        return x, self_probs, cross_probs


def _stack(probs: list[Tensor | None]) -> Tensor | None:
    return None if not probs or probs[0] is None else torch.stack(probs)  # (L, B, H, Tq, Tk)


class Encoder(nn.Module):
    """Section 3.1: a stack of N identical encoder layers."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_enc_layers))

    def forward(
        self, x: Tensor, src_mask: Tensor | None, need_weights: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        probs = []
        for layer in self.layers:
            x, p = layer(x, src_mask, need_weights)
            probs.append(p)
        return x, _stack(probs)


class Decoder(nn.Module):
    """Section 3.1: a stack of N identical decoder layers."""

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_dec_layers))

    def forward(
        self, x: Tensor, memory: Tensor, src_mask: Tensor | None, tgt_mask: Tensor, need_weights: bool = True
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        self_probs, cross_probs = [], []
        for layer in self.layers:
            x, s, c = layer(x, memory, src_mask, tgt_mask, need_weights)
            self_probs.append(s)
            cross_probs.append(c)
        return x, _stack(self_probs), _stack(cross_probs)


class Transformer(nn.Module):
    """The encoder-decoder model of Section 3 (Figure 1), with a linear + softmax generator (Section 3.4).

    Two details differ from the paper's equations. Every projection is an ``nn.Linear`` with a bias:
    W^Q, W^K, W^V, W^O (Section 3.2.2 writes them without biases) and the generator; the FFN's b_1, b_2
    are the paper's own (Section 3.3). The embeddings are tied as in Section 3.4 only when
    ``cfg.tie_embeddings`` is set (source embedding, target embedding and generator weight then share
    one matrix; the generator keeps its bias); otherwise they are three separate matrices.
    """

    def __init__(self, cfg: TransformerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.src_embed = Embeddings(cfg.src_vocab, cfg.d_model)
        self.tgt_embed = Embeddings(cfg.tgt_vocab, cfg.d_model)
        self.positional_encoding = PositionalEncoding(cfg.d_model, cfg.max_len, cfg.dropout)
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.generator = nn.Linear(cfg.d_model, cfg.tgt_vocab)
        if cfg.tie_embeddings:  # Section 3.4: the same (vocab, d_model) matrix in all three places
            self.tgt_embed.lut.weight = self.src_embed.lut.weight
            self.generator.weight = self.src_embed.lut.weight
        for p in self.parameters():  # Glorot init (Annotated Transformer); a shared matrix is listed once
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def encode(
        self, src: Tensor, src_pad_mask: Tensor | None = None, need_weights: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """src (B, Ts) -> (memory (B, Ts, d_model), enc_self (L, B, H, Ts, Ts) or None)."""
        if src_pad_mask is None:
            src_pad_mask = src.eq(self.cfg.pad_id)
        src_mask = ~src_pad_mask[:, None, None, :]  # (B, 1, 1, Ts) True = may attend
        x = self.positional_encoding(self.src_embed(src))
        return self.encoder(x, src_mask, need_weights)

    def decode(
        self,
        tgt: Tensor,
        memory: Tensor,
        src_pad_mask: Tensor | None,
        tgt_pad_mask: Tensor | None = None,
        need_weights: bool = True,
    ) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """tgt (B, Tt) -> (logits (B, Tt, tgt_vocab), dec_self (L, B, H, Tt, Tt), cross (L, B, H, Tt, Ts)).

        ``src_pad_mask`` (B, Ts) True = padding; ``None`` means the source has no padding.
        """
        if tgt_pad_mask is None:
            tgt_pad_mask = tgt.eq(self.cfg.pad_id)
        causal = subsequent_mask(tgt.size(1), tgt.device)  # (Tt, Tt)
        tgt_mask = causal[None, None] & ~tgt_pad_mask[:, None, None, :]  # (B, 1, Tt, Tt)
        src_mask = None if src_pad_mask is None else ~src_pad_mask[:, None, None, :]  # (B, 1, 1, Ts)
        x = self.positional_encoding(self.tgt_embed(tgt))
        x, dec_self, cross = self.decoder(x, memory, src_mask, tgt_mask, need_weights)
        return self.generator(x), dec_self, cross

    def forward(
        self,
        src: Tensor,
        tgt: Tensor,
        src_pad_mask: Tensor | None = None,
        tgt_pad_mask: Tensor | None = None,
        need_weights: bool = True,
    ) -> tuple[Tensor, Seq2SeqAttention | None]:
        """Teacher-forced pass: src (B, Ts), tgt (B, Tt) -> (logits (B, Tt, tgt_vocab), attention or None)."""
        if src_pad_mask is None:
            src_pad_mask = src.eq(self.cfg.pad_id)
        memory, enc_self = self.encode(src, src_pad_mask, need_weights)
        logits, dec_self, cross = self.decode(tgt, memory, src_pad_mask, tgt_pad_mask, need_weights)
        if not need_weights:
            return logits, None
        return logits, Seq2SeqAttention(enc_self=enc_self, dec_self=dec_self, cross=cross)


@torch.no_grad()
def greedy_decode(
    model: Transformer, src_ids: Tensor, bos_id: int, eos_id: int, max_len: int, return_attention: bool = True
) -> tuple[Tensor, Seq2SeqAttention | None]:
    """Greedy decoding, then one teacher-forced pass over the result to collect every attention map.

    src_ids (B, Ts) or (Ts,), padded with ``model.cfg.pad_id``. Returns ``generated_ids`` (B, 1 + T), starting
    with ``bos_id``; rows that stop early are padded after ``eos_id``. The attention covers the decoder inputs
    ``generated_ids[:, :-1]``: decoder row t is the step that produced ``generated_ids[:, t + 1]``, so
    ``dec_self`` is (L, B, H, T, T) and ``cross`` is (L, B, H, T, Ts). Runs in eval mode (no dropout) and
    restores the model's previous train/eval mode afterwards. ``return_attention=False`` skips the final
    pass and returns ``None`` for the attention (for fast evaluation).
    """
    if src_ids.dim() == 1:
        src_ids = src_ids.unsqueeze(0)  # (1, Ts)
    pad_id = model.cfg.pad_id
    was_training = model.training
    model.eval()
    try:
        src_pad_mask = src_ids.eq(pad_id)
        memory, _ = model.encode(src_ids, src_pad_mask, need_weights=False)
        ys = torch.full((src_ids.size(0), 1), bos_id, dtype=torch.long, device=src_ids.device)  # (B, 1)
        finished = torch.zeros(src_ids.size(0), dtype=torch.bool, device=src_ids.device)
        for _ in range(max_len):
            logits, _, _ = model.decode(ys, memory, src_pad_mask, need_weights=False)
            next_id = logits[:, -1].argmax(dim=-1).masked_fill(finished, pad_id)  # (B,)
            ys = torch.cat([ys, next_id[:, None]], dim=1)  # (B, t + 1)
            finished |= next_id.eq(eos_id)
            if bool(finished.all()):
                break
        attn = None
        if return_attention:
            _, attn = model(src_ids, ys[:, :-1], src_pad_mask, need_weights=True)
    finally:
        model.train(was_training)
    return ys, attn
