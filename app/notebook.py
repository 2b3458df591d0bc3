"""Attention Atlas in a notebook: the web app's views, inline, for models you already hold in Python.

Usage::

    from app.notebook import show_vision, show_text

    r = show_vision(my_timm_vit, "cat.jpg")        # any timm ViT-family model object, or "dinov2_vits14"
    r                                               # model view grid, overlay, patch probing, rollout
    r.maps.shape, r.distance.shape                  # (L, H, N, N) attention, (L, H) mean attention distance

    t = show_text(hf_model, tokenizer, "The animal didn't cross the street because it was too tired.")
    t                                               # head view, model view, matrix, per-head statistics
    t.maps, t.stats, t.distance

``model`` is a model object (timm ViT-family for vision; a Hugging Face encoder, decoder-only or
encoder-decoder model for text; our paper Transformer with its character tokenizer) or one of the app's
model ids, loaded through the same registry as the server (``app.settings``: offline defaults plus the
operator's ``ATLAS_EXTRA_*`` entries). In a notebook the user is the operator: objects passed in are never
checked against the allowlist.

What the attention is: the post-softmax probabilities of every head ("Attention Is All You Need",
Section 3.2.1), recorded with :func:`models.vision.capture.capture_attention` (timm) or Hugging Face's
``output_attentions`` on the eager attention path (text); see those modules.

The returned objects render as self-contained HTML (``app/notebook_html.py``: the web pages' own ES modules
inlined, data as compact typed arrays), so a saved notebook still draws without a server. Only what the views
draw goes in:

- vision: every [CLS] map (L, H, P) float32, the rollout for 3 head fusions x 3 discard ratios, the photo
  as PNG, and for patch probing each query patch's row over the patches as uint8 scaled to the row maximum
  (L x H x P^2 bytes: 4.7 MB for DINOv2 ViT-S/14 at 224 px), for as many layers as ``max_mb`` allows;
- text: thumbnails and statistics of every layer and head, and the maps at float32 when small, uint8
  (1/255 steps) while they fit ``max_mb``, otherwise each query's ``top_k`` strongest keys per head and
  layer (as the server's head view of a long input). The numbers at full precision are on the result
  (``.maps``), never lost.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from app.notebook_html import STATIC_JS, render_output, standalone_page
from app.serialization import typed_array
from models.devices import resolve_device
from models.text.analysis import (
    BLOCK_ORDER,
    DateTextModel,
    HFTextModel,
    TextAnalysis,
    TextModel,
    TextModelSpec,
    load_text_model,
)
from models.text.lines import top_k_lines
from models.text.stats import STAT_LABELS, STAT_NAMES, block_overview, build_axis, quantise_u8
from models.vision.analysis import VisionAnalysis, VisionModel, analyze_image, load_vision_model
from models.vision.distance import mean_attention_distance
from models.vision.registry import VisionModelSpec, describe
from models.vision.rollout import attention_rollout

FUSIONS = ("mean", "max", "min")
DISCARDS = (0.0, 0.5, 0.9)
F4_INLINE_BYTES = 1024 * 1024  # text maps go inline at float32 up to this many (base64) bytes, and max_mb
THUMB = 64  # text model-view thumbnails: at most THUMB x THUMB max-pooled cells (the server's default)
_LOADED: dict[tuple[str, str], Any] = {}  # model id (and device) -> loaded model: one load per kernel
CAUSAL_TYPES = {
    "gpt2", "gpt_neo", "gpt_neox", "gptj", "llama", "mistral", "mixtral", "opt", "bloom", "falcon", "phi",
    "phi3", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "codegen", "ctrl", "xglm", "olmo", "olmo2",
}  # fmt: skip


def _css() -> str:
    return (STATIC_JS / "notebook" / "notebook.css").read_text(encoding="utf-8")


def _b64(n_bytes: int) -> int:
    """Bytes of n raw bytes once base64-encoded."""
    return 4 * math.ceil(n_bytes / 3)


# ======================================================================================= vision


def load_image(image: Image.Image | str | Path | np.ndarray) -> Image.Image:
    """A PIL image, a path, or an (H, W), (H, W, 3) or (H, W, 4) array (uint8, or floats in [0, 1]) -> RGB."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, (str, Path)):
        with Image.open(image) as im:
            return im.convert("RGB")
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4)):
        raise ValueError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4), got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.clip(np.rint(arr.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]  # (H, W, 1) -> (H, W)
    return Image.fromarray(arr).convert("RGB")


def _by_id(task: str, model_id: str, device: str | None, specs_of: Callable, load: Callable) -> Any:
    """One of our models by id (the settings' allowlist), loaded once per (id, device) and kept in _LOADED."""
    from app.settings import get_settings

    settings = get_settings()
    specs = specs_of(settings)
    if model_id not in specs:
        raise KeyError(f"unknown {task} model {model_id!r}; known: {', '.join(sorted(specs))}")
    dev = resolve_device(device or settings.server.device)  # "auto": CUDA when present, as the server does
    key = (model_id, str(dev))
    if key not in _LOADED:
        _LOADED[key] = load(specs[model_id], dev, settings)
    return _LOADED[key]


def _vision_model(model: Any, resolution: int | None, device: str | None) -> VisionModel:
    """Our VisionModel for an id, a VisionModel, or any timm ViT-family ``nn.Module`` (wrapped as
    ``models/vision/registry.describe`` reads a loaded model: pretrained_cfg, prefix tokens, patch grid)."""
    if isinstance(model, VisionModel):
        return model
    if isinstance(model, str):
        return _by_id(
            "vision",
            model,
            device,
            lambda s: s.models.vision_specs(),
            lambda spec, dev, s: load_vision_model(spec, dev, cache_dir=s.server.cache_dir),
        )
    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            f"model must be a timm model, a VisionModel or a model id, not {type(model).__name__}"
        )
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    arch = str(cfg.get("architecture") or type(model).__name__)
    tag = f"{arch}.{cfg['tag']}" if cfg.get("tag") else arch
    dynamic = bool(getattr(model, "dynamic_img_size", False))
    spec = VisionModelSpec(
        id=tag,
        arch_tag=tag,
        source="file",  # weights the caller holds (describe() only reads the label and resolutions)
        label=f"{arch} (your model; preprocessing of {tag})",
        resolutions=(int(resolution),) if (dynamic and resolution) else (),
    )
    param = next(model.parameters())
    return VisionModel(
        spec=spec, info=describe(spec, model), model=model, device=param.device, dtype=param.dtype
    )


