"""``show_text``: one input through one text model in a notebook, displayed with the text page's views.

The numbers come from :mod:`models.text.views` (the functions the web services call); the displayed payload
is the web route's :class:`app.schemas.text.TextAnalysisResponse` (``static/js/text/data.js`` reads it) with
each block's maps under ``nb``: float32 when small, uint8 (1/255 steps) while they fit ``max_mb``, otherwise
each query's ``top_k`` strongest keys per head and layer (as the server's head view of a long input). The
numbers at full precision stay on the result (``.maps``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

import app.notebook.models as models
import app.notebook.value_weighted as vw
from app.notebook.html import Output, b64_size
from app.notebook.influence import TextInfluence
from app.schemas.text import ViewOptions
from app.schemas.text_views import Blocks, axes_schema, block_schema, overview_response
from app.serialization import typed_array
from models.text import views
from models.text.analysis import DateTextModel, HFTextModel, TextAnalysis, TextModel, TextModelSpec
from models.text.kinds import model_kind
from models.text.stats import STAT_NAMES, BlockOverview

F4_INLINE_BYTES = 1024 * 1024  # text maps go inline at float32 up to this many (base64) bytes, and max_mb
THUMB = 64  # model-view thumbnails: at most THUMB x THUMB max-pooled cells (the server's default)


def text_model(model: Any, tokenizer: Any, kind: str | None, device: str | None) -> TextModel:
    """Our TextModel for an id, a TextModel, a Hugging Face model (+ tokenizer), or the paper Transformer
    (+ its CharTokenizer), wrapped as ``models/text/analysis.load_text_model`` wraps the ones it loads."""
    if isinstance(model, (HFTextModel, DateTextModel)):
        return model
    if isinstance(model, str):
        return models.load("text", model, device)
    if tokenizer is None:
        raise TypeError("show_text(model, tokenizer, text): a model object needs its tokenizer")
    from models.transformer import Transformer

    param = next(model.parameters())
    if isinstance(model, Transformer):
        spec = TextModelSpec(
            "transformer", "seq2seq", "random", "dates", "Paper Transformer (your model)", 512
        )
        return DateTextModel(spec, model, tokenizer, param.device)
    if not hasattr(model, "config"):
        raise TypeError(f"{type(model).__name__} is neither a Hugging Face model nor the paper Transformer")
    name = str(getattr(model.config, "name_or_path", "") or type(model).__name__)
    spec = TextModelSpec(
        id=name,
        kind=kind or model_kind(model),  # type: ignore[arg-type]
        source="hub",  # a model the caller holds; max_tokens comes from its config below
        name=name,
        label=f"{name} (your model)",
        max_tokens=1 << 20,
    )
    return HFTextModel(spec, model, tokenizer, param.device)


class EagerAttention:
    """Switch a Hugging Face model to the eager attention path (the fused SDPA kernel never materialises
    the probabilities) for the duration of a ``with`` block, and restore its own choice afterwards."""

    def __init__(self, model: torch.nn.Module):
        self.model, self.saved = model, None

    def __enter__(self) -> None:
        cfg = getattr(self.model, "config", None)
        impl = getattr(cfg, "_attn_implementation", None)
        if cfg is not None and impl not in (None, "eager") and hasattr(self.model, "set_attn_implementation"):
            self.model.set_attn_implementation("eager")
            self.saved = impl

    def __exit__(self, *exc: object) -> None:
        if self.saved is not None:
            self.model.set_attn_implementation(self.saved)


@dataclass(repr=False)
class TextResult(TextInfluence, Output):
    """One input through one text model: the numbers, and the views when displayed.

    blocks    dict kind -> (L, H, Tq, Tk) float32 attention probabilities per block: ``encoder_self``,
              ``decoder_self`` (masked), ``cross`` ("Attention Is All You Need", Section 3.2.3).
    maps      the one block of an encoder or decoder-only model; the dict ``blocks`` for encoder-decoders.
    stats     dict kind -> (L, H + 1, S) float32 per-head statistics (the last head is the mean of heads),
              S = ``stat_names`` (models/text/stats.py), under the view options (hide_special, merge_words).
    distance  dict kind -> (L, H) float32 mean token distance (``models.text.views.token_distance``): the
              text analogue of the ViT's mean attention distance; NaN for cross-attention.
    """

    analysis: TextAnalysis = field(repr=False)
    info: Any = field(repr=False)  # models.text.analysis.TextModelInfo
    blocks: dict[str, np.ndarray]
    stats: dict[str, np.ndarray]
    distance: dict[str, np.ndarray]
    hide_special: bool
    merge_words: bool
    layer: int
    head: int | str
    view: str
    max_mb: float
    top_k: int
    include_plotly: bool
    overviews: dict[str, BlockOverview] = field(default_factory=dict, repr=False)
    stat_names: tuple[str, ...] = STAT_NAMES
    model: Any = field(default=None, repr=False)  # the TextModel that made it (.ablate(), .relevance())
    text: str = ""  # the input text

    ENTRY = "notebook/text.js"
    label = property(lambda self: self.info.label)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in self.blocks.items())
        return f"TextResult({self.label!r}: {len(self.tokens)} tokens; {shapes}; .maps, .stats, .distance)"

    def ablate(self, heads: Any, mode: str = "zero", *, pair: str | None = None, target: str | None = None):
        """Ablate ``heads`` (0-based (layer, head), or (block, layer, head) for the date model) on this input and
        compare with the intact run (``app/notebook/ablation.py``). ``pair``: an encoder's second sentence."""
        from app.notebook.ablation import ablate

        return ablate(self.model, heads, mode, text=self.text, pair=pair, target=target)  # type: ignore[arg-type]

    def eager_attention(self) -> EagerAttention:
        """The model on its eager attention path for a ``with`` block (app/notebook/influence.py uses it)."""
        return EagerAttention(self.model.model)

    @property
    def maps(self) -> np.ndarray | dict[str, np.ndarray]:
        return next(iter(self.blocks.values())) if len(self.blocks) == 1 else self.blocks

    def value_weighted(self, kind: str | None = None, renormalise: bool = True) -> np.ndarray:
        """Value-weighted attention α_ij ‖f_h(x_j)‖ (Kobayashi et al. 2020; models/value_norms.py) of one block
        (default the first): (L, H, Tq, Tk), rows renormalised unless ``renormalise=False``; the norms are
        ``.value_norms[kind]`` (L, H, Tk), shared output bias left out."""
        return vw.text_weighted(self.analysis, kind, renormalise)

    value_norms = property(lambda self: self.analysis.value_norms)

    def special_survival(self, kind: str | None = None):
        """Per head: the share of attention on special tokens in α and value-weighted (models.value_norms)."""
        return vw.text_survival(self.analysis, kind)

    @property
    def tokens(self) -> list[str]:
        return self.analysis.source.tokens

    def tier(self) -> str:
        """How the maps go into the HTML: "f4" (float32), "u1" (uint8, 1/255 steps) or "topk" (lines)."""
        cells = sum(ov.view.size for ov in self.overviews.values())
        if b64_size(4 * cells) <= min(F4_INLINE_BYTES, self.max_mb * 1e6):
            return "f4"
        if b64_size(cells) <= self.max_mb * 1e6:
            return "u1"
        return "topk"

    def _nb(self, view: np.ndarray, tier: str) -> dict[str, Any]:
        """One block's maps for the output: (L, H, Wq, Wk) float32 or uint8, or top-k lines per query."""
        if tier == "f4":
            return {"tier": tier, "data": typed_array(view)}
        if tier == "u1":
            return {"tier": tier, "data": typed_array(views.layer_u8(view), "u1")}
        idx, w = views.lines_of(view, self.top_k)  # (L, H, Wq, k) each
        return {
            "tier": tier,
            "k": int(idx.shape[-1]),
            "index": typed_array(idx, "u2"),
            "weight": typed_array(w, "u1"),
        }

    def payload(self) -> dict:
        """What the notebook's text.js draws: the web route's overview response, each block's maps under
        ``nb``, and the output's own settings."""
        a, tier = self.analysis, self.tier()
        schemas = [block_schema(a, k, dataclasses.replace(ov, view=None)) for k, ov in self.overviews.items()]
        blocks = Blocks(axes_schema(a, self.hide_special, self.merge_words), schemas, inline=tier == "f4")
        options = ViewOptions(hide_special=self.hide_special, merge_words=self.merge_words)
        d = overview_response("notebook", self.info, a, blocks, options, None).model_dump()
        for b, ov in zip(d["blocks"], self.overviews.values(), strict=True):
            b["nb"] = self._nb(ov.view, tier)
        selected = {"layer": self.layer, "head": self.head, "view": self.view}
        return {**d, "tier": tier, "top_k": self.top_k, "selected": selected}

    def fallback(self) -> str:
        return (
            f"Attention Atlas: {self.label}, {len(self.tokens)} tokens. Run the cell (or trust the notebook) to "
            "see the interactive views; the numbers are on the result (.maps, .stats)."
        )


