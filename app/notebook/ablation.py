"""``result.ablate(heads)`` in a notebook: head ablation (issue 15, item 3) on the model and input of a
:class:`~app.notebook.text.TextResult` or :class:`~app.notebook.vision.VisionResult`, through the same pure
function the web service calls (:func:`models.influence.ablation_run.run_ablation`).

Heads are 0-based, as in the API: ``(layer, head)`` for a model with one attention block (a BERT-like encoder,
a ViT), or ``(block, layer, head)`` with block ``"encoder_self"``, ``"decoder_self"`` or ``"cross"`` (the date
model). The result is a :class:`~models.influence.ablation_run.AblationRun`: the intact and the ablated outcome.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from models.influence.ablation import AblationMode, HeadKey
from models.influence.ablation_run import AblationRun, kind_of, run_ablation


def parse_heads(heads: Iterable[Any]) -> list[HeadKey]:
    """(layer, head) -> ("encoder_self", layer, head); (block, layer, head) as given; a dict with those keys."""
    out: list[HeadKey] = []
    for h in heads:
        if isinstance(h, dict):
            out.append((str(h.get("block", "encoder_self")), int(h["layer"]), int(h["head"])))
        elif len(h) == 2:
            out.append(("encoder_self", int(h[0]), int(h[1])))
        elif len(h) == 3:
            out.append((str(h[0]), int(h[1]), int(h[2])))
        else:
            raise ValueError(f"a head is (layer, head) or (block, layer, head), not {h!r}")
    return out


def ablate(
    model: Any,
    heads: Iterable[Any],
    mode: AblationMode = "zero",
    *,
    text: str = "",
    pair: str | None = None,
    target: str | None = None,
    image: Any = None,
) -> AblationRun:
    """Ablate ``heads`` together on one input of a loaded model (see the module docstring)."""
    kind = kind_of(model)
    if kind is None:
        raise ValueError("head ablation covers the date model, BERT-like encoders and timm ViTs")
    if kind == "pair" and not pair:
        raise ValueError("a sentence encoder is judged on a pair: pass pair='the second sentence'")
    return run_ablation(
        model, parse_heads(heads), mode, text=text, pair=pair or "", target=target, image=image
    )
