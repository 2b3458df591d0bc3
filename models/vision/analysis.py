"""Run a ViT-family model on one image (or a batch of them) and keep everything the vision views need.

Pipeline: preprocess as the model's pretrained config says (resize the short side to R / crop_pct,
centre-crop R x R, ImageNet-style mean/std) -> forward under ``torch.inference_mode()`` with
:func:`models.vision.capture.capture_attention`, each block's (H, N, N) probabilities reduced as the block
runs (a float16 CPU copy for the views, the CLS-to-patch row, the block's rollout factor Ã), so the float32
maps of all layers never exist at once -> CLS maps, rollout, mean attention distance, the float16 residual
stream (block inputs and outputs), top-5 predictions when the model has a classifier head, and the
(L, H, N, N) float16 maps only when they are at most :data:`FULL_MAPS_MAX_BYTES` (else any map is recomputed
from the stream: :mod:`models.vision.native`, docs/native-resolution.md). Peak extra memory of one forward:
L * N^2 * 4 (the rollout factors) + 2 (L + 1) N D (the stream) [+ L * H * N^2 * 2 with full maps] + the
model's own activations, per image.

:func:`analyze_images` / :func:`analyze_batch` run B images as one (B, 3, R, R) forward (the server's dynamic
batching, app/batching.py) and split the result per image; :func:`analyze_image` is the batch of one. On a
GPU each block's (B, H, N, N) map crosses to the host in one copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from models.devices import resolve_device
from models.vision.capture import CaptureError, capture_attention, find_attention_modules
from models.vision.hidden import capture_hidden
from models.vision.mad import mean_attention_distance
from models.vision.native import (
    AttentionWeights,
    attention_weights,
    capture_stream,
    query_rows,
    supports_recompute,
)
from models.vision.native import layer_maps as recompute_layer
from models.vision.predictions import top_predictions
from models.vision.registry import VisionModelInfo, VisionModelSpec, build_model, describe
from models.vision.rollout import HeadFusion, residual_layer, rollout_from_residuals
from models.vision.value_norms import vision_norms_context

# Keep the (L, H, N, N) float16 maps only up to this size per image (small models and inputs): copying them
# per block costs ~10 % of a DINOv2 forward at 224 px (9.5 MB), and at 448 / 518 px they are 151 / 270 MB.
FULL_MAPS_MAX_BYTES = 1024 * 1024
RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


@dataclass
class VisionModel:
    """A loaded model plus what we read about it."""

    spec: VisionModelSpec
    info: VisionModelInfo
    model: nn.Module
    device: torch.device
    dtype: torch.dtype

    def check_resolution(self, resolution: int | None) -> int:
        res = self.info.default_resolution if resolution is None else int(resolution)
        if res not in self.info.resolutions:
            raise ValueError(
                f"model {self.info.id!r} accepts input resolutions {list(self.info.resolutions)}, not {res}"
            )
        return res

    def preprocess(
        self, image: Image.Image, resolution: int | None = None
    ) -> tuple[torch.Tensor, Image.Image]:
        """RGB PIL image -> (input (1, 3, R, R) float32 on the CPU, the R x R RGB image the model sees).

        CPU only, so a server can run it in its CPU pool and send whole batches to the device at once."""
        res = self.check_resolution(resolution)
        shown = center_crop_resize(image.convert("RGB"), res, self.info.crop_pct, self.info.interpolation)
        arr = np.asarray(shown, dtype=np.float32) / 255.0  # (R, R, 3)
        arr = (arr - np.asarray(self.info.mean, np.float32)) / np.asarray(self.info.std, np.float32)
        x = torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0)  # (1, 3, R, R)
        return x, shown

    def prepare(self, image: Image.Image, resolution: int | None = None) -> tuple[torch.Tensor, Image.Image]:
        """RGB PIL image -> (input tensor (1, 3, R, R) on device, the R x R RGB image the model sees)."""
        x, shown = self.preprocess(image, resolution)
        return x.to(self.device, self.dtype), shown


def center_crop_resize(image: Image.Image, size: int, crop_pct: float, interpolation: str) -> Image.Image:
    """timm's eval transform: short side to size / crop_pct, then a centred size x size crop."""
    scale_size = int(round(size / max(crop_pct, 1e-6)))
    w, h = image.size
    if w <= h:
        new_w, new_h = scale_size, max(1, int(round(h * scale_size / w)))
    else:
        new_w, new_h = max(1, int(round(w * scale_size / h))), scale_size
    resized = image.resize((new_w, new_h), RESAMPLE.get(interpolation, Image.Resampling.BICUBIC))
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return resized.crop((left, top, left + size, top + size))


