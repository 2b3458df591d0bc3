"""``python -m app export --contributions --relevance --curves`` (issue 15): the arrays hold the numbers of
models/influence/run.py for the same input (a local BERT folder and a timm checkpoint, nothing downloads)."""

from __future__ import annotations

import numpy as np
import pytest

from app.cli import main
from models.influence import run
from models.text.analysis import TextModelSpec, load_text_model
from tests.api.conftest import ARCH, KWARGS_ARG

# the models and the image: the ``files`` fixture of tests/api/conftest.py
pytestmark = pytest.mark.usefixtures("clean_env")


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
