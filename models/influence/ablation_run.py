"""One ablated run beside the intact one, for a loaded model of :mod:`models.text.analysis` or
:mod:`models.vision.analysis`: what the web service, the notebook (``result.ablate(heads)``) and
``python -m app export --ablate`` call, unchanged.

Kinds: ``dates`` (the paper Transformer with its character tokenizer), ``pair`` (a BERT-like sentence
encoder), ``vision`` (a timm ViT). Mean-ablation averages over the model's bundled evaluation set
(:func:`reference_forwards`, the same set as the importance map's).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from models.influence.ablation import AblationMode, HeadKey, HeadMeans, ablating, head_means
from models.influence.importance import (
    Measured,
    date_eval_set,
    date_measure,
    date_reference,
    pair_measure,
    pair_reference,
    sentence_pairs,
    vision_measure,
    vision_reference,
)
from models.influence.outcomes import answer_logp, pair_cosines, vision_features
from models.text.analysis import DateTextModel, HFTextModel
from models.text.dates import normalise_dates
from models.vision.analysis import VisionModel
from models.vision.samples import SAMPLE_NAMES, sample_images

Kind = Literal["dates", "pair", "vision"]
REFERENCE = {
    "dates": "the date model's evaluation set (hand-written dates + held-out generated dates), teacher forced",
    "pair": "the bundled sentence pairs (models/influence/sentence_pairs.tsv), each sentence alone",
    "vision": f"the {len(SAMPLE_NAMES)} sample photos at the model's default resolution",
}


def kind_of(model: Any) -> Kind | None:
    """The outcome a loaded model is judged by, or None (decoder-only and Hugging Face seq2seq models)."""
    if isinstance(model, DateTextModel):
        return "dates"
    if isinstance(model, HFTextModel) and model.info.kind == "encoder":
        return "pair"
    if isinstance(model, VisionModel):
        return "vision"
    return None


def vision_inputs(vm: VisionModel, images: list[Image.Image], resolution: int | None = None) -> torch.Tensor:
    """(B, 3, R, R) on the model's device and dtype, preprocessed as the model's config says."""
    return torch.cat([vm.preprocess(im, resolution)[0] for im in images]).to(vm.device, vm.dtype)


def shown_input(vm: VisionModel, image: Image.Image) -> torch.Tensor:
    """(1, 3, R, R): an analysed image, already the R x R crop the model saw, normalised as its config says
    (no second resize or crop)."""
    arr = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0  # (R, R, 3)
    arr = (arr - np.asarray(vm.info.mean, np.float32)) / np.asarray(vm.info.std, np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1)[None].to(vm.device, vm.dtype)  # (1, 3, R, R)


def reference_forwards(kind: Kind, model: Any) -> list:
    """One forward per reference input of mean-ablation (the bundled evaluation set)."""
    if kind == "dates":
        return date_reference(model.model, model.tokenizer, date_eval_set())
    if kind == "pair":
        return pair_reference(
            model.model, model.tokenizer, [s for a, b, _ in sentence_pairs() for s in (a, b)]
        )
    return vision_reference(model.model, vision_inputs(model, list(sample_images().values())))


def eval_measure(kind: Kind, model: Any) -> tuple[Measured, int]:
    """The importance map's measure over the model's bundled evaluation set, and the set's size (the web job
    and ``python -m app export --importance`` both sweep it)."""
    if kind == "dates":
        rows = date_eval_set()
        return date_measure(model.model, model.tokenizer, rows), len(rows)
    if kind == "pair":
        pairs = [(a, b) for a, b, _ in sentence_pairs()]
        return pair_measure(model.model, model.tokenizer, pairs), len(pairs)
    x = vision_inputs(model, list(sample_images().values()))  # (B, 3, R, R)
    return vision_measure(model.model, x, model.info.num_prefix_tokens, model.info.has_cls_token), len(x)


def reference_means(kind: Kind, model: Any) -> HeadMeans:
    """Each head's mean context over the reference set."""
    return head_means(model.model, reference_forwards(kind, model))