def load_vision_model(
    spec: VisionModelSpec,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    cache_dir: Path | str = Path(".cache"),
) -> VisionModel:
    """Build (or load from cache) the model and move it to device/dtype."""
    dev = resolve_device(device) if isinstance(device, str) else device
    model = build_model(spec, Path(cache_dir))
    info = describe(spec, model)
    model = model.to(device=dev, dtype=dtype)
    return VisionModel(spec=spec, info=info, model=model, device=dev, dtype=dtype)


@dataclass
class VisionAnalysis:
    """Everything one forward pass gives the vision page. Arrays live on the CPU.

    Two storages (docs/native-resolution.md): the full (L, H, N, N) float16 maps in ``attentions`` when they
    are at most :data:`FULL_MAPS_MAX_BYTES` (224 px), else ``attentions`` is None and any map is recomputed
    from the float16 residual stream (``embed`` and ``hidden``) with the model's ``weights``
    (:mod:`models.vision.native`). Read maps through :meth:`layer_maps`, :meth:`maps`, :meth:`patch_rows` and
    :meth:`patch_attention`, which answer from either."""

    model_id: str
    resolution: int
    grid: tuple[int, int]  # (rows, cols)
    num_prefix_tokens: int
    attentions: torch.Tensor | None  # (L, H, N, N) float16 on CPU, or None (compact: recomputed)
    cls_attention: np.ndarray  # (L, H, P) float32
    rollout: np.ndarray  # (P,) float32
    predictions: list[tuple[str, float]] | None
    image: Image.Image  # the R x R image the model saw
    has_cls: bool = True  # False: no [CLS] token (registers only, or no prefix): maps average the patch rows
    # the residual stream (models/vision/hidden.py): features, similarity and norms views read these
    hidden: torch.Tensor | None = None  # (L, N, D) float16: tokens after each block
    features: torch.Tensor | None = None  # (N, D) float16: the last layer after the final norm
    token_norms: np.ndarray | None = None  # (L, N) float32: ||x_l|| of each token, from the float32 stream
    value_norms: np.ndarray | None = None  # (L, H, N) float32 ‖f_h(x_j)‖ (models/value_norms.py)
    embed: torch.Tensor | None = None  # (N, D) float16: the tokens entering block 0
    weights: AttentionWeights | None = None  # the model's norm1 / qkv per block (shared, not per analysis)
    mad: np.ndarray | None = None  # (L, H) float64 mean attention distance in pixels (not renormalised)

    @property
    def num_layers(self) -> int:
        return self.attentions.shape[0] if self.attentions is not None else self.hidden.shape[0]

    @property
    def num_tokens(self) -> int:
        return self.attentions.shape[-1] if self.attentions is not None else self.hidden.shape[1]

    @property
    def compact(self) -> bool:
        """True when the maps are recomputed from the residual stream (no full maps kept)."""
        return self.attentions is None

    def block_input(self, layer: int) -> torch.Tensor:
        """(N, D) float16: the tokens entering block ``layer``."""
        return self.embed if layer == 0 else self.hidden[layer - 1]

    def layer_maps(self, layer: int) -> torch.Tensor:
        """(H, N, N) float32 probabilities of one layer (a copy from the full maps, or recomputed)."""
        if self.attentions is not None:
            return self.attentions[layer].float()
        return recompute_layer(self.weights.blocks[layer], self.block_input(layer))

    def maps(self) -> LayerMaps:
        """Every layer's (H, N, N) float32 maps as a sequence, one layer made at a time."""
        return LayerMaps(self)

    def _check(self, layer: int | None, head: int | None, query: int) -> None:
        n_layers, n_heads = self.num_layers, self.cls_attention.shape[1]
        if layer is not None and not 0 <= layer < n_layers:
            raise IndexError(f"layer must be in 0..{n_layers - 1}, not {layer}")
        if head is not None and not 0 <= head < n_heads:
            raise IndexError(f"head must be in 0..{n_heads - 1}, not {head}")
        num_patches = self.num_tokens - self.num_prefix_tokens
        if not 0 <= query < num_patches:
            raise IndexError(f"query patch must be in 0..{num_patches - 1}, not {query}")

    def patch_rows(self, query: int, layers: Sequence[int] | None = None) -> np.ndarray:
        """(L', H, P) float32: where patch ``query`` attends in every head of ``layers`` (default all)."""
        self._check(None, None, query)
        p0 = self.num_prefix_tokens
        layers = range(self.num_layers) if layers is None else layers
        if self.attentions is not None:
            rows = self.attentions[list(layers), :, p0 + query, p0:]  # (L', H, P)
            return rows.float().numpy()
        blocks = [self.weights.blocks[i] for i in layers]
        inputs = [self.block_input(i) for i in layers]
        rows = query_rows(AttentionWeights(self.model_id, tuple(blocks)), inputs, p0 + query)  # (L', H, N)
        return rows[:, :, p0:].contiguous().numpy()  # (L', H, P)

    def patch_attention(self, layer: int, head: int | None, query: int) -> np.ndarray:
        """Where patch ``query`` attends in ``layer`` for one head (or the head mean): (P,) float32."""
        self._check(layer, head, query)
        rows = self.patch_rows(query, [layer])[0]  # (H, P)
        return rows.mean(0) if head is None else rows[head]