def show_text(
    model: Any,
    tokenizer: Any = None,
    text: str = "",
    *,
    target: str | None = None,
    kind: str | None = None,
    layer: int = 0,
    head: int | str = "mean",
    view: str = "head",
    hide_special: bool = False,
    merge_words: bool = False,
    max_mb: float = 6.0,
    top_k: int = 12,
    include_plotly: bool = True,
    device: str | None = None,
) -> TextResult:
    """Run ``model`` once on ``text`` with attention capture; display the result for the views.

    ``model``: a model id (``tokenizer`` is then ignored), a Hugging Face model with its tokenizer
    (``kind`` "encoder", "causal" or "seq2seq" when the rule of ``models.text.kinds`` gets it wrong), or the
    paper Transformer with its CharTokenizer. ``target``: the decoder input of an encoder-decoder (default:
    its greedy output, which needs a model with a language-model head). ``layer``/``head`` (0-based, or
    "mean") and ``view`` ("head", "model" or "matrix") set what shows first; ``hide_special``/``merge_words``
    are the web page's view options. ``max_mb`` bounds the maps in the HTML (above it: ``top_k`` lines per
    query); ``include_plotly=False`` leaves plotly.js (4.8 MB, the matrix view) out when the page has it.
    """
    if view not in ("head", "model", "matrix"):
        raise ValueError(f"view must be 'head', 'model' or 'matrix', not {view!r}")
    tm = text_model(model, tokenizer, kind, device)
    if isinstance(tm, HFTextModel):
        was_training = tm.model.training
        tm.model.eval()
        try:
            with EagerAttention(tm.model):
                a = tm.analyze(text, target)
        finally:
            tm.model.train(was_training)
    else:
        a = tm.analyze(text, target)
    overviews = views.overviews(a, hide_special, merge_words, THUMB, keep_view=True)
    first = next(iter(overviews.values()))
    L, H = first.stats.shape[0], first.stats.shape[1] - 1
    if head != "mean" and not 0 <= int(head) < H:
        raise ValueError(f"head must be in 0..{H - 1} or 'mean', not {head}")
    return TextResult(
        analysis=a,
        info=tm.info,
        blocks=dict(a.blocks),
        stats={k: ov.stats for k, ov in overviews.items()},
        distance=views.token_distance(a),
        hide_special=hide_special,
        merge_words=merge_words,
        layer=layer % L,
        head=head,
        view=view,
        max_mb=max_mb,
        top_k=top_k,
        include_plotly=include_plotly,
        overviews=overviews,
        model=tm,
        text=text,
    )
