"""Hub models through the operator's allowlist, proven without a network (issue 9, §4).

Design (see tests/hub_snapshot.py): five tiny random repos, written by timm's ``save_for_hf`` and transformers'
``save_pretrained``, are served by a local Hub on 127.0.0.1 (``HF_ENDPOINT``). Phase 1 (module fixture
``hub_cache``): the app, configured with ``source: "hub"`` entries only, loads every model through its real
loaders (``timm.create_model("hf-hub:...", pretrained=True)``, ``timm.create_model("<timm name>",
pretrained=True)``, ``AutoTokenizer`` / ``AutoModel`` / ``AutoModelForSeq2SeqLM.from_pretrained``), so
``huggingface_hub`` itself downloads the files and writes its cache. Phase 2 (every other test): the server is
gone and ``HF_HUB_OFFLINE=1``; a fresh app loads the same models from that cache alone, and the API's attention
is checked against the weights that were saved: shapes, prefix tokens, rows summing to 1, the causal mask, and
Marian's cross-attention (Vaswani et al. 2017, Section 3.2.3).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from safetensors.torch import load_file

from app.main import create_app
from app.serialization import decode_typed_array
from app.settings import Settings, TextModelEntry, VisionModelEntry
from tests.conftest import run_python
from tests.hub_snapshot import (
    BERT,
    DEIT,
    GPT2,
    MARIAN,
    VIT,
    VIT_ARGS,
    LocalHub,
    build_repos,
    hub_client_env,
    save_timm,
    snapshot_dirs,
)

# A timm *name* with pretrained=True resolves to the Hub repo timm/<name>: the commonest operator entry.
TIMM_NAME = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"
TIMM_REPO = f"timm/{TIMM_NAME}"
TIMM_NAME_ARGS = {**VIT_ARGS, "num_classes": 1000}
SENTENCE = "The quick brown fox jumps over the lazy dog."
pytestmark = pytest.mark.filterwarnings(
    "ignore:Recommended. pip install sacremoses"
)  # Marian's optional normaliser


def hub_settings(cache_dir: Path) -> Settings:
    """Only hub entries, as an operator would allowlist them (ATLAS_VISION_MODELS / ATLAS_TEXT_MODELS JSON)."""
    vision = [
        VisionModelEntry(id="hub-vit", arch_tag=f"hf-hub:{VIT}", source="hub", label="Tiny ViT (hub)"),
        VisionModelEntry(id="hub-deit", arch_tag=f"hf-hub:{DEIT}", source="hub", label="Tiny DeiT distilled"),
        VisionModelEntry(id="hub-timm-name", arch_tag=TIMM_NAME, source="hub", timm_kwargs=TIMM_NAME_ARGS),
    ]
    text = [
        TextModelEntry(id="hub-bert", kind="encoder", source="hub", name=BERT, max_tokens=128),
        TextModelEntry(id="hub-gpt2", kind="causal", source="hub", name=GPT2, max_tokens=128),
        TextModelEntry(id="hub-marian", kind="seq2seq", source="hub", name=MARIAN, max_tokens=64),
    ]
    return Settings(
        device="cpu",
        cache_dir=cache_dir,
        vision_models=vision,
        default_vision_model="hub-vit",
        text_models=text,
        default_text_model="hub-bert",
        default_seq2seq_model="hub-marian",
        allowed_hosts=["testserver"],
    )


@pytest.fixture(scope="module")
def repos(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hub-repos")
    built = build_repos(root)
    built[TIMM_REPO] = root / TIMM_REPO
    save_timm(built[TIMM_REPO], "vit_tiny_patch16_224", TIMM_NAME_ARGS)
    return built


@pytest.fixture(scope="module")
def hub_cache(repos, tmp_path_factory) -> tuple[Path, list[tuple[str, str, int]]]:
    """Phase 1: the app downloads every allowlisted model from the local Hub; returns (cache, request log)."""
    cache = tmp_path_factory.mktemp("hf-cache")
    with LocalHub(repos) as hub, hub_client_env(cache, endpoint=hub.url):
        settings = hub_settings(tmp_path_factory.mktemp("atlas-cache"))
        with TestClient(create_app(settings)) as c:  # preload: hub-vit, hub-bert, hub-marian
            for model in ("hub-vit", "hub-deit", "hub-timm-name"):
                r = c.post("/api/vision/analyze", data={"sample": "astronaut", "model": model})
                assert r.status_code == 200, r.text
            for model in ("hub-bert", "hub-gpt2", "hub-marian"):
                r = c.post("/api/text/analyze", json={"text": SENTENCE, "model": model})
                assert r.status_code == 200, r.text
    return cache, list(hub.requests)


@pytest.fixture(scope="module")
def client(hub_cache, tmp_path_factory) -> Iterator[TestClient]:
    """Phase 2: no server, HF_HUB_OFFLINE=1, the cache from phase 1; a fresh app."""
    cache, _ = hub_cache
    with (
        hub_client_env(cache, offline=True),
        TestClient(create_app(hub_settings(tmp_path_factory.mktemp("atlas-cache")))) as c,
    ):
        yield c


def test_phase1_files_came_over_http_into_the_hub_cache(hub_cache, repos):
    cache, requests = hub_cache
    fetched = {path for method, path, status in requests if method == "GET" and status == 200}
    for repo in repos:
        assert any(p.startswith(f"/{repo}/resolve/") and p.endswith("/model.safetensors") for p in fetched), (
            repo
        )
    for repo in (VIT, DEIT, BERT, GPT2, MARIAN):  # a timm name's config is timm's own, not a download
        assert any(p.startswith(f"/{repo}/resolve/") and p.endswith("/config.json") for p in fetched), repo
    assert snapshot_dirs(cache) == sorted(f"models--{r.replace('/', '--')}" for r in repos)
    # a repo's missing optional files are answered 404 and the clients go on without them
    assert any(status == 404 and path.endswith("/special_tokens_map.json") for _, path, status in requests)


def test_offline_is_really_offline(client, hub_cache):
    """The phase-2 app has loaded its defaults; a Hub request now raises instead of reaching anything."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    assert constants.HF_HUB_OFFLINE
    assert client.get("/api/health").json()["status"] == "ok"
    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download(VIT, "not-in-the-cache.json")


