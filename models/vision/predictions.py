"""A classifier's top-k predictions with ImageNet names from timm's bundled metadata (no network)."""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn


def top_predictions(model: nn.Module, logits: torch.Tensor, k: int = 5) -> list[tuple[str, float]]:
    """Top-k (class name, probability); ImageNet names from timm's bundled metadata when known."""
    probs = logits.float().softmax(-1)[0]
    values, indices = probs.topk(min(k, probs.numel()))
    names = _class_names(model, probs.numel())
    return [(names(int(i)), float(v)) for v, i in zip(values, indices, strict=True)]


def _class_names(model: nn.Module, num_classes: int):
    try:
        from timm.data import infer_imagenet_subset

        subset = infer_imagenet_subset(model)
        if subset:
            info = _imagenet_info(subset)
            return lambda i: info.index_to_description(i)
    except Exception:  # noqa: BLE001 - names are a nicety; fall back to indices
        pass
    return lambda i: f"class {i}"


@lru_cache(maxsize=4)
def _imagenet_info(subset: str):
    """timm's ImageNet class metadata, read once per subset (reading it costs tens of ms, per image before)."""
    from timm.data import ImageNetInfo

    return ImageNetInfo(subset)
