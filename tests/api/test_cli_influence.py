"""``python -m app export`` with --ablate, --importance and --logit-lens (app/export_ablation.py): the arrays hold
the numbers of the core functions the API and the notebook call."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from app.cli import main
from app.export_ablation import influence_arrays, parse_heads
from app.model_args import CliError
from models.influence.ablation import ablating
from models.influence.logit_lens import logit_lens
from models.influence.outcomes import answer_logp
from models.text.dates import load_date_model, normalise_dates
from models.vision.analysis import analyze_image, load_vision_model
from tests.factories import photo, tiny_vit_spec


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for key in [k for k in os.environ if k.startswith("ATLAS_")]:
        monkeypatch.delenv(key)


def test_export_ablation_and_lens_of_the_date_model(tmp_path):
    out = tmp_path / "d.npz"
    argv = ["export", "--text", "7 Dec '41", "--model", "dates-seq2seq", "--ablate", "cross:2:0,cross:2:1"]
    assert main([*argv, "--logit-lens", "--out", str(out)]) == 0
    z = np.load(out)
    model, tok = load_date_model()
    intact = normalise_dates(model, tok, ["7 Dec '41"])[0]
    assert str(z["ablation_decoded_intact"]) == intact == str(z["ablation_answer"])
    assert z["ablation_heads"].tolist() == [[2, 2, 0], [2, 2, 1]]
    with ablating(model, [("cross", 2, 0), ("cross", 2, 1)]):
        want = float(answer_logp(model, tok, ["7 Dec '41"], [intact])[0])
    assert float(z["ablation_logp_ablated"]) == pytest.approx(want, abs=1e-9)
    lens = logit_lens(
        model, torch.tensor(tok.encode("7 Dec '41")), torch.tensor(tok.encode(intact, bos=True))
    )
    np.testing.assert_array_equal(z["lens_top_ids"], lens.top_ids)
    assert z["lens_stages"][-1] == "2:ffn" and z["lens_head_promote"].shape == (2, 3, 8, 11, 3)
    assert "encoder_self" in z.files or "encoder_self_stats" in z.files  # the attention maps are still there


def test_export_refusals(tmp_path, capsys):
    out = str(tmp_path / "x.npz")
    assert (
        main(["export", "--text", "A cat.", "--model", "dates-seq2seq", "--ablate", "9", "--out", out]) == 2
    )
    assert "layer:head" in capsys.readouterr().err
    assert (
        main(["export", "--text", "A cat.", "--model", "all-minilm-l6-v2", "--logit-lens", "--out", out]) == 2
    )
    assert "date model" in capsys.readouterr().err
    assert (
        main(["export", "--text", "A cat.", "--model", "all-minilm-l6-v2", "--ablate", "0:1", "--out", out])
        == 2
    )
    assert "pair" in capsys.readouterr().err
    assert parse_heads("0:1, decoder_self:1:2") == [("encoder_self", 0, 1), ("decoder_self", 1, 2)]
    with pytest.raises(CliError):
        parse_heads("self:0:1")


def test_vision_ablation_and_importance_arrays():
    vm = load_vision_model(tiny_vit_spec(), "cpu")
    a = analyze_image(vm, photo(1, (40, 30)))
    args = argparse.Namespace(
        ablate="2:1", ablate_mode="zero", pair=None, importance=True, logit_lens=False, text=None, target=None
    )
    z = influence_arrays(vm, args, a.image)
    assert z["ablation_patch_cos_map"].shape == (4, 4) and float(z["ablation_cls_cos"]) < 1.0
    assert z["importance_cls_cos_encoder_self"].shape == (3, 4) and float(z["importance_base_cls_cos"]) == 1.0
    none = argparse.Namespace(ablate=None, importance=False, logit_lens=False)
    assert influence_arrays(vm, none) == {}
