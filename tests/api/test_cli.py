"""``python -m app serve`` / ``export``: your own models from flags and a TOML file, the settings priority
(flags > environment > TOML > defaults), exports that hold the API's numbers, and one-line errors.

Everything is tiny and random, built in process and saved to tmp: a timm ViT checkpoint (.safetensors), the
same model as a timm folder (``save_for_hf``) and a BERT folder (``save_pretrained`` + its tokenizer). The app
the CLI would serve is driven with TestClient (no port is bound); two cases run the real process.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.cli import build_parser, main, serve_settings, text_kind
from app.main import create_app
from app.serialization import decode_typed_array
from app.settings import Settings, load_settings
from tests.api.conftest import ARCH, KWARGS_ARG, VIT_KWARGS, analyze

ROOT = Path(__file__).resolve().parents[2]
SENTENCE = "The animal didn't cross the street because it was too tired."
FLOAT32_ROUNDING = 1e-6  # float32 eps (1.2e-7) x a margin of ~8: the same ops, in the same process
# the models and the image: the ``files`` fixture of tests/api/conftest.py
pytestmark = pytest.mark.usefixtures("clean_env")


def settings_from(*argv: str) -> Settings:
    return serve_settings(build_parser().parse_args(["serve", *argv]))


def test_checkpoint_and_timm_folder_flags_serve(files) -> None:
    settings = settings_from(
        "--config", str(files["toml"]),
        "--vision-model", f"{files['ckpt']},{KWARGS_ARG}", "--arch", ARCH,
        "--vision-model", f"{files['folder']},id=folder_vit",
    )  # fmt: skip
    specs = settings.models.vision_specs()
    assert settings.models.default_vision_model == "tiny_vit"  # the first flag model; built-in DINOv2 stays
    assert {"dinov2_vits14", "tiny_vit", "folder_vit"} <= set(specs)
    ckpt = specs["tiny_vit"]
    assert (ckpt.source, ckpt.arch_tag, ckpt.path) == ("file", ARCH, str(files["ckpt"]))
    assert ckpt.timm_kwargs == {**VIT_KWARGS, "num_classes": 10}  # num_classes read from the head's shape
    with TestClient(create_app(settings)) as client:
        models = client.get("/api/models").json()
        assert "tiny_vit" in str(models) and "folder_vit" in str(models)
        a = analyze(client, files["image"], "tiny_vit")
        b = analyze(client, files["image"], "folder_vit")
    for j in (a, b):
        assert (j["model"]["num_layers"], j["model"]["num_heads"], j["model"]["patch_size"]) == (3, 4, 8)
        assert (j["grid"]["rows"], j["grid"]["cols"]) == (4, 4)
    # a flag naming an id already on the allowlist only makes it the default
    s = settings_from(
        "--config", str(files["toml"]), "--vision-model", "dinov2_vits14", "--text-model", "dates-seq2seq"
    )
    assert (s.models.default_vision_model, s.models.default_text_model) == ("dinov2_vits14", "dates-seq2seq")
    assert s.models.extra_vision_models == [] and s.models.extra_text_models == []
    # the same weights through both routes: the same maps
    np.testing.assert_allclose(
        decode_typed_array(a["cls_attention"]), decode_typed_array(b["cls_attention"]), atol=FLOAT32_ROUNDING
    )


def test_local_hf_text_folder_serves_and_exports_the_same_maps(files, tmp_path) -> None:
    settings = settings_from("--config", str(files["toml"]), "--text-model", str(files["bert"]))
    spec = settings.models.text_specs()["my_bert"]
    assert (spec.kind, spec.source, spec.name) == ("encoder", "hub", str(files["bert"]))
    assert settings.models.default_text_model == "my_bert"
    with TestClient(create_app(settings)) as client:
        r = client.post("/api/text/analyze", json={"text": SENTENCE, "model": "my_bert"})
        assert r.status_code == 200, r.text
        j = r.json()
    block = next(b for b in j["blocks"] if b["kind"] == "encoder_self")
    api = decode_typed_array(block["data"])  # (L, H, T, T)
    assert api.shape[:2] == (2, 4)
    out = tmp_path / "text.npz"
    rc = main(["export", "--config", str(files["toml"]), "--text", SENTENCE, "--model", str(files["bert"]),
               "--out", str(out)])  # fmt: skip
    assert rc == 0
    z = np.load(out)
    assert list(z["source_tokens"]) == j["source"]["tokens"]
    np.testing.assert_allclose(z["encoder_self"], api, atol=FLOAT32_ROUNDING)
    assert z["encoder_self_stats"].shape == (2, 5, len(z["stat_names"]))  # heads + their mean


def test_text_kind_from_config() -> None:
    assert text_kind({"model_type": "bert", "architectures": ["BertModel"]}) == "encoder"
    assert text_kind({"model_type": "gpt2", "architectures": ["GPT2Model"]}) == "causal"
    assert text_kind({"model_type": "llama"}) == "causal"
    assert text_kind({"model_type": "marian", "is_encoder_decoder": True}) == "seq2seq"
    assert text_kind({"model_type": "roberta", "architectures": ["RobertaForMaskedLM"]}) == "encoder"


def test_priority_flags_over_env_over_toml_over_defaults(files, tmp_path, monkeypatch) -> None:
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "v.safetensors").write_bytes(files["ckpt"].read_bytes())
    shutil.copytree(files["folder"], tmp_path / "w" / "vf")
    toml = tmp_path / "atlas.toml"
    toml.write_text(
        'device = "cpu"\nmax_upload_mb = 3\nretry_after_s = 7\npreload = false\n'
        '[[extra_vision_models]]\nid = "from_toml"\nsource = "file"\n'
        f'arch_tag = "{ARCH}"\npath = "w/v.safetensors"\n'
        "timm_kwargs = { img_size = 32, patch_size = 8, embed_dim = 32, depth = 3, num_heads = 4, "
        "num_classes = 10 }\n"
        '[[extra_vision_models]]\nid = "folder_from_toml"\nsource = "hub"\narch_tag = "local-dir:w/vf"\n'
    )
    assert Settings().limits.retry_after_s == 2  # the default, no file
    monkeypatch.setenv("ATLAS_CONFIG", str(toml))  # the file, by environment variable
    monkeypatch.setenv("ATLAS_MAX_UPLOAD_MB", "5")
    monkeypatch.setenv("ATLAS_DEVICE", "cuda")
    s = Settings()
    assert (s.limits.retry_after_s, s.limits.max_upload_mb, s.server.device) == (7, 5.0, "cuda")  # TOML < env
    assert s.models.vision_specs()["from_toml"].path == str(
        tmp_path / "w" / "v.safetensors"
    )  # relative to the file
    assert (
        s.models.vision_specs()["folder_from_toml"].arch_tag
        == f"local-dir:{(tmp_path / 'w' / 'vf').resolve()}"
    )
    s = settings_from("--device", "cpu", "--vision-model", f"{files['ckpt']},{KWARGS_ARG},arch={ARCH}")
    assert (s.server.device, s.limits.max_upload_mb, s.limits.retry_after_s) == (
        "cpu",
        5.0,
        7,
    )  # flag < env < TOML
    assert {"from_toml", "tiny_vit", "dinov2_vits14"} <= set(
        s.models.vision_specs()
    )  # flags join the file's list
    assert s.models.default_vision_model == "tiny_vit"
    assert load_settings(files["toml"]).limits.retry_after_s == 2  # --config wins over ATLAS_CONFIG


def test_export_holds_the_apis_numbers(files, tmp_path) -> None:
    model = f"{files['ckpt']},{KWARGS_ARG},arch={ARCH}"
    out, out2 = tmp_path / "maps.npz", tmp_path / "maps2.npz"
    common = ["export", "--config", str(files["toml"]), "--image", str(files["image"]), "--model", model]
    assert main([*common, "--out", str(out)]) == 0
    options = ["--head-fusion", "max", "--discard-ratio", "0.5", "--renormalize", "--unit", "patches"]
    assert main([*common, *options, "--out", str(out2)]) == 0
    z, z2 = np.load(out), np.load(out2)
    L, H, N = 3, 4, 17
    assert z["attentions"].shape == (L, H, N, N) and z["attentions"].dtype == np.float16
    assert list(z["grid"]) == [4, 4] and int(z["num_prefix_tokens"]) == 1
    assert z["token_kind"][0] == "cls" and z["token_row"][0] == -1
    assert (z["token_row"][N - 1], z["token_col"][N - 1]) == (3, 3)

    settings = settings_from("--config", str(files["toml"]), "--vision-model", model)
    with TestClient(create_app(settings)) as client:
        j = analyze(client, files["image"], "tiny_vit")
        aid = j["analysis_id"]
        np.testing.assert_allclose(
            z["cls_attention"], decode_typed_array(j["cls_attention"]), atol=FLOAT32_ROUNDING
        )
        np.testing.assert_allclose(z["rollout"], decode_typed_array(j["rollout"]), atol=FLOAT32_ROUNDING)
        for layer, head, query in ((0, 0, 0), (2, 3, 15), (1, None, 6)):
            params = {"layer": layer, "query": query} | ({} if head is None else {"head": head})
            got = decode_typed_array(
                client.get(f"/api/vision/analysis/{aid}/attention", params=params).json()["values"]
            )
            rows = z["attentions"][layer, :, 1 + query, 1:].astype(np.float32)  # (H, P)
            want = rows.mean(0) if head is None else rows[head]
            np.testing.assert_allclose(got.ravel(), want, atol=FLOAT32_ROUNDING)
        d = client.get(f"/api/distance/analysis/{aid}").json()
        np.testing.assert_allclose(z["distance"], decode_typed_array(d["mad"]), rtol=1e-12)
        np.testing.assert_allclose(
            z["distance_per_layer"], decode_typed_array(d["per_layer_mean"]), rtol=1e-12
        )
        r = client.get(
            f"/api/vision/analysis/{aid}/rollout", params={"head_fusion": "max", "discard_ratio": 0.5}
        )
        np.testing.assert_allclose(
            z2["rollout"], decode_typed_array(r.json()["rollout"]), atol=FLOAT32_ROUNDING
        )
        d2 = client.get(
            f"/api/distance/analysis/{aid}", params={"renormalize": True, "unit": "patches"}
        ).json()
        np.testing.assert_allclose(z2["distance"], decode_typed_array(d2["mad"]), rtol=1e-12)
        png = client.get(f"/api/vision/analysis/{aid}/image.png").content
    assert np.array_equal(z["image"], np.asarray(Image.open(io.BytesIO(png)).convert("RGB")))


BAD = {
    "missing checkpoint": (["serve", "--vision-model", "no/such/w.safetensors", "--arch", ARCH], "no such file"),
    "unknown arch": (["serve", "--vision-model", "{ckpt}", "--arch", "vit_no_such_arch"], "not a timm architecture"),
    "not a ViT": (["serve", "--vision-model", "{ckpt}", "--arch", "resnet18"], "not a ViT-family model"),
    "wrong arch": (["serve", "--vision-model", "{ckpt}", "--arch", "vit_small_patch16_224"], "its shapes say ,depth=3,embed_dim=32,patch_size=8,img_size=32"),
    "no arch": (["serve", "--vision-model", "{ckpt}"], "needs its timm architecture"),
    "bad timm tag": (["serve", "--vision-model", "vit_small_patch16_224.no_such_tag"], "no pretrained weights"),
    "bad Hub id": (["serve", "--text-model", "not a model id!"], "not a local folder nor a Hub id"),
    "missing text folder": (["serve", "--text-model", "./no-such-folder"], "no such folder"),
    "folder without tokenizer": (["serve", "--text-model", "{folder}"], "no tokenizer files"),
    "missing TOML": (["serve", "--config", "no-such.toml"], "does not exist"),
    "unknown TOML key": (["serve", "--config", "{typo}"], "unknown setting(s) devcie"),
    "missing image": (["export", "--image", "no-such.jpg", "--model", "{ckpt},arch=" + ARCH, "--out", "x.npz"], "no such file"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_bad_paths_archs_and_ids_are_one_line_exit_2(case, files, capsys) -> None:
    (files["dir"] / "typo.toml").write_text('devcie = "cpu"\n')
    argv, message = BAD[case]
    fill = {"ckpt": files["ckpt"], "folder": files["folder"], "typo": files["dir"] / "typo.toml"}
    argv = [a.format(**fill) for a in argv]
    if argv[0] == "serve":
        argv.append("--check")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"python -m app {argv[0]}: error: "), err
    assert message in err, err


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--check", "--vision-model", "{ckpt}", "--arch", "vit_no_such_arch"],
        ["export", "--image", "no-such.jpg", "--out", "x.npz"],
    ],
    ids=["serve", "export"],
)
def test_the_real_process_prints_one_line_and_exits_2(argv, files) -> None:
    argv = [a.format(ckpt=files["ckpt"]) for a in argv]
    p = subprocess.run(
        [sys.executable, "-m", "app", *argv], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
