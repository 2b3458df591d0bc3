"""Shared fixtures: tiny random-init models built in process (nothing downloads in tests)."""

from __future__ import annotations

import pytest
import timm
import torch

from models.registry import VisionModelSpec

TINY_VIT_KWARGS = dict(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=4, num_classes=10)


def make_tiny_vit(**overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    kwargs = {**TINY_VIT_KWARGS, **overrides}
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, **kwargs).eval()


@pytest.fixture
def tiny_vit() -> torch.nn.Module:
    return make_tiny_vit()


TINY_SPECS = [
    VisionModelSpec(
        id="tiny_vit",
        arch_tag="vit_tiny_patch16_224.random",
        source="random",
        label="Tiny random ViT (tests)",
        timm_kwargs=dict(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=4, num_classes=1000),
    ),
    VisionModelSpec(
        id="tiny_deit_distilled",
        arch_tag="deit_tiny_distilled_patch16_224.random",
        source="random",
        label="Tiny random distilled DeiT (2 prefix tokens, tests)",
        timm_kwargs=dict(img_size=48, patch_size=16, embed_dim=32, depth=2, num_heads=2, num_classes=10),
    ),
]


# --- web app fixtures ---------------------------------------------------------------------------
from collections.abc import Iterator  # noqa: E402

from fastapi.testclient import TestClient  # noqa: E402

from app.main import create_app  # noqa: E402
from app.settings import Settings, VisionModelEntry  # noqa: E402


def tiny_settings(tmp_path, **overrides) -> Settings:
    """Settings for tests: tiny random models, CPU, a temp cache dir."""
    base = dict(
        device="cpu",
        cache_dir=tmp_path / "cache",
        vision_models=[VisionModelEntry.from_spec(s) for s in TINY_SPECS],
        default_vision_model=TINY_SPECS[0].id,
        max_upload_mb=1.0,
        max_image_pixels=4_000_000,
    )
    base.update(overrides)
    return Settings(**base)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return tiny_settings(tmp_path)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        yield c
