"""Tests of the HTTP routes through the app (TestClient): payload shapes, status codes, OpenAPI, hardening,
the schemathesis fuzzer, the local Hub, lean installs, and the command line (``python -m app serve`` and
``export``, whose exports must hold the API's numbers). The app fixtures (``client``, ``app_client``) are in
tests/conftest.py, the inputs in tests/factories.py.

This folder's own: ``files``, your own models saved to disk as the CLI reads them (a timm checkpoint and
folder, a BERT folder, an image and a base TOML), ``clean_env`` (no ``ATLAS_*`` variable of the caller's shell),
``image_path`` (a photo saved as PNG) and :func:`analyze` (one upload to ``POST /api/vision/analyze``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.factories import TINY_VIT_KWARGS, make_tiny_vit, photo

ARCH = "vit_tiny_patch16_224"
VIT_KWARGS = {k: v for k, v in TINY_VIT_KWARGS.items() if k != "num_classes"}  # the geometry the flags give
KWARGS_ARG = ",".join(f"{k}={v}" for k, v in VIT_KWARGS.items())  # img_size=32,patch_size=8,...


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """The tiny models and an image, saved once for the module: the tiny ViT (``make_tiny_vit``, 10 classes) as a
    .safetensors checkpoint and as a timm folder (``save_for_hf``), a random BERT folder (``save_pretrained`` and
    its tokenizer), a 70 x 50 PNG and a base TOML (CPU, no preload, its own cache)."""
    from safetensors.torch import save_file
    from timm.models import save_for_hf

    from models.text.random_models import build_random_text_model

    d = tmp_path_factory.mktemp("cli")
    vit = make_tiny_vit(ARCH)
    save_file(vit.state_dict(), str(d / "tiny_vit.safetensors"))
    save_for_hf(vit, str(d / "vit_folder"), model_args=dict(TINY_VIT_KWARGS), safe_serialization=True)
    bert, tok = build_random_text_model("bert")  # 2 layers x 4 heads, MiniLM's WordPiece tokenizer
    bert.save_pretrained(d / "my_bert")
    tok.save_pretrained(d / "my_bert")
    photo(0, (70, 50), high=255).save(d / "img.png")
    (d / "base.toml").write_text(
        f'device = "cpu"\npreload = false\ncache_dir = "{d / "cache"}"\n'
        'allowed_hosts = ["testserver", "127.0.0.1"]\n'
    )
    return {
        "dir": d,
        "ckpt": d / "tiny_vit.safetensors",
        "folder": d / "vit_folder",
        "bert": d / "my_bert",
        "image": d / "img.png",
        "toml": d / "base.toml",
    }


@pytest.fixture
def clean_env(monkeypatch):
    """No ATLAS_* variable of the caller's shell leaks into the test (a module opts in with
    ``pytestmark = pytest.mark.usefixtures("clean_env")``)."""
    for key in [k for k in os.environ if k.startswith("ATLAS_")]:
        monkeypatch.delenv(key)


@pytest.fixture
def image_path(tmp_path) -> Path:
    """A 52 x 40 random-noise photo (:func:`tests.factories.photo`, seed 3) saved as ``tmp_path/photo.png``."""
    path = tmp_path / "photo.png"
    photo(3, (52, 40)).save(path)
    return path


def analyze(client: TestClient, image: Path, model: str | None = None, **form) -> dict:
    """``POST /api/vision/analyze`` of the image file ``image`` (with ``model`` and other form fields); asserts
    200 and returns the JSON answer."""
    data = {"model": model, **form} if model else form
    r = client.post(
        "/api/vision/analyze", files={"image": (image.name, image.read_bytes(), "image/png")}, data=data
    )
    assert r.status_code == 200, r.text
    return r.json()