@dataclass(frozen=True)
class AblationRun:
    """The intact and the ablated outcome of one input (fields by kind; the others None)."""

    kind: Kind
    mode: str
    heads: list[HeadKey]
    reference: str
    answer: str | None = None  # dates: the answer scored (given, or the intact output)
    decoded_intact: str | None = None
    decoded_ablated: str | None = None
    logp_intact: float | None = None  # log p(answer + </s> | text), teacher forced
    logp_ablated: float | None = None
    cos_intact: float | None = None  # pair: cosine of the mean-pooled embeddings
    cos_ablated: float | None = None
    cls_cos: float | None = None  # vision: ablated vs intact [CLS] feature
    patch_cos: float | None = None  # vision: mean over patches of each patch feature's cosine
    patch_cos_map: np.ndarray | None = None  # (rows, cols) float32

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _dates(tm: DateTextModel, text: str, target: str | None, cut: list[HeadKey], mode: AblationMode, means):
    model, tok = tm.model, tm.tokenizer
    intact = normalise_dates(model, tok, [text])[0]
    answer = target or intact
    lp = float(answer_logp(model, tok, [text], [answer])[0])
    with torch.inference_mode(), ablating(model, cut, mode, means):
        ablated = normalise_dates(model, tok, [text])[0]
        lp_cut = float(answer_logp(model, tok, [text], [answer])[0])
    return dict(
        answer=answer, decoded_intact=intact, decoded_ablated=ablated, logp_intact=lp, logp_ablated=lp_cut
    )


def _pair(tm: HFTextModel, text: str, pair: str, cut: list[HeadKey], mode: AblationMode, means):
    pairs = [(text, pair)]
    base = float(pair_cosines(tm.model, tm.tokenizer, pairs)[0])
    with torch.inference_mode(), ablating(tm.model, cut, mode, means):
        ablated = float(pair_cosines(tm.model, tm.tokenizer, pairs)[0])
    return dict(cos_intact=base, cos_ablated=ablated)


def _vision(vm: VisionModel, image: Image.Image, cut: list[HeadKey], mode: AblationMode, means):
    x = shown_input(vm, image)  # (1, 3, R, R)
    base = vision_features(vm.model, x)  # (1, N, C)
    with torch.inference_mode(), ablating(vm.model, cut, mode, means):
        feats = vision_features(vm.model, x)
    p0 = vm.info.num_prefix_tokens
    per_patch = F.cosine_similarity(feats[0, p0:].double(), base[0, p0:].double(), dim=-1)  # (P,)
    if vm.info.has_cls_token:
        cls_b, cls = base[0, 0], feats[0, 0]  # (C,)
    else:
        cls_b, cls = base[0, p0:].mean(0), feats[0, p0:].mean(0)
    rows, cols = vm.info.grid(x.shape[-2], x.shape[-1])
    return dict(
        cls_cos=float(F.cosine_similarity(cls.double(), cls_b.double(), dim=0)),
        patch_cos=float(per_patch.mean()),
        patch_cos_map=per_patch.reshape(rows, cols).float().cpu().numpy(),
    )


def run_ablation(
    model: Any,
    heads: list[HeadKey],
    mode: AblationMode = "zero",
    means: HeadMeans | None = None,
    *,
    text: str = "",
    pair: str = "",
    target: str | None = None,
    image: Image.Image | None = None,
) -> AblationRun:
    """Ablate ``heads`` together on one input and compare with the intact run.

    ``model``: a loaded DateTextModel (``text``, optional ``target``: the right answer, default the intact
    output), an encoder HFTextModel (``text`` and ``pair``) or a VisionModel (``image``: the R x R image the
    model sees, e.g. ``VisionAnalysis.image``). ``mode="mean"`` without ``means`` computes them here."""
    kind = kind_of(model)
    if kind is None:
        raise ValueError(f"head ablation has no outcome for a {type(model).__name__}")
    if mode == "mean" and means is None and heads:
        means = reference_means(kind, model)
    if kind == "dates":
        out = _dates(model, text, target, heads, mode, means)
    elif kind == "pair":
        if not pair:
            raise ValueError("a sentence encoder is judged on a pair: give the second sentence")
        out = _pair(model, text, pair, heads, mode, means)
    else:
        if image is None:
            raise ValueError("vision ablation needs the image")
        out = _vision(model, image, heads, mode, means)
    return AblationRun(kind=kind, mode=mode, heads=list(heads), reference=REFERENCE[kind], **out)
