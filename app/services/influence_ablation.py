"""Head ablation and the date decoder's logit lens for the web (issue 15, items 3 and 5); the maths is in
``models/influence/``. The head-importance map (a background job) is in :mod:`app.services.influence_importance`.

Budgets: every forward runs in the compute queue (``state.queue``: one at a time, 503 + Retry-After when
full), never on the event loop. Ablation hooks are installed and removed inside that one queue job, and all
forwards of the process's models run in that queue, so no other request ever sees an ablated model.
Mean-ablation needs each head's mean context over the model's bundled evaluation set: computed once per
model in the queue, merged while in flight, and kept in ``state.views``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from app.schemas.influence_ablation import (
    AblateRequest,
    AblateResponse,
    BlockShape,
    HeadDirections,
    HeadsResponse,
    LensStage,
    LogitLensRequest,
    LogitLensResponse,
)
from app.serialization import typed_array
from app.services.errors import InvalidOption, TextError
from app.services.text import check_tokens
from app.state import AppState
from models.influence.ablation import HeadMeans, head_grid, output_projections
from models.influence.ablation_run import REFERENCE, Kind, kind_of, reference_means, run_ablation
from models.influence.importance import DATE_HELDOUT, DATE_SEED, SENTENCE_PAIRS, sentence_pairs
from models.influence.logit_lens import HEAD_BLOCKS, logit_lens
from models.text.analysis import DateTextModel
from models.text.dates import normalise_dates
from models.vision.samples import SAMPLE_NAMES


@dataclass(frozen=True)
class Target:
    """A model that ablation can run on, and which outcome it is judged by."""

    kind: Kind
    id: str
    obj: Any  # DateTextModel | HFTextModel | VisionModel

    @property
    def module(self) -> torch.nn.Module:
        return self.obj.model


def eval_set_label(kind: str) -> str:
    if kind == "dates":
        return (
            f"hand-written dates (models/checkpoints/human_dates.tsv) + {DATE_HELDOUT} generated from held-out "
            f"days (seed {DATE_SEED})"
        )
    if kind == "pair":
        return (
            f"{len(sentence_pairs())} sentence pairs ({SENTENCE_PAIRS.name}: paraphrase, related, unrelated)"
        )
    return f"the {len(SAMPLE_NAMES)} sample photos at the model's default resolution"


async def heads_info(state: AppState, family: str, model: str | None) -> HeadsResponse:
    """The model's heads and ablation kind; an unsupported model is an answer (kind None), not an error."""
    try:
        t = await resolve(state, family, model)
    except InvalidOption as e:
        tm = await state.text_store.get_async(model)
        return HeadsResponse(
            family=family, model=tm.info.id, label=tm.info.label, kind=None, reason=str(e), blocks=[]
        )  # type: ignore[arg-type]
    grid = head_grid(t.module)
    blocks = [BlockShape(block=b, layers=lay, heads=h) for b, (lay, h) in grid.items()]  # type: ignore[arg-type]
    return HeadsResponse(
        family=family, model=t.id, label=t.obj.info.label, kind=t.kind, blocks=blocks,  # type: ignore[arg-type]
        reference=REFERENCE[t.kind], eval_set=eval_set_label(t.kind),
        ablations=sum(lay * h for lay, h in grid.values()) + 1,
    )  # fmt: skip


async def resolve(state: AppState, family: str, model: str | None) -> Target:
    """The allowlisted model (loaded off the event loop) and its kind; InvalidOption (400) when head
    ablation has no outcome for it (decoder-only and Hub seq2seq models)."""
    if family == "vision":
        vm, _ = await state.vision_store.get_at_async(model, None)
        return Target("vision", vm.info.id, vm)
    tm = await state.text_store.get_async(model)
    kind = kind_of(tm)
    if kind == "dates":
        return Target("dates", tm.info.id, tm)
    if kind == "pair":
        try:
            output_projections(tm.model)
        except ValueError as e:
            raise InvalidOption(str(e)) from e
        return Target("pair", tm.info.id, tm)
    raise InvalidOption(
        f"Head ablation covers the paper Transformer (date model), BERT-like encoders and ViTs; "
        f"{tm.info.label} is a {tm.info.kind} model."
    )


def compute_means(state: AppState, t: Target) -> HeadMeans:
    """Each head's mean context over the reference set (runs in the queue; cached per model)."""
    name = f"head-means|{t.kind}|{t.id}"
    hit = state.views.get(name)
    if hit is None:
        hit = reference_means(t.kind, t.obj)
        state.views.put(name, hit)
    return hit


async def means_for(state: AppState, t: Target) -> HeadMeans:
    hit = state.views.get(f"head-means|{t.kind}|{t.id}")
    if hit is not None:
        return hit
    return await state.queue.run(compute_means, state, t, key=f"head-means|{t.kind}|{t.id}")