@dataclass(repr=False)
class VisionResult:
    """One image through one ViT-family model: the numbers, and the views when displayed.

    maps      (L, H, N, N) float32: every layer's and head's attention probabilities over the N tokens
              (prefix tokens first, then the P = rows x cols patches, row-major).
    cls       (L, H, P) float32: the [CLS] query's row over the patches (mean patch query without a [CLS]).
    rollout   (P,) float32: attention rollout (Abnar & Zuidema 2020; ViT paper Fig. 6, App. D.8).
    distance  (L, H) float32: mean attention distance in pixels of the model input (ViT paper Fig. 7
              right, App. D.7; models/vision/distance.py).
    stats     dict of (L, H) float32: ``entropy`` (mean row entropy of the patch queries, nats),
              ``prefix_share`` (attention the patch queries give the prefix tokens), ``self_share``.
    """

    model_id: str
    label: str
    resolution: int
    grid: tuple[int, int]
    patch_size: int
    num_prefix_tokens: int
    has_cls: bool
    maps: np.ndarray
    cls: np.ndarray
    rollout: np.ndarray
    distance: np.ndarray
    stats: dict[str, np.ndarray]
    predictions: list[tuple[str, float]] | None
    image: Image.Image
    layer: int
    head: int
    view: str
    query: int | None
    max_mb: float
    analysis: VisionAnalysis = field(repr=False)

    def __repr__(self) -> str:
        L, H = self.cls.shape[:2]
        return (
            f"VisionResult({self.label!r}: {L} layers x {H} heads, {self.grid[0]}x{self.grid[1]} patches at "
            f"{self.resolution} px; .maps {tuple(self.maps.shape)}, .cls, .rollout, .distance, .stats)"
        )

    def rollout_map(self, head_fusion: str = "mean", discard_ratio: float = 0.0) -> np.ndarray:
        """(P,) rollout with other options (from the cached float16 maps)."""
        with torch.inference_mode():
            r = attention_rollout(
                self.analysis.attentions, head_fusion, discard_ratio, self.num_prefix_tokens, self.has_cls
            )  # type: ignore[arg-type]
        return r.numpy()

    def probe_layers(self) -> list[int]:
        """Layers whose patch-to-patch rows fit in ``max_mb`` (always the selected layer, then spread out)."""
        L, H = self.cls.shape[:2]
        P = self.grid[0] * self.grid[1]
        per_layer = _b64(H * P * P) + _b64(4 * H * P)  # uint8 rows + float32 row scales
        fit = max(1, int(self.max_mb * 1e6 // per_layer))
        if fit >= L:
            return list(range(L))
        picked = {self.layer}
        for x in np.linspace(0, L - 1, fit):
            if len(picked) >= fit:
                break
            picked.add(int(round(x)))
        return sorted(picked)

    def payload(self) -> dict:
        """What the notebook's vision.js draws (see its mount())."""
        p0 = self.num_prefix_tokens
        probe = self.probe_layers()
        rows = self.maps[probe][:, :, p0:, p0:]  # (Lp, H, P, P) patch queries over patch keys
        scale = rows.max(axis=-1)  # (Lp, H, P)
        safe = np.where(scale > 0, scale, 1.0)[..., None]  # (Lp, H, P, 1)
        q = np.rint(np.clip(rows / safe, 0.0, 1.0) * 255.0).astype(np.uint8)  # (Lp, H, P, P)
        buf = io.BytesIO()
        self.image.save(buf, format="PNG")
        rollouts = {
            f"{f}|{d:.2f}": typed_array(self.rollout if (f, d) == ("mean", 0.0) else self.rollout_map(f, d))
            for f in FUSIONS
            for d in DISCARDS
        }
        L, H = self.cls.shape[:2]
        return {
            "model": {"id": self.model_id, "label": self.label, "num_layers": L, "num_heads": H},
            "grid": {
                "rows": self.grid[0],
                "cols": self.grid[1],
                "patch_size": self.patch_size,
                "resolution": self.resolution,
                "num_prefix_tokens": p0,
            },  # fmt: skip
            "cls_query": "cls" if self.has_cls else "mean",
            "image": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii"),
            "cls": typed_array(self.cls),
            "rollouts": rollouts,
            "fusions": list(FUSIONS),
            "discards": list(DISCARDS),
            "probe_layers": probe,
            "probe": typed_array(q, "u1"),
            "probe_scale": typed_array(scale.astype(np.float32) / 255.0),
            "distance": typed_array(self.distance),
            "predictions": self.predictions,
            "selected": {"layer": self.layer, "head": self.head, "view": self.view, "query": self.query},
        }

    def _repr_html_(self) -> str:
        return render_output(
            "notebook/vision.js",
            self.payload(),
            _css(),
            include_plotly=False,
            fallback=f"Attention Atlas: {self.label}, {self.grid[0]}x{self.grid[1]} patches. Run the cell "
            "(or trust the notebook) to see the interactive views; the numbers are on the result (.maps).",
        )

    def save(self, path: str | Path) -> Path:
        """Write the views as a standalone HTML page."""
        path = Path(path)
        path.write_text(standalone_page(self._repr_html_(), f"{self.label} attention"), encoding="utf-8")
        return path


def vision_stats(maps: np.ndarray, num_prefix_tokens: int) -> dict[str, np.ndarray]:
    """Per-(layer, head) statistics of (L, H, N, N) maps over the patch queries -> dict of (L, H) float32."""
    p0 = num_prefix_tokens
    rows = maps[:, :, p0:, :]  # (L, H, P, N) patch queries over every key
    plogp = rows * np.log(rows + 1e-12)  # (L, H, P, N)
    n = rows.shape[2]
    idx = np.arange(n)
    return {
        "entropy": (-plogp.sum(-1)).mean(-1).astype(np.float32),
        "prefix_share": rows[..., :p0].sum(-1).mean(-1).astype(np.float32),
        "self_share": rows[:, :, idx, p0 + idx].mean(-1).astype(np.float32),
    }


def show_vision(
    model: Any,
    image: Image.Image | str | Path | np.ndarray,
    *,
    resolution: int | None = None,
    layer: int = -1,
    head: int = 0,
    view: str = "head",
    query: int | None = None,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
    max_mb: float = 8.0,
    device: str | None = None,
) -> VisionResult:
    """Run ``model`` once on ``image`` with attention capture; display the result for the views.

    ``layer``/``head``/``query`` (0-based; ``layer=-1`` is the last) and ``view`` ("head", "mean" or
    "rollout") set what the output shows first; ``head_fusion``/``discard_ratio`` the rollout in
    ``.rollout``. ``max_mb`` bounds the patch-probing data in the HTML (layers beyond it show their [CLS]
    maps only). The model is put in eval mode for the forward and its mode restored afterwards.
    """
    vm = _vision_model(model, resolution, device)
    pil = load_image(image)
    was_training = vm.model.training
    vm.model.eval()
    try:
        a = analyze_image(vm, pil, resolution, head_fusion, discard_ratio)  # type: ignore[arg-type]
    finally:
        vm.model.train(was_training)
    L, H = a.cls_attention.shape[:2]
    if view not in ("head", "mean", "rollout"):
        raise ValueError(f"view must be 'head', 'mean' or 'rollout', not {view!r}")
    layer = layer % L
    if not 0 <= head < H:
        raise ValueError(f"head must be in 0..{H - 1}, not {head}")
    P = a.grid[0] * a.grid[1]
    if query is not None and not 0 <= query < P:
        raise ValueError(f"query patch must be in 0..{P - 1}, not {query}")
    with torch.inference_mode():
        dist = mean_attention_distance(
            a.attentions, a.grid, a.num_prefix_tokens, vm.info.patch_size
        )  # (L, H)
    maps = a.attentions.float().numpy()  # (L, H, N, N)
    return VisionResult(
        model_id=vm.info.id,
        label=vm.info.label,
        resolution=a.resolution,
        grid=a.grid,
        patch_size=vm.info.patch_size,
        num_prefix_tokens=a.num_prefix_tokens,
        has_cls=a.has_cls,
        maps=maps,
        cls=a.cls_attention,
        rollout=a.rollout,
        distance=dist.float().numpy(),
        stats=vision_stats(maps, a.num_prefix_tokens),
        predictions=a.predictions,
        image=a.image,
        layer=layer,
        head=head,
        view=view,
        query=query,
        max_mb=max_mb,
        analysis=a,
    )


# ========================================================================================= text


def _hf_kind(model: torch.nn.Module) -> str:
    cfg = model.config
    if getattr(cfg, "is_encoder_decoder", False):
        return "seq2seq"
    name = type(model).__name__
    if (
        getattr(cfg, "is_decoder", False)
        or name.endswith(("ForCausalLM", "LMHeadModel"))
        or getattr(cfg, "model_type", "") in CAUSAL_TYPES
    ):
        return "causal"
    return "encoder"


def _text_model(model: Any, tokenizer: Any, kind: str | None, device: str | None) -> TextModel:
    """Our TextModel for an id, a TextModel, a Hugging Face model (+ tokenizer), or the paper Transformer
    (+ its CharTokenizer), wrapped as ``models/text/analysis.load_text_model`` wraps the ones it loads."""
    if isinstance(model, (HFTextModel, DateTextModel)):
        return model
    if isinstance(model, str):
        return _by_id(
            "text",
            model,
            device,
            lambda s: s.models.text_specs(),
            lambda spec, dev, s: load_text_model(spec, dev),
        )
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
        kind=kind or _hf_kind(model),  # type: ignore[arg-type]
        source="hub",  # a model the caller holds; max_tokens comes from its config below
        name=name,
        label=f"{name} (your model)",
        max_tokens=1 << 20,
    )
    return HFTextModel(spec, model, tokenizer, param.device)


class _EagerAttention:
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


def _token_distance(block: np.ndarray) -> np.ndarray:
    """(L, H, T, T) -> (L, H) float32: sum_j A[i, j] |j - i| averaged over the query tokens i."""
    t = block.shape[-1]
    d = np.abs(np.arange(t)[None, :] - np.arange(t)[:, None]).astype(np.float32)  # (T, T)
    return np.einsum("lhij,ij->lhi", block, d).mean(-1).astype(np.float32)  # (L, H)


@dataclass(repr=False)
class TextResult:
    """One input through one text model: the numbers, and the views when displayed.

    blocks    dict kind -> (L, H, Tq, Tk) float32 attention probabilities per block: ``encoder_self``,
              ``decoder_self`` (masked), ``cross`` ("Attention Is All You Need", Section 3.2.3).
    maps      the one block of an encoder or decoder-only model; the dict ``blocks`` for encoder-decoders.
    stats     dict kind -> (L, H + 1, S) float32 per-head statistics (the last head is the mean of heads),
              S = ``stat_names`` (models/text/stats.py), under the view options (hide_special, merge_words).
    distance  dict kind -> (L, H) float32 mean token distance: sum_j A[i, j] |j - i| averaged over every
              query token i (special tokens included), in tokens; the text analogue of the ViT's mean
              attention distance. Cross-attention has no shared positions: NaN there.
    """

    analysis: TextAnalysis = field(repr=False)
    label: str
    blocks: dict[str, np.ndarray]
    stats: dict[str, np.ndarray]
    distance: dict[str, np.ndarray]
    stat_names: tuple[str, ...]
    hide_special: bool
    merge_words: bool
    layer: int
    head: int | str
    view: str
    max_mb: float
    top_k: int
    include_plotly: bool
    _overviews: dict[str, Any] = field(default_factory=dict, repr=False)
    _axes: dict[str, Any] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in self.blocks.items())
        return f"TextResult({self.label!r}: {len(self.tokens)} tokens; {shapes}; .maps, .stats, .distance)"

    @property
    def maps(self) -> np.ndarray | dict[str, np.ndarray]:
        return next(iter(self.blocks.values())) if len(self.blocks) == 1 else self.blocks

    @property
    def tokens(self) -> list[str]:
        return self.analysis.source.tokens

    def tier(self) -> str:
        """How the maps go into the HTML: "f4" (float32), "u1" (uint8, 1/255 steps) or "topk" (lines)."""
        cells = sum(ov.view.size for ov in self._overviews.values())
        if _b64(4 * cells) <= min(F4_INLINE_BYTES, self.max_mb * 1e6):
            return "f4"
        if _b64(cells) <= self.max_mb * 1e6:
            return "u1"
        return "topk"

    def payload(self) -> dict:
        """What the notebook's text.js draws: the server's overview response shape (static/js/text/data.js
        reads it) plus each block's maps under ``nb``."""
        a, tier = self.analysis, self.tier()
        blocks = []
        for kind, ov in self._overviews.items():
            q, k, causal = a.axes[kind]
            L, H = ov.stats.shape[0], ov.stats.shape[1] - 1
            if tier == "f4":
                nb: dict[str, Any] = {"tier": tier, "data": typed_array(ov.view)}
            elif tier == "u1":
                nb = {"tier": tier, "data": typed_array(quantise_u8(ov.view, per_map=False)[0], "u1")}
            else:
                idx, w = zip(*(top_k_lines(ov.view[layer], self.top_k) for layer in range(L)), strict=True)
                nb = {
                    "tier": tier,
                    "k": int(idx[0].shape[-1]),
                    "index": typed_array(np.stack(idx), "u2"),  # (L, H, Wq, k)
                    "weight": typed_array(np.stack(w), "u1"),  # (L, H, Wq, k)
                }
            blocks.append({
                "kind": kind, "query_side": q, "key_side": k, "causal": causal, "layers": L, "heads": H,
                "n_query": ov.n_query, "n_key": ov.n_key, "thumbs": typed_array(ov.thumbs, "u1"),
                "thumb_scale": typed_array(ov.thumb_scale), "stats": typed_array(ov.stats), "data": None, "nb": nb,
            })  # fmt: skip
        info = {"id": a.model_id, "label": self.label, "kind": a.kind}
        side = lambda s: None if s is None else {"tokens": s.tokens, "special": s.special}  # noqa: E731
        return {
            "analysis_id": "notebook",
            "model": info,
            "source": side(a.source),
            "target": side(a.target),
            "generated_text": a.generated_text,
            "options": {"hide_special": self.hide_special, "merge_words": self.merge_words},
            "axes": {
                n: {"labels": x.labels, "special": x.special, "spans": x.spans} for n, x in self._axes.items()
            },
            "blocks": blocks,
            "stat_names": list(STAT_NAMES),
            "stat_labels": [STAT_LABELS[n] for n in STAT_NAMES],
            "first": None,
            "first_lines": None,
            "inline": tier == "f4",
            "tier": tier,
            "top_k": self.top_k,
            "selected": {"layer": self.layer, "head": self.head, "view": self.view},
        }

    def _repr_html_(self) -> str:
        return render_output(
            "notebook/text.js",
            self.payload(),
            _css(),
            include_plotly=self.include_plotly,
            fallback=f"Attention Atlas: {self.label}, {len(self.tokens)} tokens. Run the cell (or trust the "
            "notebook) to see the interactive views; the numbers are on the result (.maps, .stats).",
        )

    def save(self, path: str | Path) -> Path:
        """Write the views as a standalone HTML page."""
        path = Path(path)
        path.write_text(standalone_page(self._repr_html_(), f"{self.label} attention"), encoding="utf-8")
        return path


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
    (``kind`` "encoder", "causal" or "seq2seq" when the guess from its config is wrong), or the paper
    Transformer with its CharTokenizer. ``target``: the decoder input of an encoder-decoder (default: its
    greedy output, which needs a model with a language-model head). ``layer``/``head`` (0-based, or "mean")
    and ``view`` ("head", "model" or "matrix") set what shows first; ``hide_special``/``merge_words`` are the
    web page's view options. ``max_mb`` bounds the maps in the HTML (above it: ``top_k`` lines per query);
    ``include_plotly=False`` leaves plotly.js (4.8 MB, the matrix view) out when the page already has it.
    """
    if view not in ("head", "model", "matrix"):
        raise ValueError(f"view must be 'head', 'model' or 'matrix', not {view!r}")
    tm = _text_model(model, tokenizer, kind, device)
    if isinstance(tm, HFTextModel):
        was_training = tm.model.training
        tm.model.eval()
        try:
            with _EagerAttention(tm.model):
                a = tm.analyze(text, target)
        finally:
            tm.model.train(was_training)
    else:
        a = tm.analyze(text, target)
    axes = {
        "source": build_axis(a.source.tokens, a.source.special, a.source.word_ids, hide_special, merge_words)
    }
    full = {"source": build_axis(a.source.tokens, a.source.special, a.source.word_ids, False, merge_words)}
    if a.target is not None:
        t = a.target
        axes["target"] = build_axis(t.tokens, t.special, t.word_ids, hide_special, merge_words)
        full["target"] = build_axis(t.tokens, t.special, t.word_ids, False, merge_words)
    overviews, stats, distance = {}, {}, {}
    for name in (b for b in BLOCK_ORDER if b in a.blocks):
        q, k, _ = a.axes[name]
        ov = block_overview(
            a.blocks[name], axes[q], axes[k], full[q], full[k], hide_special, q == k, THUMB, keep_view=True
        )
        overviews[name], stats[name] = ov, ov.stats
        distance[name] = (
            _token_distance(a.blocks[name])
            if q == k
            else np.full(a.blocks[name].shape[:2], np.nan, np.float32)
        )
    first = next(iter(overviews.values()))
    L, H = first.stats.shape[0], first.stats.shape[1] - 1
    layer = layer % L
    if head != "mean" and not 0 <= int(head) < H:
        raise ValueError(f"head must be in 0..{H - 1} or 'mean', not {head}")
    return TextResult(
        analysis=a,
        label=tm.info.label,
        blocks=dict(a.blocks),
        stats=stats,
        distance=distance,
        stat_names=STAT_NAMES,
        hide_special=hide_special,
        merge_words=merge_words,
        layer=layer,
        head=head,
        view=view,
        max_mb=max_mb,
        top_k=top_k,
        include_plotly=include_plotly,
        _overviews=overviews,
        _axes=axes,
    )