class LayerMaps:
    """An analysis's maps as a sequence of (H, N, N) float32 tensors, each made when it is read."""

    def __init__(self, analysis: VisionAnalysis) -> None:
        self.analysis = analysis

    def __len__(self) -> int:
        return self.analysis.num_layers

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(L, H, N, N), without making any layer."""
        a = self.analysis
        return (a.num_layers, a.cls_attention.shape[1], a.num_tokens, a.num_tokens)

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def __getitem__(self, layer: int) -> torch.Tensor:
        if not -len(self) <= layer < len(self):
            raise IndexError(layer)
        return self.analysis.layer_maps(layer % len(self))

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def cls_to_patch(attentions: torch.Tensor, num_prefix_tokens: int, has_cls: bool) -> torch.Tensor:
    """(..., N, N) -> (..., P) float32: the CLS query's attention over patches (mean patch query if no CLS)."""
    p0 = num_prefix_tokens
    if has_cls:
        return attentions[..., 0, p0:].to(torch.float32, copy=True)  # a copy: a view would keep the map
    return attentions[..., p0:, p0:].float().mean(dim=-2)


def analyze_image(
    vm: VisionModel,
    image: Image.Image,
    resolution: int | None = None,
    head_fusion: HeadFusion = "mean",
    discard_ratio: float = 0.0,
    keep_maps: bool | None = None,
) -> VisionAnalysis:
    """One forward pass with attention capture; see the module docstring (``keep_maps``:
    :func:`keeps_full_maps`)."""
    return analyze_images(vm, [image], resolution, head_fusion, discard_ratio, keep_maps)[0]


def analyze_images(
    vm: VisionModel,
    images: Sequence[Image.Image],
    resolution: int | None = None,
    head_fusion: HeadFusion = "mean",
    discard_ratio: float = 0.0,
    keep_maps: bool | None = None,
) -> list[VisionAnalysis]:
    """:func:`analyze_image` for several images in one batched forward pass: one result per image, each
    the same structure as :func:`analyze_image`'s (batch-invariant kernels give the same numbers)."""
    prepared = [vm.preprocess(image, resolution) for image in images]
    x = torch.cat([x for x, _ in prepared])
    return analyze_batch(vm, x, [s for _, s in prepared], head_fusion, discard_ratio, keep_maps)


def keeps_full_maps(vm: VisionModel, tokens: int, keep_maps: bool | None = None) -> bool:
    """Whether an analysis with ``tokens`` tokens keeps its (L, H, N, N) float16 maps: ``keep_maps`` if given,
    else when they are at most :data:`FULL_MAPS_MAX_BYTES` (or the model's maps cannot be recomputed)."""
    if not supports_recompute(vm.model):
        return True
    if keep_maps is not None:
        return keep_maps
    return vm.info.num_layers * vm.info.num_heads * tokens * tokens * 2 <= FULL_MAPS_MAX_BYTES