def loaded_state_dict(client: TestClient, model_id: str) -> dict[str, torch.Tensor]:
    return client.app.state.atlas.vision_store.get(model_id).model.state_dict()


@pytest.mark.parametrize(
    ("model_id", "repo", "side", "patch", "prefix"),
    [("hub-vit", VIT, 32, 8, 1), ("hub-deit", DEIT, 48, 16, 2), ("hub-timm-name", TIMM_REPO, 32, 8, 1)],
)
def test_vision_hub_models_analyze_and_follow_ups(client, repos, model_id, repo, side, patch, prefix):
    r = client.post("/api/vision/analyze", data={"sample": "coffee", "model": model_id})
    assert r.status_code == 200, r.text
    body = r.json()
    rows = side // patch
    n_patches = rows * rows
    assert body["grid"] == {
        "rows": rows, "cols": rows, "patch_size": patch, "num_prefix_tokens": prefix, "resolution": side
    }  # fmt: skip
    assert body["model"]["source"] == "hub" and body["model"]["num_prefix_tokens"] == prefix
    cfg = (
        json.loads((repos[repo] / "config.json").read_text())["pretrained_cfg"] if repo != TIMM_REPO else None
    )
    if cfg is not None:  # preprocessing follows the repo's pretrained_cfg (tiny-vit: mean = std = 0.5)
        assert (body["model"]["mean"], body["model"]["std"]) == (cfg["mean"], cfg["std"])
    layers, heads = body["model"]["num_layers"], body["model"]["num_heads"]
    # the weights served are the weights loaded (not a random init that happens to have the right shapes)
    saved = load_file(repos[repo] / "model.safetensors")
    loaded = loaded_state_dict(client, model_id)
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k], loaded[k].float()) for k in saved)

    cls = decode_typed_array(body["cls_attention"])
    assert cls.shape == (layers, heads, n_patches)  # (L, H, P): the CLS query's row over the patches
    assert (cls >= 0).all() and (cls.sum(-1) < 1.0).all()  # the prefix tokens take the rest of each row
    assert decode_typed_array(body["rollout"]).shape == (n_patches,)
    aid = body["analysis_id"]
    maps = client.app.state.atlas.analyses.get(aid).attentions  # (L, H, N, N), N = prefix + patches
    assert tuple(maps.shape) == (layers, heads, prefix + n_patches, prefix + n_patches)
    np.testing.assert_allclose(
        np.asarray(maps, np.float32).sum(-1), 1.0, atol=4e-3
    )  # float16 cache x margin 2
    np.testing.assert_allclose(cls, np.asarray(maps[:, :, 0, prefix:], np.float32), atol=1e-3)

    q = n_patches - 1
    one = client.get(
        f"/api/vision/analysis/{aid}/attention", params={"layer": layers - 1, "head": 0, "query": q}
    )
    assert one.status_code == 200, one.text
    got = decode_typed_array(one.json()["values"])
    assert got.shape == (rows, rows)
    want = np.asarray(maps[layers - 1, 0, prefix + q, prefix:], np.float32).reshape(
        rows, rows
    )  # (rows, cols)
    np.testing.assert_allclose(got, want, atol=1e-3)
    roll = client.get(
        f"/api/vision/analysis/{aid}/rollout", params={"head_fusion": "max", "discard_ratio": 0.5}
    )
    assert roll.status_code == 200 and decode_typed_array(roll.json()["rollout"]).shape == (n_patches,)
    img = client.get(f"/api/vision/analysis/{aid}/image.png")
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"


