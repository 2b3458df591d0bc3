"""``python -m app export --contributions --relevance --curves`` (issue 15): the arrays hold the numbers of
models/influence/run.py for the same input (a local BERT folder and a timm checkpoint, nothing downloads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from app.cli import main
from models.influence import run
from models.text.analysis import TextModelSpec, load_text_model

ARCH = "vit_tiny_patch16_224"
VIT_KWARGS = dict(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=4)
KWARGS_ARG = ",".join(f"{k}={v}" for k, v in VIT_KWARGS.items())


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    from safetensors.torch import save_file

    from models.text.random_models import build_random_text_model

    d = tmp_path_factory.mktemp("cli-influence")
    torch.manual_seed(0)
    vit = timm.create_model(ARCH, pretrained=False, num_classes=10, **VIT_KWARGS).eval()
    save_file(vit.state_dict(), str(d / "tiny_vit.safetensors"))
    bert, tok = build_random_text_model("bert")
    bert.save_pretrained(d / "my_bert")
    tok.save_pretrained(d / "my_bert")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)).save(
        d / "img.png"
    )
    (d / "base.toml").write_text(f'device = "cpu"\npreload = false\ncache_dir = "{d / "cache"}"\n')
    return {
        "ckpt": d / "tiny_vit.safetensors",
        "bert": d / "my_bert",
        "image": d / "img.png",
        "toml": d / "base.toml",
    }


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for key in [k for k in os.environ if k.startswith("ATLAS_")]:
        monkeypatch.delenv(key)


def test_text_export_influence(files, tmp_path):
    out = tmp_path / "t.npz"
    argv = ["export", "--config", str(files["toml"]), "--text", "the cat sat", "--model", str(files["bert"])]
    flags = ["--contributions", "--relevance", "--curves", "--pair", "a dog ran"]
    assert main([*argv, *flags, "--out", str(out)]) == 0
    z = np.load(out)
    tm = load_text_model(TextModelSpec("b", "encoder", "hub", str(files["bert"])))
    a = tm.analyze("the cat sat")
    c = run.text_contributions(tm, a)
    np.testing.assert_allclose(z["alti_layers"], c.layers, atol=1e-5)
    r = run.text_relevance(tm, a, "a dog ran")
    np.testing.assert_allclose(z["relevance"], r.relevance, atol=1e-5)
    assert (
        z["curves_auc_relevancy"].shape == (2,)
        and z["curves_deletion_rollout"].shape == z["curves_fractions"].shape
    )
    assert main([*argv, "--relevance", "--out", str(tmp_path / "x.npz")]) == 2  # MiniLM's target needs --pair


def test_vision_export_influence(files, tmp_path):
    out = tmp_path / "v.npz"
    model = f"{files['ckpt']},{KWARGS_ARG},arch={ARCH}"
    argv = ["export", "--config", str(files["toml"]), "--image", str(files["image"]), "--model", model]
    assert main([*argv, "--contributions", "--relevance", "--query", "3", "--out", str(out)]) == 0
    z = np.load(out)
    assert z["alti_rollout"].shape == (3, 16) and z["relevance"].shape == (16,)
    shares = z["alti_rollout"].sum(-1)  # the patches' share of [CLS]; [CLS]'s own share is the rest
    assert np.all(shares >= 0) and np.all(shares <= 1 + 1e-5)
    assert "curves_fractions" not in z
