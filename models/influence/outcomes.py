"""What each shipped model is judged by when heads are ablated: pure functions of a model and its inputs.

Call them inside :func:`models.influence.ablation.ablating` to get the ablated outcome, outside it for the
intact one:

- the date model: the greedily decoded date, and the log-probability of the right answer (teacher forced:
  sum over its characters and the closing </s> of log p(char | text, the characters before));
- a sentence encoder (MiniLM): each sentence's embedding is the mean of its last hidden states over the
  tokens of the attention mask, [CLS] and [SEP] included, as sentence-transformers' ``Pooling(mean)`` does
  (all-MiniLM-L6-v2 then L2-normalises, which a cosine ignores); a pair's score is the cosine of its two;
- a ViT (DINOv2): ``forward_features`` (after the final norm); the [CLS] feature's cosine to the intact
  run's, and each patch feature's cosine to its intact twin, averaged over the patches (prefix tokens out).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.text.dates.forms import TARGET_LEN
from models.text.dates.tokenizer import CharTokenizer, encode_batch
from models.transformer import Transformer, greedy_decode


@dataclass(frozen=True)
class DateOutcome:
    decoded: list[str]  # greedy output per text
    logp: np.ndarray  # (B,) float64: log p(answer | text), teacher forced


def exact_match(decoded: Sequence[str], answers: Sequence[str]) -> float:
    """Share of outputs equal to their answer, character for character."""
    if not answers:
        return float("nan")
    return float(np.mean([d == a for d, a in zip(decoded, answers, strict=True)]))


@torch.inference_mode()
def answer_logp(
    model: Transformer, tok: CharTokenizer, texts: Sequence[str], answers: Sequence[str]
) -> np.ndarray:
    """(B,) float64: log p(answer + </s> | text), summed over the answer's characters (padding skipped)."""
    device = next(model.parameters()).device
    src = encode_batch(tok, list(texts)).to(device)  # (B, Ts)
    tgt_in = encode_batch(tok, list(answers), bos=True).to(device)  # (B, Tt): <s> + answer
    tgt_out = encode_batch(tok, list(answers), eos=True).to(device)  # (B, Tt): answer + </s>
    logits, _ = model(src, tgt_in, need_weights=False)  # (B, Tt, V)
    logp = logits.double().log_softmax(-1).gather(-1, tgt_out[..., None])[..., 0]  # (B, Tt)
    return logp.masked_fill(tgt_out.eq(tok.pad_id), 0.0).sum(-1).cpu().numpy()


@torch.inference_mode()
def date_outcome(
    model: Transformer,
    tok: CharTokenizer,
    texts: Sequence[str],
    answers: Sequence[str],
    batch_size: int = 256,
) -> DateOutcome:
    """Greedy outputs and log p(answer) for each text (batches of ``batch_size``)."""
    device = next(model.parameters()).device
    decoded: list[str] = []
    logps: list[np.ndarray] = []
    for i in range(0, len(texts), batch_size):
        chunk, ans = list(texts[i : i + batch_size]), list(answers[i : i + batch_size])
        src = encode_batch(tok, chunk).to(device)  # (b, Ts)
        ys, _ = greedy_decode(model, src, tok.bos_id, tok.eos_id, TARGET_LEN + 1, return_attention=False)
        decoded.extend(tok.decode(row[1:]) for row in ys)
        logps.append(answer_logp(model, tok, chunk, ans))
    return DateOutcome(decoded=decoded, logp=np.concatenate(logps) if logps else np.zeros(0))


@torch.inference_mode()
def sentence_embeddings(model: nn.Module, tokenizer: object, sentences: Sequence[str]) -> Tensor:
    """(B, d) float32: mean of the last hidden states over each sentence's attention mask (padded batch)."""
    device = next(model.parameters()).device
    enc = tokenizer(list(sentences), padding=True, truncation=True, return_tensors="pt")  # type: ignore[operator]
    enc = {k: v.to(device) for k, v in enc.items()}
    hidden = model(**enc).last_hidden_state.float()  # (B, T, d)
    mask = enc["attention_mask"][..., None].float()  # (B, T, 1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # (B, d)


def pair_cosines(model: nn.Module, tokenizer: object, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
    """(P,) float64: cosine between the embeddings of each pair's two sentences."""
    emb = sentence_embeddings(model, tokenizer, [s for pair in pairs for s in pair])  # (2P, d)
    a, b = emb[0::2].double(), emb[1::2].double()  # (P, d) each
    return F.cosine_similarity(a, b, dim=-1).cpu().numpy()


@torch.inference_mode()
def vision_features(model: nn.Module, x: Tensor) -> Tensor:
    """(B, N, C) float32: the ViT's ``forward_features`` (final norm applied) for inputs (B, 3, R, R)."""
    return model.forward_features(x).float()


@dataclass(frozen=True)
class FeatureChange:
    cls_cos: (
        np.ndarray
    )  # (B,) cosine of the [CLS] feature (mean patch feature without [CLS]) to the intact one
    patch_cos: np.ndarray  # (B,) mean over patches of each patch feature's cosine to its intact twin


def feature_change(base: Tensor, feats: Tensor, num_prefix: int, has_cls: bool = True) -> FeatureChange:
    """Compare ablated features ``feats`` with intact ``base`` (both (B, N, C)), per image."""
    patches_b, patches = base[:, num_prefix:].double(), feats[:, num_prefix:].double()  # (B, P, C)
    if has_cls:
        cls_b, cls = base[:, 0].double(), feats[:, 0].double()  # (B, C)
    else:
        cls_b, cls = patches_b.mean(1), patches.mean(1)  # (B, C)
    cls_cos = F.cosine_similarity(cls, cls_b, dim=-1)  # (B,)
    patch_cos = F.cosine_similarity(patches, patches_b, dim=-1).mean(-1)  # (B,)
    return FeatureChange(cls_cos=cls_cos.cpu().numpy(), patch_cos=patch_cos.cpu().numpy())