def analyze_batch(
    vm: VisionModel,
    x: torch.Tensor,
    shown: Sequence[Image.Image],
    head_fusion: HeadFusion = "mean",
    discard_ratio: float = 0.0,
    keep_maps: bool | None = None,
    value_norms: bool = True,
) -> list[VisionAnalysis]:
    """Preprocessed inputs ``x`` (B, 3, R, R) (from :meth:`VisionModel.preprocess`, any device and dtype) and
    the B images they show -> B analyses, from one forward pass with attention capture (and, with
    ``value_norms``, the per-head value norms of :mod:`models.value_norms` from hooks in the same forward).
    ``keep_maps``: see :func:`keeps_full_maps` (None: full maps at most :data:`FULL_MAPS_MAX_BYTES` per image)."""
    if x.ndim != 4 or x.shape[0] != len(shown) or x.shape[0] == 0:
        raise ValueError(f"expected (B, 3, R, R) inputs for {len(shown)} images, got {tuple(x.shape)}")
    x = x.to(vm.device, vm.dtype)
    batch = x.shape[0]
    info = vm.info
    num_layers = len(find_attention_modules(vm.model))
    p0 = info.num_prefix_tokens
    rows, cols = info.grid(x.shape[-2], x.shape[-1])
    full = keeps_full_maps(vm, p0 + rows * cols, keep_maps)
    kept: list[torch.Tensor] = []  # B x (L, H, N, N) float16 on CPU (full maps only)
    cls_maps: list[torch.Tensor | None] = [None] * num_layers  # L x (B, H, P)
    residuals: list[torch.Tensor | None] = [None] * num_layers  # L x (B, N, N), Ã_l of the rollout
    mads: list[torch.Tensor | None] = [None] * num_layers  # L x (B, H) pixels
    seen: list[int] = []

    def residual(m: torch.Tensor) -> torch.Tensor:
        return residual_layer(m, head_fusion, discard_ratio, p0)  # (H, N, N) -> (N, N)

    def keep(block: int, probs: torch.Tensor) -> None:
        """Reduce each block's (B, H, N, N) probabilities as it runs: the float16 CPU copy (full maps only),
        its CLS row, its distance and its rollout factor; the float32 maps are never all held at once."""
        if full:
            # one device-to-host copy per block (on the CPU this is the map itself, converted in copy_ below)
            host = probs if probs.device.type == "cpu" else probs.to("cpu", torch.float16)  # (B, H, N, N)
            if not kept:
                kept.extend(
                    torch.empty((num_layers, *probs.shape[1:]), dtype=torch.float16) for _ in range(batch)
                )  # B x (L, H, N, N)
            for b in range(batch):
                kept[b][block].copy_(host[b])
        cls_maps[block] = cls_to_patch(probs, p0, info.has_cls_token)  # (B, H, P)
        mads[block] = mean_attention_distance(probs, (rows, cols), p0, info.patch_size)  # (B, H)
        # one batched op per step for the whole batch (vmap); discards need a top-k per map, so a loop
        if discard_ratio == 0.0:
            residuals[block] = torch.vmap(residual)(probs)  # (B, N, N)
        else:
            residuals[block] = torch.stack([residual(m) for m in probs])  # (B, N, N)
        seen.append(block)

    with torch.inference_mode():
        with (
            capture_attention(vm.model, reduce=keep),
            capture_stream(vm.model) as stream,  # the float16 stream the maps are recomputed from
            capture_hidden(vm.model, keep_hidden=False) as streams,  # float32 token norms only
            vision_norms_context(vm.model, value_norms) as vn,
        ):
            feats = vm.model.forward_features(x)  # (B, N, D) after the final norm
        logits = vm.model.forward_head(feats) if info.num_classes > 0 else None
        if set(seen) != set(range(num_layers)):
            raise CaptureError("the forward pass recorded no attention probabilities for some blocks")
        rolls = torch.vmap(lambda rs: rollout_from_residuals(rs, p0, info.has_cls_token))(residuals)  # (B, P)
        cls_all = torch.stack(cls_maps, dim=1).float().cpu().numpy()  # (B, L, H, P)
        mad_all = torch.stack(mads, dim=1).double().cpu().numpy()  # (B, L, H)
        rolls = rolls.float().cpu().numpy()
        norms = streams.all_norms()  # (B, L, N) float32
        last = feats.to("cpu", torch.float16)  # (B, N, D)
        vnorms = vn.stacked() if vn is not None and vn.complete() else None  # (L, B, H, N)
    weights = None if full else attention_weights(vm.model, info.id)
    out = []
    for b in range(batch):
        embed, hidden = stream.image(b)  # (N, D), (L, N, D)
        out.append(
            VisionAnalysis(
                model_id=info.id,
                resolution=int(x.shape[-1]),
                grid=(rows, cols),
                num_prefix_tokens=p0,
                attentions=kept[b] if full else None,
                cls_attention=cls_all[b].copy(),  # (L, H, P), its own memory (a view would keep the batch's)
                rollout=rolls[b].copy(),  # (P,)
                predictions=top_predictions(vm.model, logits[b : b + 1]) if logits is not None else None,
                image=shown[b],
                has_cls=info.has_cls_token,
                hidden=hidden,
                embed=embed,
                weights=weights,
                mad=mad_all[b].copy(),  # (L, H)
                features=last[b].clone(),  # (N, D)
                token_norms=norms[b].numpy().copy(),  # (L, N)
                value_norms=None if vnorms is None else vnorms[:, b].numpy().copy(),  # (L, H, N)
            )
        )
    return out
