"""``show_vision``: one image through one ViT-family model in a notebook, displayed with the vision page's views.

The numbers come from :mod:`models.vision.views` (the functions the web services and the export command
call); the displayed payload is the web route's :class:`app.schemas.vision.VisionAnalysisResponse` plus what
a page without a server needs: every rollout option, patch-probing rows, the distance and entropy tables.

What goes into the HTML (``max_mb`` bounds it): every [CLS] map (L, H, P) float32, the rollout for
3 head fusions x 3 discard ratios, the photo as PNG, the (L, H, P) patch entropies, and for patch probing
each query patch's row over the patches as uint8 steps of the row maximum (L x H x P^2 bytes: 4.7 MB for
DINOv2 ViT-S/14 at 224 px), for as many layers as ``max_mb`` allows.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

import app.notebook.models as models
import app.notebook.value_weighted as vw
from app.notebook.features import FeatureMethods
from app.notebook.html import Output, b64_size
from app.notebook.influence import VisionInfluence
from app.schemas.vision import RolloutOptions
from app.schemas.vision_views import analysis_response
from app.serialization import typed_array
from models.vision import views
from models.vision.analysis import VisionAnalysis, VisionModel, analyze_image
from models.vision.registry import VisionModelSpec, describe

FUSIONS = ("mean", "max", "min")
DISCARDS = (0.0, 0.5, 0.9)
VIEWS = ("head", "mean", "rollout", "entropy")


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


def vision_model(model: Any, resolution: int | None, device: str | None) -> VisionModel:
    """Our VisionModel for an id, a VisionModel, or any timm ViT-family ``nn.Module`` (wrapped as
    ``models/vision/registry.describe`` reads a loaded model: pretrained_cfg, prefix tokens, patch grid)."""
    if isinstance(model, VisionModel):
        return model
    if isinstance(model, str):
        return models.load("vision", model, device)
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
class VisionResult(FeatureMethods, VisionInfluence, Output):
    """One image through one ViT-family model: the numbers, and the views when displayed.

    maps      (L, H, N, N) float32: every layer's and head's attention probabilities over the N tokens
              (prefix tokens first, then the P = rows x cols patches, row-major).
    cls       (L, H, P) float32: the [CLS] query's row over the patches (mean patch query without a [CLS]).
    rollout   (P,) float32: attention rollout (Abnar & Zuidema 2020; ViT paper Fig. 6, App. D.8).
    distance  (L, H) float32: mean attention distance in pixels of the model input (ViT paper Fig. 7
              right, App. D.7; models/vision/distance.py).
    stats     dict of (L, H) float32 (``models.vision.views.head_stats``): ``entropy`` (mean row entropy of
              the patch queries over every key, nats), ``prefix_share``, ``self_share``.
    entropy() the per-patch entropy over the patch keys (renormalised; ``models.vision.views.patch_entropy``).
    features_pca(), similarity(patch, layer), parts(k), norms, sink_mass, sinks(): app/notebook/features.py.
    """

    vm: VisionModel = field(repr=False)
    analysis: VisionAnalysis = field(repr=False)
    maps: np.ndarray
    rollout: np.ndarray
    distance: np.ndarray
    stats: dict[str, np.ndarray]
    layer: int
    head: int
    view: str
    query: int | None
    max_mb: float

    ENTRY = "notebook/vision.js"
    model_id = property(lambda self: self.vm.info.id)
    label = property(lambda self: self.vm.info.label)
    patch_size = property(lambda self: self.vm.info.patch_size)
    resolution = property(lambda self: self.analysis.resolution)
    grid = property(lambda self: self.analysis.grid)
    num_prefix_tokens = property(lambda self: self.analysis.num_prefix_tokens)
    has_cls = property(lambda self: self.analysis.has_cls)
    cls = property(lambda self: self.analysis.cls_attention)
    predictions = property(lambda self: self.analysis.predictions)
    image = property(lambda self: self.analysis.image)

    def __repr__(self) -> str:
        L, H = self.cls.shape[:2]
        return (
            f"VisionResult({self.label!r}: {L} layers x {H} heads, {self.grid[0]}x{self.grid[1]} patches at "
            f"{self.resolution} px; .maps {tuple(self.maps.shape)}, .cls, .rollout, .distance, .stats, .entropy())"
        )

    def ablate(self, heads: Any, mode: str = "zero"):
        """Ablate ``heads`` (0-based (layer, head)) on this image and compare the features with the intact run
        ([CLS] and per-patch cosines; ``app/notebook/ablation.py``)."""
        from app.notebook.ablation import ablate

        return ablate(self.vm, heads, mode, image=self.analysis.image)  # type: ignore[arg-type]

    def value_weighted(self, layer: int | None = None, renormalise: bool = True) -> np.ndarray:
        """Value-weighted attention α_ij ‖f_h(x_j)‖ (Kobayashi et al. 2020; models/value_norms.py): (H, N, N)
        of one layer or (L, H, N, N); rows renormalised to sum 1 unless ``renormalise=False``. The norms
        (``.value_norms``, (L, H, N)) include DINOv2's LayerScale and leave out the shared output bias."""
        return vw.vision_weighted(self.analysis, layer, renormalise)

    value_norms = property(lambda self: self.analysis.value_norms)

    def prefix_survival(self):
        """Per head: the patch queries' share of attention on prefix tokens, in α and value-weighted."""
        return vw.vision_survival(self.analysis)

    def rollout_map(self, head_fusion: str = "mean", discard_ratio: float = 0.0) -> np.ndarray:
        """(P,) rollout with other options (from the cached float16 maps)."""
        return views.rollout(self.analysis, head_fusion, discard_ratio)  # type: ignore[arg-type]

    def entropy(self, layer: int | None = None, head: int | None = None) -> np.ndarray:
        """Entropy (nats) of each query patch's attention over the patch keys, prefix tokens left out and
        rows renormalised (maximum log(P) for uniform attention): (L, H, P) for ``layer=None``, else the
        (rows, cols) map of one head or (``head=None``) the mean over heads."""
        if layer is None:
            return views.patch_entropy(self.analysis)  # (L, H, P)
        return views.entropy_map(self.analysis, layer % self.maps.shape[0], head)  # (R, C)

    def probe_layers(self) -> list[int]:
        """Layers whose patch-to-patch rows fit in ``max_mb`` (always the selected layer, then spread out)."""
        L, H = self.cls.shape[:2]
        P = self.grid[0] * self.grid[1]
        per_layer = b64_size(H * P * P) + b64_size(4 * H * P)  # uint8 rows + float32 row scales
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
        """What the notebook's vision.js draws: the web route's VisionAnalysisResponse, plus the rollouts,
        patch-probing rows, distance and entropy tables a page without a server needs."""
        buf = io.BytesIO()
        self.image.save(buf, format="PNG")
        image_url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
        options = RolloutOptions(head_fusion="mean", discard_ratio=0.0)
        a = self.analysis
        resp = analysis_response("notebook", "notebook", self.vm.info, a, a.rollout, options,
                                 image_url, forward_ms=0.0)  # fmt: skip
        probe = self.probe_layers()
        q, step = views.probe_rows(self.analysis, probe)  # (Lp, H, P, P) uint8, (Lp, H, P)
        rollouts = {f"{f}|{d:.2f}": typed_array(self.rollout_map(f, d)) for f in FUSIONS for d in DISCARDS}
        return {
            **resp.model_dump(),
            "rollouts": rollouts,
            "fusions": list(FUSIONS),
            "discards": list(DISCARDS),
            "probe_layers": probe,
            "probe": typed_array(q, "u1"),
            "probe_scale": typed_array(step),
            "distance": typed_array(self.distance),
            "entropy": typed_array(self.entropy()),  # (L, H, P)
            "max_entropy": views.max_entropy(self.analysis),
            "selected": {"layer": self.layer, "head": self.head, "view": self.view, "query": self.query},
        }

    def fallback(self) -> str:
        return (
            f"Attention Atlas: {self.label}, {self.grid[0]}x{self.grid[1]} patches. Run the cell (or trust the "
            "notebook) to see the interactive views; the numbers are on the result (.maps)."
        )


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

    ``layer``/``head``/``query`` (0-based; ``layer=-1`` is the last) and ``view`` ("head", "mean",
    "rollout" or "entropy") set what the output shows first; ``head_fusion``/``discard_ratio`` the rollout
    in ``.rollout``. ``max_mb`` bounds the patch-probing data in the HTML (layers beyond it show their
    [CLS] maps only). The model is put in eval mode for the forward and its mode restored afterwards.
    """
    vm = vision_model(model, resolution, device)
    pil = load_image(image)
    was_training = vm.model.training
    vm.model.eval()
    try:
        a = analyze_image(vm, pil, resolution, keep_maps=True)  # ``maps`` below: every map
    finally:
        vm.model.train(was_training)
    L, H = a.cls_attention.shape[:2]
    if view not in VIEWS:
        raise ValueError(f"view must be one of {', '.join(map(repr, VIEWS))}, not {view!r}")
    if not 0 <= head < H:
        raise ValueError(f"head must be in 0..{H - 1}, not {head}")
    P = a.grid[0] * a.grid[1]
    if query is not None and not 0 <= query < P:
        raise ValueError(f"query patch must be in 0..{P - 1}, not {query}")
    return VisionResult(
        vm=vm,
        analysis=a,
        maps=np.stack([m.numpy() for m in a.maps()]),  # (L, H, N, N) float32
        rollout=views.rollout(a, head_fusion, discard_ratio),  # type: ignore[arg-type]
        distance=views.attention_distance(a, vm.info.patch_size).astype(np.float32),  # (L, H) pixels
        stats=views.stats(a),
        layer=layer % L,
        head=head,
        view=view,
        query=query,
        max_mb=max_mb,
    )