def blocks(j: dict) -> dict[str, dict]:
    return {b["kind"]: b for b in j["blocks"]}


def reference_attentions(folder: Path, kind: str, text: str, target_ids: list[int] | None = None):
    """transformers on the repo folder itself, eager attention: the numbers the API must reproduce."""
    from transformers import AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    cls = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModel
    model = cls.from_pretrained(folder, attn_implementation="eager").eval()
    ids = tok(text, return_tensors="pt")["input_ids"]  # (1, T)
    kwargs = {"decoder_input_ids": torch.tensor([target_ids])} if target_ids is not None else {}
    with torch.inference_mode():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs, output_attentions=True)


def stacked(attentions) -> np.ndarray:
    return torch.stack([a[0] for a in attentions]).numpy()  # (L, H, Tq, Tk)


def test_bert_from_the_hub(client, repos):
    j = client.post("/api/text/analyze", json={"text": SENTENCE, "model": "hub-bert"}).json()
    assert j["model"]["id"] == "hub-bert" and j["model"]["kind"] == "encoder"
    tokens = j["source"]["tokens"]
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and "quick" in tokens  # the repo's WordPiece vocab
    data = decode_typed_array(blocks(j)["encoder_self"]["data"])
    n = len(tokens)
    assert data.shape == (2, 4, n, n)
    np.testing.assert_allclose(data.sum(-1), 1.0, atol=1e-5)  # float32 rounding x ~10
    ref = stacked(reference_attentions(repos[BERT], "encoder", SENTENCE).attentions)
    assert np.array_equal(data, ref)


def test_gpt2_from_the_hub_is_causal(client, repos):
    j = client.post("/api/text/analyze", json={"text": SENTENCE, "model": "hub-gpt2"}).json()
    assert j["model"]["kind"] == "causal"
    b = blocks(j)
    assert list(b) == ["decoder_self"] and b["decoder_self"]["causal"]
    data = decode_typed_array(b["decoder_self"]["data"])
    n = len(j["source"]["tokens"])
    assert data.shape == (2, 4, n, n) and n > 5
    assert np.triu(data, k=1).max() == 0.0  # Section 3.2.3: no position attends to a later one, exactly
    np.testing.assert_allclose(data.sum(-1), 1.0, atol=1e-5)
    assert (np.diagonal(data, axis1=-2, axis2=-1) > 0).all()
    np.testing.assert_array_equal(data[..., 0, 0], 1.0)  # the first token can only attend to itself
    assert np.array_equal(data, stacked(reference_attentions(repos[GPT2], "causal", SENTENCE).attentions))


def test_marian_from_the_hub_three_kinds(client, repos):
    j = client.post("/api/text/analyze", json={"text": SENTENCE, "model": "hub-marian"}).json()
    assert j["model"]["kind"] == "seq2seq" and isinstance(j["generated_text"], str)
    assert j["source"]["tokens"][-1] == "</s>"  # Marian appends </s> to the source
    b = blocks(j)
    assert list(b) == ["encoder_self", "decoder_self", "cross"]
    ts, tt = len(j["source"]["tokens"]), len(j["target"]["tokens"])
    enc = decode_typed_array(b["encoder_self"]["data"])
    dec = decode_typed_array(b["decoder_self"]["data"])
    cross = decode_typed_array(b["cross"]["data"])
    assert enc.shape == (2, 4, ts, ts) and dec.shape == (2, 4, tt, tt) and cross.shape == (2, 4, tt, ts)
    assert (b["cross"]["query_side"], b["cross"]["key_side"]) == ("target", "source")
    assert b["decoder_self"]["causal"] and not b["cross"]["causal"] and not b["encoder_self"]["causal"]
    assert np.triu(dec, k=1).max() == 0.0  # masked decoder self-attention (Section 3.2.3)
    assert np.triu(enc, k=1).max() > 0.0  # the encoder sees both directions
    for data in (enc, dec, cross):
        np.testing.assert_allclose(data.sum(-1), 1.0, atol=1e-5)
    target_ids = client.app.state.atlas.text_analyses.get(j["analysis_id"]).target.ids  # the greedy output
    out = reference_attentions(repos[MARIAN], "seq2seq", SENTENCE, target_ids)
    assert np.array_equal(enc, stacked(out.encoder_attentions))
    assert np.array_equal(dec, stacked(out.decoder_attentions))
    assert np.array_equal(cross, stacked(out.cross_attentions))


