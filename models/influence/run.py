"""The influence measures on a loaded model and one of its analyses: the functions every front door calls
(web service, notebook, ``python -m app export``). Each returns numpy arrays and plain values.

Supported: BERT-family encoders (Hugging Face, e.g. all-MiniLM-L6-v2), the paper Transformer (the date model;
contributions of its encoder, relevancy of a decoded character) and timm ViTs (DINOv2 with LayerScale, ViT,
DeiT). Other models raise :class:`UnsupportedModel`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from models.influence.alti import contribution_rollout, layer_contributions
from models.influence.curves import Curves, bert_pair_score, curves, seq2seq_score, vit_score
from models.influence.relevancy import pair_relevance, sentence_embedding, seq2seq_relevance, vit_relevance
from models.influence.trace import bert_parts, paper_encoder_parts, trace_post_ln, trace_vit
from models.text.analysis import DateTextModel, TextAnalysis, TextModel
from models.vision.analysis import VisionAnalysis, VisionModel


class UnsupportedModel(ValueError):
    """The model has no implementation of these measures (decoder-only LMs, Marian, ...)."""


def text_family(tm: TextModel) -> str:
    """ "dates" (the paper Transformer) or "bert" (a BERT-family encoder); UnsupportedModel otherwise."""
    if isinstance(tm, DateTextModel):
        return "dates"
    m = tm.model
    if tm.spec.kind == "encoder" and hasattr(getattr(m, "encoder", None), "layer"):
        return "bert"
    raise UnsupportedModel(
        f"{tm.info.label}: contributions and relevancy are implemented for BERT-family encoders, the date "
        "model and timm ViTs."
    )


def vision_input(vm: VisionModel, analysis: VisionAnalysis) -> torch.Tensor:
    """The analysed R x R image as the model's input (1, 3, R, R): normalised, not cropped again."""
    arr = np.asarray(analysis.image.convert("RGB"), dtype=np.float32) / 255.0  # (R, R, 3)
    arr = (arr - np.asarray(vm.info.mean, np.float32)) / np.asarray(vm.info.std, np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1)[None].to(vm.device, vm.dtype)  # (1, 3, R, R)


def attention_rollout(maps: np.ndarray) -> np.ndarray:
    """Abnar & Zuidema 2020: (L, H, T, T) -> (T, T) = Ã_L ... Ã_1, Ã = rownorm(mean_h A + I)."""
    R = np.eye(maps.shape[-1], dtype=np.float64)
    for a in maps:
        a = a.astype(np.float64).mean(0) + np.eye(a.shape[-1])
        R = (a / a.sum(-1, keepdims=True)) @ R
    return R


# ------------------------------------------------------------------------------------------- contributions


@dataclass
class Contributions:
    """ALTI per layer (models/influence/alti.py). Text: token x token; vision: the [CLS] row only."""

    layers: np.ndarray  # text: (L, T, T); vision: (L, P) layer l's contributions to [CLS] of each patch
    rollout: np.ndarray  # text: (L, T, T) R_l = C_l ... C_1; vision: (L, P) the [CLS] row of R_l
    labels: list[str] = field(default_factory=list)  # text: the tokens (encoder side)
    attention_rollout: np.ndarray | None = (
        None  # vision: (P,) the analysis's attention rollout, for comparison
    )


@torch.no_grad()
def text_contributions(tm: TextModel, a: TextAnalysis) -> Contributions:
    """Encoder contributions of the analysed sentence (the date model: its encoder over the source)."""
    fam = text_family(tm)
    ids = torch.tensor([a.source.ids], device=tm.device)  # (1, T)
    if fam == "bert":
        layers = trace_post_ln(
            bert_parts(tm.model), lambda: tm.model(input_ids=ids, attention_mask=torch.ones_like(ids))
        )
    else:
        layers = trace_post_ln(paper_encoder_parts(tm.model), lambda: tm.model.encode(ids))
    C = layer_contributions(layers)  # (L, T, T)
    R = contribution_rollout(C)
    return Contributions(C.cpu().numpy(), R.cpu().numpy(), list(a.source.tokens))


@torch.no_grad()
def vision_contributions(vm: VisionModel, analysis: VisionAnalysis) -> Contributions:
    """Each patch's contribution to the [CLS] output (mean patch row without [CLS]), per layer and rolled out."""
    layers, _ = trace_vit(vm.model, vision_input(vm, analysis))
    C = layer_contributions(layers)  # (L, N, N)
    R = contribution_rollout(C)
    p0 = analysis.num_prefix_tokens

    def row(M: torch.Tensor) -> torch.Tensor:  # (L, N, N) -> (L, P)
        return M[:, 0, p0:] if analysis.has_cls else M[:, p0:, p0:].mean(1)

    return Contributions(row(C).cpu().numpy(), row(R).cpu().numpy(), attention_rollout=analysis.rollout)


# --------------------------------------------------------------------------------------- relevancy, curves


@dataclass
class Relevance:
    """Chefer et al. 2021 relevancy of one target, beside two attention-only maps of the same output."""

    target: str  # what was explained, in words
    value: float  # the target's value on the unperturbed input
    relevance: np.ndarray  # (n,) over the source tokens or the patches
    rollout: np.ndarray  # (n,) attention rollout's estimate for the same output
    attention: np.ndarray  # (n,) the last layer's head-mean attention of the same output
    decoder: np.ndarray | None = None  # date model: (step + 1,) relevance of the decoder's own inputs
    step: int | None = None  # date model: the decoder row explained
    token: str | None = None  # date model: the character decoded there
    query: int | None = None  # vision: the patch explained (None = [CLS])


