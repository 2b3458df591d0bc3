"""Half precision (float16, bfloat16) on the CPU, so dtype bugs surface without a GPU.

torch on the CPU runs every op these models use in both half types (linear, LayerNorm, GELU, softmax, the
attention matmuls, conv patch embedding; for the text models embeddings, masks and the paper Transformer):
no op had to be skipped. Greedy decoding runs in half too, but slowly on the CPU, so the encoder-decoders get
a target here. The app itself keeps float32 on the CPU (``models.devices
.resolve_dtype``: half is slow there), so these tests build half models directly and put one into an app.

Tolerance. A half forward rounds every activation to the type's precision, eps = 2^-8 (bfloat16) or 2^-11
(float16), so the attention probabilities p = softmax(s) move by about p * |ds|, a few eps relative to the
largest p after a few layers. We assert

- vision (tiny ViT / distilled DeiT, 2-3 layers, query/key weights x 4 so attention is far from uniform):
  max |p_half - p_32| <= 4 * eps * max p (measured: 1.7);
- text (BERT, GPT-2, Marian, the paper-1 Transformer; 2 layers each): 8 * eps * max p per block (measured:
  4.7, the paper Transformer's cross-attention in bfloat16);
- rows of probabilities sum to 1 within eps (a sum of rounded terms; measured: 0.3 eps);
- derived values (CLS maps, rollout, class probabilities, mean attention distance) within the same margin x
  eps relative to their largest value;
- reductions of a half-precision cache (rollout, distance) equal, exactly, the same reductions of the cache
  converted to float32 first: they compute in float32 whatever the cache's type.
"""

from __future__ import annotations

import copy
import io
import time

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from app.main import create_app
from app.serialization import decode_typed_array
from models.text.analysis import load_text_model
from models.vision.analysis import VisionModel, analyze_image, analyze_images, load_vision_model
from models.vision.capture import capture_attention
from models.vision.distance import (
    DistanceAccumulator,
    dataset_mean_attention_distance,
    mean_attention_distance,
)
from models.vision.rollout import attention_rollout, rollout_matrix
from tests.factories import TINY_SPECS, image_bytes, photo, tiny_settings, tiny_text_settings

EPS = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}
HALF = pytest.mark.parametrize("dtype", list(EPS), ids=["bfloat16", "float16"])
VISION_MARGIN = 4
TEXT_MARGIN = 8


def sharpened(spec, tmp_path) -> VisionModel:
    """The tiny random model in float32 with q/k/v weights x 4: attention far from uniform (max p ~ 0.14)."""
    vm = load_vision_model(spec, "cpu", torch.float32, tmp_path)
    with torch.no_grad():
        for block in vm.model.blocks:
            block.attn.qkv.weight.mul_(4.0)
    return vm


def in_dtype(vm: VisionModel, dtype: torch.dtype) -> VisionModel:
    return VisionModel(vm.spec, vm.info, copy.deepcopy(vm.model).to(dtype), vm.device, dtype)