def test_marian_given_target(client):
    j = client.post(
        "/api/text/analyze", json={"text": SENTENCE, "model": "hub-marian", "target": "Der schnelle Fuchs."}
    ).json()
    assert (
        j["generated_text"] is None and j["target"]["tokens"][0] == "<pad>"
    )  # decoder start = pad (opus-mt)
    cross = blocks(j)["cross"]
    assert (cross["n_query"], cross["n_key"]) == (len(j["target"]["tokens"]), len(j["source"]["tokens"]))


def test_models_list_names_the_hub_entries(client):
    models = {m["id"]: m for m in client.get("/api/models").json()["models"]}
    for model_id in ("hub-vit", "hub-deit", "hub-timm-name", "hub-bert", "hub-gpt2", "hub-marian"):
        assert models[model_id]["source"] == "hub", model_id


def test_a_repo_missing_from_the_offline_cache_is_a_clear_503(hub_cache, tmp_path):
    """An allowlisted repo that is neither cached nor reachable: 503 naming the model, not a 500."""
    cache, _ = hub_cache
    settings = hub_settings(tmp_path)
    settings.models.vision_models.append(
        VisionModelEntry(id="not-cached-vit", arch_tag="hf-hub:atlas-test/nope")
    )
    settings.models.text_models.append(
        TextModelEntry(id="not-cached", kind="encoder", name="atlas-test/nope")
    )
    settings.server.preload = False
    with hub_client_env(cache, offline=True), TestClient(create_app(settings)) as c:
        t = c.post("/api/text/analyze", json={"text": SENTENCE, "model": "not-cached"})
        v = c.post("/api/vision/analyze", data={"sample": "coffee", "model": "not-cached-vit"})
        ok = c.post("/api/vision/analyze", data={"sample": "coffee", "model": "hub-deit"})
    assert t.status_code == 503 and "'not-cached' could not be loaded" in t.json()["detail"]
    assert v.status_code == 503 and "'not-cached-vit' could not be loaded" in v.json()["detail"]
    assert ok.status_code == 200  # the cached ones still load


OPERATOR_SCRIPT = """
import json
import numpy as np
from fastapi.testclient import TestClient
from app.main import create_app
from app.settings import Settings
from app.serialization import decode_typed_array
with TestClient(create_app(Settings())) as c:  # everything from ATLAS_* and HF_* environment variables
    v = c.post("/api/vision/analyze", data={"sample": "rocket", "model": "deit"}).json()
    t = c.post("/api/text/analyze", json={"text": "The quick brown fox.", "model": "gpt2"}).json()
    dec = decode_typed_array(t["blocks"][0]["data"])
    print(json.dumps({"prefix": v["grid"]["num_prefix_tokens"], "kind": t["blocks"][0]["kind"],
                      "upper": float(np.triu(dec, 1).max()), "shape": list(dec.shape)}))
"""


def test_operator_environment_variables_alone(hub_cache, tmp_path):
    """The operator's way, with no monkeypatching: a new process configured only by environment variables
    (HF_HUB_OFFLINE=1, HF_HUB_CACHE, ATLAS_VISION_MODELS / ATLAS_TEXT_MODELS as JSON) loads hub models."""
    cache, _ = hub_cache
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "ATLAS_", "TRANSFORMERS_"))}
    env.update(
        HF_HUB_OFFLINE="1",
        HF_HUB_CACHE=str(cache),
        HF_ENDPOINT="http://127.0.0.1:9",  # nothing listens there: a request would fail, not leave the machine
        ATLAS_DEVICE="cpu",
        ATLAS_PRELOAD="false",  # the models load on their first request, through the same loaders
        ATLAS_CACHE_DIR=str(tmp_path),
        ATLAS_ALLOWED_HOSTS='["testserver"]',
        ATLAS_VISION_MODELS=json.dumps([{"id": "deit", "arch_tag": f"hf-hub:{DEIT}", "source": "hub"}]),
        ATLAS_DEFAULT_VISION_MODEL="deit",
        ATLAS_TEXT_MODELS=json.dumps([{"id": "gpt2", "kind": "causal", "source": "hub", "name": GPT2}]),
        ATLAS_DEFAULT_TEXT_MODEL="gpt2",
        ATLAS_DEFAULT_SEQ2SEQ_MODEL="gpt2",
    )
    got = run_python(OPERATOR_SCRIPT, env=env)
    assert got["prefix"] == 2 and got["kind"] == "decoder_self" and got["upper"] == 0.0
    assert got["shape"][:2] == [2, 4]