async def _check_text(state: AppState, t: Target, req: AblateRequest, target: str | None = None) -> None:
    """400/413 for a missing, too long or too many-token text (pair, target). The cheap checks here, the
    tokenizing (CPU work) in the CPU pool, not on the event loop."""
    if not (req.text or "").strip():
        raise TextError("Type a text to run the model on.")
    if t.kind == "pair" and not (req.pair or "").strip():
        raise TextError("A sentence encoder is judged on a pair: type the second sentence too.")
    limit = state.settings.limits.max_text_chars
    texts = [s for s in (req.text, req.pair if t.kind == "pair" else None) if s is not None]
    for s in texts:
        if len(s) > limit:
            raise TextError(f"The text is {len(s):,} characters long; the limit is {limit:,}.", 413)
    cost = 4 * (sum(map(len, texts)) + len(target or ""))
    await state.cpu.run(check_tokens, t.obj, texts, target, cost=cost)


async def ablate(state: AppState, req: AblateRequest) -> AblateResponse:
    """One ablated run beside the intact one (compute queue)."""
    t = await resolve(state, req.family, req.model)
    known = {(p.block, p.layer): p.n_heads for p in output_projections(t.module)}
    for h in req.heads:
        if h.head >= known.get((h.block, h.layer), 0):
            raise InvalidOption(f"{t.id} has no head {h.head} in layer {h.layer} of {h.block}.")
    image = None
    if t.kind == "vision":
        if not req.analysis_id:
            raise InvalidOption("Vision ablation needs the analysis_id of an analysed image.")
        analysis = state.vision_analysis(req.analysis_id)
        if analysis.model_id != t.id:
            raise InvalidOption(f"Analysis {req.analysis_id} was made with {analysis.model_id}, not {t.id}.")
        image = analysis.image
    else:
        await _check_text(state, t, req)
    means = await means_for(state, t) if req.mode == "mean" and req.heads else None
    heads = [(h.block, h.layer, h.head) for h in req.heads]
    kw = dict(text=req.text or "", pair=req.pair or "", target=req.target, image=image)
    cost = 3 * image.width * image.height if image is not None else 0
    t0 = time.perf_counter()
    run = await state.queue.run(run_ablation, t.obj, heads, req.mode, means, cost=cost, **kw)
    out = run.as_dict()
    out.pop("heads")
    if run.patch_cos_map is not None:
        out["patch_cos_map"] = typed_array(run.patch_cos_map, "f4")
    return AblateResponse(
        family=req.family, model=t.id, heads=req.heads, elapsed_ms=round((time.perf_counter() - t0) * 1000, 1),
        **out,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------------------
# logit lens


def build_lens(tm: DateTextModel, text: str, target: str | None, k: int) -> LogitLensResponse:
    tok = tm.tokenizer
    src = tm.tokenize(text)
    if target is None:
        target = normalise_dates(tm.model, tok, [text])[0]
    dec = tm.tokenize_target(target)  # <s> + target: the decoder's input
    lens = logit_lens(
        tm.model, torch.tensor(src.ids, device=tm.device), torch.tensor(dec.ids, device=tm.device), k
    )
    name = np.vectorize(lambda i: "␣" if tok.itos[i] == " " else tok.itos[i], otypes=[object])
    heads = [
        HeadDirections(
            block=block,
            promote=name(lens.head_promote[b]).tolist(),
            promote_logit=typed_array(lens.head_promote_logit[b], "f4"),
            suppress=name(lens.head_suppress[b]).tolist(),
            suppress_logit=typed_array(lens.head_suppress_logit[b], "f4"),
        )
        for b, block in enumerate(HEAD_BLOCKS)
    ]
    return LogitLensResponse(
        model=tm.info.id,
        source_tokens=src.tokens,
        decoder_tokens=dec.tokens,
        stages=[LensStage(layer=i, stage=s) for i, s in lens.stages],  # type: ignore[arg-type]
        top_tokens=name(lens.top_ids).tolist(),
        top_prob=typed_array(lens.top_prob, "f4"),
        final_tokens=name(lens.final_ids).tolist(),
        final_prob=typed_array(lens.final_prob, "f4"),
        heads=heads,
        norm="post-norm: each stage is the output of that sublayer's own LayerNorm (norm_1, norm_2, norm_3); "
        "the model has no final norm, so the last stage is its own logits",
    )


async def lens(state: AppState, req: LogitLensRequest) -> LogitLensResponse:
    t = await resolve(state, "text", req.model)
    if t.kind != "dates":
        raise InvalidOption("The logit lens is for the date model's decoder (the paper Transformer).")
    probe = AblateRequest(family="text", model=t.id, text=req.text)
    await _check_text(state, t, probe, req.target)
    key = f"logit-lens|{t.id}|{req.k}|{len(req.text)}:{req.text}|{req.target}"
    return await state.queue.run(build_lens, t.obj, req.text, req.target, req.k, key=key)