def _dates_token(tm: DateTextModel, src: torch.Tensor, tgt: torch.Tensor, step: int) -> int:
    with torch.no_grad():
        return int(tm.model(src, tgt, need_weights=False)[0][0, step].argmax())


def text_relevance(tm: TextModel, a: TextAnalysis, pair: str | None = None, step: int = 0) -> Relevance:
    """BERT: the cosine of the mean-pooled embeddings of the sentence and ``pair``; the date model: the
    log-probability of the character decoded at decoder row ``step``."""
    fam = text_family(tm)
    src = torch.tensor([a.source.ids], device=tm.device)  # (1, Ts)
    if fam == "bert":
        if not pair or not pair.strip():
            raise ValueError("MiniLM's target is the similarity of two sentences: give a second sentence.")
        other = sentence_embedding(tm.model, torch.tensor([tm.tokenize(pair).ids], device=tm.device))
        R, value = pair_relevance(tm.model, src, other)
        maps = a.blocks["encoder_self"]  # (L, H, T, T)
        return Relevance(
            "cosine similarity of the two sentences' mean-pooled embeddings", value,
            (R - torch.eye(R.shape[0])).mean(0).cpu().numpy(),  # beyond the identity every token starts with
            attention_rollout(maps).mean(0), maps[-1].mean(0).mean(0),
        )  # fmt: skip
    tgt = torch.tensor([a.target.ids], device=tm.device)  # (1, Tt)
    if not 0 <= step < tgt.shape[1]:
        raise ValueError(f"step must be in 0..{tgt.shape[1] - 1}, not {step}")
    token = _dates_token(tm, src, tgt, step)
    rel, value = seq2seq_relevance(tm.model, src, tgt, step, token)
    cross = a.blocks["cross"][-1].mean(0)[step]  # (Ts,) head-mean cross attention of row step
    char = tm.tokenizer.itos[token]
    return Relevance(
        f"log-probability of {char!r}, decoded at output position {step + 1}", value,
        rel.ts[step].cpu().numpy(), cross @ attention_rollout(a.blocks["encoder_self"]), cross,
        rel.tt[step, : step + 1].cpu().numpy(), step, char,
    )  # fmt: skip


def vision_relevance(vm: VisionModel, analysis: VisionAnalysis, query: int | None = None) -> Relevance:
    """The [CLS] feature (``query`` None) or patch ``query``'s final feature, along its own direction."""
    p0 = analysis.num_prefix_tokens
    if query is None and not analysis.has_cls:
        raise UnsupportedModel("this model has no [CLS] token: click a patch to explain its feature")
    q = 0 if query is None else p0 + int(query)
    R, value = vit_relevance(vm.model, vision_input(vm, analysis), q)
    maps = np.stack([m.numpy() for m in analysis.maps()])  # (L, H, N, N), one layer made at a time
    what = "the [CLS] feature" if query is None else f"patch {query}'s feature"
    return Relevance(
        f"{what}'s length along its own direction", value, R[q, p0:].cpu().numpy(),
        attention_rollout(maps)[q, p0:], maps[-1].mean(0)[q, p0:], query=query,
    )  # fmt: skip


@dataclass
class CurvesResult:
    curves: Curves
    output: str  # the output the curves follow, in words
    removal: str  # what removing a unit means
    units: int


def text_curves(
    tm: TextModel, a: TextAnalysis, rel: Relevance, pair: str | None, steps: int = 10
) -> CurvesResult:
    """Deletion/insertion curves of the relevance, rollout and attention rankings of ``rel``."""
    fam = text_family(tm)
    src = torch.tensor([a.source.ids], device=tm.device)  # (1, Ts)
    maps = {"relevancy": rel.relevance, "rollout": rel.rollout, "attention": rel.attention}
    if fam == "bert":
        special = torch.tensor(a.source.special, device=tm.device)  # (T,)
        units = ~special.cpu().numpy()
        other = sentence_embedding(tm.model, torch.tensor([tm.tokenize(pair or "").ids], device=tm.device))
        score = bert_pair_score(tm.model, src, special, other)
        ranks = {k: v[units] for k, v in maps.items()}
        return CurvesResult(
            curves(score, ranks, steps), "cosine similarity to the second sentence's embedding",
            "the token is masked as a key and left out of the mean pooling; [CLS] and [SEP] stay",
            int(units.sum()),
        )  # fmt: skip
    tgt = torch.tensor([a.target.ids], device=tm.device)
    token = (
        tm.tokenizer.stoi[rel.token]
        if hasattr(tm.tokenizer, "stoi")
        else _dates_token(tm, src, tgt, rel.step)
    )
    score = seq2seq_score(tm.model, src, tgt, rel.step, token, tm.tokenizer.pad_id)
    return CurvesResult(
        curves(score, maps, steps), f"log-probability of {rel.token!r} at output position {rel.step + 1}",
        "the character becomes padding, which every attention masks as a key", src.shape[1],
    )  # fmt: skip


def vision_curves(vm: VisionModel, analysis: VisionAnalysis, rel: Relevance, steps: int = 10) -> CurvesResult:
    """Deletion/insertion curves on the [CLS] feature's cosine to its unperturbed value (``rel`` of [CLS])."""
    if rel.query is not None:
        raise ValueError("the vision curves follow the [CLS] feature: pass its relevance (query None)")
    maps = {"relevancy": rel.relevance, "rollout": rel.rollout, "attention": rel.attention}
    with torch.no_grad():
        score = vit_score(vm.model, vision_input(vm, analysis), analysis.num_prefix_tokens, analysis.has_cls)
        c = curves(score, maps, steps)
    return CurvesResult(
        c, "cosine of the [CLS] feature to its value on the whole image",
        "the patch token is dropped from the sequence (with its position embedding); [CLS] and registers stay",
        len(rel.relevance),
    )  # fmt: skip