def rel_err(got: np.ndarray | torch.Tensor, ref: np.ndarray | torch.Tensor) -> float:
    got, ref = np.asarray(got, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return float(np.abs(got - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module", params=TINY_SPECS, ids=lambda s: s.id)
def ref_vm(request, tmp_path_factory) -> VisionModel:
    return sharpened(request.param, tmp_path_factory.mktemp("cache"))


@HALF
def test_capture_in_half_precision_matches_float32(ref_vm, dtype) -> None:
    eps = EPS[dtype]
    half = in_dtype(ref_vm, dtype)
    maps = {}
    for name, vm in (("32", ref_vm), ("half", half)):
        x, _ = vm.prepare(photo(0, 40))
        assert x.dtype == vm.dtype
        with torch.inference_mode(), capture_attention(vm.model) as rec:
            vm.model.forward_features(x)
        maps[name] = rec.maps
    for p32, ph in zip(maps["32"], maps["half"], strict=True):
        assert ph.dtype == dtype and p32.dtype == torch.float32
        assert rel_err(ph.float(), p32) <= VISION_MARGIN * eps
        assert float((ph.float().sum(-1) - 1).abs().max()) <= eps  # (B, H, N) row sums


@HALF
def test_analysis_in_half_precision_matches_float32(ref_vm, dtype) -> None:
    eps = EPS[dtype]
    half = in_dtype(ref_vm, dtype)
    images = [photo(i, 40) for i in range(2)]
    for a, b in zip(analyze_images(half, images), [analyze_image(ref_vm, im) for im in images], strict=True):
        assert a.attentions.dtype == torch.float16  # the cache's type, whatever the model's
        assert a.cls_attention.dtype == a.rollout.dtype == np.float32
        assert rel_err(a.attentions.float(), b.attentions.float()) <= VISION_MARGIN * eps
        assert rel_err(a.cls_attention, b.cls_attention) <= VISION_MARGIN * eps
        assert rel_err(a.rollout, b.rollout) <= VISION_MARGIN * eps
        assert abs(float(a.rollout.sum()) - float(b.rollout.sum())) <= VISION_MARGIN * eps
        # the sorted top-k values move no more than the probabilities do (whichever classes they belong to)
        assert all(isinstance(p, float) for _, p in a.predictions)
        pa, pb = (np.array([p for _, p in x.predictions]) for x in (a, b))
        assert np.abs(pa - pb).max() <= VISION_MARGIN * eps * pb.max()


@HALF
def test_dataset_distance_in_half_precision_matches_float32(ref_vm, dtype) -> None:
    images = [photo(i, 40) for i in range(4)]
    r32 = dataset_mean_attention_distance(ref_vm, images, batch_size=2)
    rh = dataset_mean_attention_distance(in_dtype(ref_vm, dtype), images, batch_size=2)
    assert rh.mad.dtype == np.float64 and rh.n_images == 4
    assert rel_err(rh.mad, r32.mad) <= VISION_MARGIN * EPS[dtype]


@HALF
def test_reductions_of_a_half_cache_compute_in_float32(ref_vm, dtype) -> None:
    a = analyze_image(ref_vm, photo(1, 40))
    cache = a.attentions.to(dtype)  # (L, H, N, N) in the half type
    p0, (rows, cols) = a.num_prefix_tokens, a.grid
    wide = cache.float()
    for fusion, ratio in (("mean", 0.0), ("max", 0.5)):
        r = attention_rollout(cache, fusion, ratio, p0, a.has_cls)
        assert r.dtype == torch.float32 and torch.equal(
            r, attention_rollout(wide, fusion, ratio, p0, a.has_cls)
        )
        m = rollout_matrix(cache, fusion, ratio, p0)
        assert m.dtype == torch.float32 and torch.equal(m, rollout_matrix(wide, fusion, ratio, p0))
    patch = ref_vm.info.patch_size
    for renormalize in (False, True):
        d = mean_attention_distance(cache, (rows, cols), p0, patch, renormalize)
        assert d.dtype == torch.float32
        assert torch.equal(d, mean_attention_distance(wide, (rows, cols), p0, patch, renormalize))
    acc_half, acc_wide = (DistanceAccumulator((rows, cols), p0, patch) for _ in range(2))
    for layer in range(cache.shape[0]):
        acc_half.update(layer, cache[layer : layer + 1])  # (1, H, N, N)
        acc_wide.update(layer, wide[layer : layer + 1])
    assert np.array_equal(acc_half.result(), acc_wide.result())


@HALF
def test_the_app_serves_a_half_precision_model(tmp_path, dtype) -> None:
    """Analysis, views and serialisation end to end, with a half model put in place of the default one."""
    eps = EPS[dtype]
    ref = sharpened(TINY_SPECS[0], tmp_path)
    upload = {"image": ("p.png", image_bytes(photo(2, 40)), "image/png")}
    expected = analyze_image(ref, Image.open(io.BytesIO(image_bytes(photo(2, 40)))))
    with TestClient(create_app(tiny_settings(tmp_path, preload=False))) as client:
        state = client.app.state.atlas
        state.vision_store.put(ref.info.id, in_dtype(ref, dtype))
        r = client.post("/api/vision/analyze", files=upload)
        assert r.status_code == 200, r.text
        body = r.json()
        aid = body["analysis_id"]
        cls = decode_typed_array(body["cls_attention"])
        assert rel_err(cls, expected.cls_attention) <= VISION_MARGIN * eps
        assert rel_err(decode_typed_array(body["rollout"]), expected.rollout) <= VISION_MARGIN * eps
        base = f"/api/vision/analysis/{aid}"
        for url in (
            f"{base}/attention?layer=1&query=3",
            f"{base}/attention?layer=2&head=1&query=0",
            f"{base}/rollout?head_fusion=max&discard_ratio=0.5",
            f"{base}/image.png",
            f"/api/distance/analysis/{aid}",
            f"/api/distance/analysis/{aid}?renormalize=true&unit=diagonal",
        ):
            got = client.get(url)
            assert got.status_code == 200, (url, got.text)
        job = client.post("/api/distance/jobs", data={"source": "samples", "batch_size": "4"})
        assert job.status_code == 202, job.text
        job_url = job.json()["job_url"]
        deadline = time.monotonic() + 60
        while (now := client.get(job_url).json())["status"] in ("queued", "running"):  # poll, no sleep
            assert time.monotonic() < deadline, "the distance job did not finish"
        assert now["status"] == "done", now


TEXTS = {  # (source, target): a given target skips generate() (slow in float16 on the CPU)
    "bert": ("The quick brown fox jumps over the lazy dog.", None),
    "gpt2": ("The quick brown fox jumps over the lazy dog.", None),
    "marian": ("The quick brown fox jumps over the lazy dog.", "Der schnelle braune Fuchs."),
    "dates": ("Friday, March 18th, 2022", "2022-03-18"),
}


@pytest.mark.parametrize("entry", tiny_text_settings()["text_models"], ids=lambda e: e.id)
def test_text_models_in_half_precision_match_float32(entry) -> None:
    spec = entry
    text, target = TEXTS[spec.name]
    tm = load_text_model(spec, "cpu")
    a32 = tm.analyze(text, target)
    for dtype, eps in EPS.items():
        half = copy.copy(tm)
        half.model = copy.deepcopy(tm.model).to(dtype)
        ah = half.analyze(text, target)
        same_target = (ah.target is None and a32.target is None) or (
            ah.target is not None and a32.target is not None and ah.target.ids == a32.target.ids
        )
        for block, ref in a32.blocks.items():
            got = ah.blocks[block]
            assert got.dtype == np.float32
            assert float(np.abs(got.sum(-1) - 1).max()) <= eps, (dtype, block)  # (L, H, Tq) rows sum to 1
            if block == "encoder_self" or same_target:  # greedy decoding may pick another token in half
                assert rel_err(got, ref) <= TEXT_MARGIN * eps, (dtype, block)
