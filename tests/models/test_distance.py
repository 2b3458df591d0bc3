"""Mean attention distance (ViT Fig. 7 right), its dataset reduction and CLI. CNN receptive fields and the
uniform-window reference are in test_receptive_field.py."""

from __future__ import annotations

import csv
import itertools
import threading
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from models.vision import distance
from models.vision.analysis import load_vision_model
from models.vision.capture import capture_attention
from models.vision.distance import (
    Cancelled,
    DistanceAccumulator,
    dataset_mean_attention_distance,
    mean_attention_distance,
    patch_distances,
)
from models.vision.registry import get_builtin_spec
from models.vision.samples import ImageFiles, sample_images
from tests.factories import TINY_SPECS


def numpy_distances(rows: int, cols: int, patch_size: int) -> np.ndarray:
    """Pixel distances by an explicit double loop over grid positions: (P, P)."""
    pos = [(r, c) for r in range(rows) for c in range(cols)]
    d = np.zeros((len(pos), len(pos)))
    for i, (ri, ci) in enumerate(pos):
        for j, (rj, cj) in enumerate(pos):
            d[i, j] = patch_size * np.sqrt((ri - rj) ** 2 + (ci - cj) ** 2)
    return d


def numpy_mad(attn: np.ndarray, rows: int, cols: int, prefix: int, patch_size: int, renorm: bool) -> float:
    """One (N, N) map, looped: mean over query patches of sum_j A[i, j] d(i, j)."""
    d = numpy_distances(rows, cols, patch_size)
    num_patches = rows * cols
    total = 0.0
    for i in range(num_patches):
        row = attn[prefix + i, prefix:]
        if renorm:
            row = row / row.sum()
        total += sum(row[j] * d[i, j] for j in range(num_patches))
    return total / num_patches


def random_probs(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g).mul(2).softmax(-1)


# ----------------------------------------------------------------------------------------------------------
# The metric


@pytest.mark.parametrize(("rows", "cols", "prefix"), [(4, 4, 1), (3, 5, 2), (5, 3, 0)])
def test_self_attention_is_zero(rows, cols, prefix):
    n = prefix + rows * cols
    attn = torch.eye(n).expand(2, 3, n, n)  # (B, H, N, N)
    mad = mean_attention_distance(attn, (rows, cols), prefix, patch_size=16)
    assert mad.shape == (2, 3)
    assert torch.all(mad == 0)


@pytest.mark.parametrize(("rows", "cols", "prefix"), [(4, 4, 1), (3, 5, 2), (2, 7, 0)])
def test_uniform_attention_is_mean_pairwise_distance(rows, cols, prefix):
    n, num_patches = prefix + rows * cols, rows * cols
    attn = torch.zeros(1, n, n)  # (H, N, N)
    attn[:, :, prefix:] = 1.0 / num_patches
    expected = numpy_distances(rows, cols, 14).mean()  # mean over all (i, j) pairs, incl. i == j
    mad = mean_attention_distance(attn, (rows, cols), prefix, patch_size=14)
    assert mad.shape == (1,)
    assert mad.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("prefix", [1, 2])
def test_prefix_attention_dropped_without_renormalisation(prefix):
    rows, cols, share = 3, 5, 0.6  # 60% of every row's mass on the prefix tokens
    n, num_patches = prefix + rows * cols, rows * cols
    attn = torch.zeros(n, n)
    attn[:, :prefix] = share / prefix
    attn[:, prefix:] = (1 - share) / num_patches
    pairwise = numpy_distances(rows, cols, 16).mean()
    mad = mean_attention_distance(attn[None], (rows, cols), prefix, 16)
    assert mad.item() == pytest.approx((1 - share) * pairwise, rel=1e-6)  # prefix mass contributes 0
    mad_renorm = mean_attention_distance(attn[None], (rows, cols), prefix, 16, renormalize=True)
    assert mad_renorm.item() == pytest.approx(pairwise, rel=1e-6)  # rows rescaled to sum 1


@pytest.mark.parametrize(
    ("rows", "cols", "prefix", "renorm"), [(3, 5, 2, False), (3, 5, 2, True), (4, 2, 1, True)]
)
def test_random_maps_match_numpy_loop(rows, cols, prefix, renorm):
    n = prefix + rows * cols
    attn = random_probs((2, 3, n, n))  # (B, H, N, N)
    mad = mean_attention_distance(attn, (rows, cols), prefix, 8, renormalize=renorm)
    assert mad.shape == (2, 3) and mad.dtype == torch.float32
    for b, h in itertools.product(range(2), range(3)):
        expected = numpy_mad(attn[b, h].double().numpy(), rows, cols, prefix, 8, renorm)
        assert mad[b, h].item() == pytest.approx(expected, rel=1e-5)


def test_units():
    rows, cols, p = 3, 5, 16
    d_px = patch_distances((rows, cols), p, "pixels")
    assert d_px.shape == (15, 15) and d_px.dtype == torch.float32
    np.testing.assert_allclose(d_px.numpy(), numpy_distances(rows, cols, p), rtol=1e-6)
    np.testing.assert_allclose(
        patch_distances((rows, cols), p, "patches").numpy(), d_px.numpy() / p, rtol=1e-6
    )
    d_diag = patch_distances((rows, cols), p, "diagonal")
    np.testing.assert_allclose(d_diag.numpy(), d_px.numpy() / (p * np.hypot(rows, cols)), rtol=1e-6)
    assert d_diag.max().item() == pytest.approx(np.hypot(rows - 1, cols - 1) / np.hypot(rows, cols))
    attn = random_probs((2, 1 + 15, 1 + 15))
    px = mean_attention_distance(attn, (rows, cols), 1, p, unit="pixels")
    torch.testing.assert_close(mean_attention_distance(attn, (rows, cols), 1, p, unit="patches"), px / p)
    with pytest.raises(ValueError, match="unit"):
        patch_distances((rows, cols), p, "inches")
    with pytest.raises(ValueError, match="prefix"):
        mean_attention_distance(attn, (4, 4), 1, p)


def test_half_precision_input():
    attn = random_probs((2, 4, 17, 17))
    full = mean_attention_distance(attn, (4, 4), 1, 16)
    half = mean_attention_distance(attn.to(torch.bfloat16), (4, 4), 1, 16)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, full, rtol=2e-2, atol=0.1)


def test_accumulator_equals_direct_over_split_batch():
    rows, cols, prefix, n_layers = 3, 5, 2, 3
    n = prefix + rows * cols
    maps = [random_probs((5, 4, n, n), seed=layer) for layer in range(n_layers)]  # per layer (B, H, N, N)
    acc = DistanceAccumulator((rows, cols), prefix, 16, renormalize=True, unit="patches")
    for part in (slice(0, 2), slice(2, 5)):
        for layer in range(n_layers):
            acc.update(layer, maps[layer][part])
    direct = torch.stack(
        [mean_attention_distance(m, (rows, cols), prefix, 16, True, "patches").mean(0) for m in maps]
    )  # (L, H)
    result = acc.result()
    assert result.shape == (n_layers, 4) and result.dtype == np.float64
    assert acc.n_images == 5
    np.testing.assert_allclose(result, direct.double().numpy(), rtol=1e-6)

    partial = DistanceAccumulator((rows, cols), prefix, 16)
    partial.update(0, maps[0])
    partial.update(2, maps[2])
    with pytest.raises(ValueError, match="blocks"):
        partial.result()
    with pytest.raises(ValueError, match="no attention"):
        DistanceAccumulator((rows, cols), prefix, 16).result()


# ----------------------------------------------------------------------------------------------------------
# Over a dataset, with a real (tiny, random) model


def synthetic_images(count: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    sizes = [(40, 30), (32, 32), (50, 64), (36, 36)]
    return [Image.fromarray(rng.integers(0, 256, (*sizes[i % 4], 3), dtype=np.uint8)) for i in range(count)]


@pytest.fixture(scope="module", params=TINY_SPECS, ids=lambda s: s.id)
def tiny_vm(request):
    return load_vision_model(request.param, "cpu")


def test_dataset_mad_matches_direct_capture(tiny_vm):
    images = synthetic_images(3)
    calls = []
    res = dataset_mean_attention_distance(
        tiny_vm, images, batch_size=2, progress=lambda d, t: calls.append((d, t))
    )
    info = tiny_vm.info
    assert calls == [(0, 3), (2, 3), (3, 3)]
    assert res.mad.shape == (info.num_layers, info.num_heads) and res.mad.dtype == np.float64
    assert res.n_images == 3 and res.model_id == info.id and res.resolution == info.default_resolution
    assert res.unit == "pixels" and res.renormalize is False
    np.testing.assert_allclose(res.per_layer_mean, res.mad.mean(1))
    # independent path: keep all maps, then compute
    x = torch.cat([tiny_vm.prepare(im)[0] for im in images])  # (3, 3, R, R)
    with torch.inference_mode(), capture_attention(tiny_vm.model) as rec:
        tiny_vm.model.forward_features(x)
    grid = info.grid(x.shape[-2], x.shape[-1])
    direct = mean_attention_distance(
        rec.stacked(), grid, info.num_prefix_tokens, info.patch_size
    )  # (L, 3, H)
    np.testing.assert_allclose(res.mad, direct.mean(1).double().numpy(), rtol=1e-5)
    assert (res.mad > 0).all()


def test_dataset_mad_generator_and_renormalize(tiny_vm):
    calls = []
    gen = (im for im in synthetic_images(3))
    res = dataset_mean_attention_distance(
        tiny_vm,
        gen,
        batch_size=16,
        renormalize=True,
        unit="diagonal",
        progress=lambda d, t: calls.append((d, t)),
    )
    assert calls == [(0, None), (3, None)] and res.n_images == 3
    assert res.renormalize and res.unit == "diagonal"
    assert (res.mad > 0).all() and (res.mad < 1).all()
    with pytest.raises(ValueError, match="no images"):
        dataset_mean_attention_distance(tiny_vm, [])


def test_dataset_mad_cancel(tiny_vm):
    fused_before = [getattr(b.attn, "fused_attn", None) for b in tiny_vm.model.blocks]
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        dataset_mean_attention_distance(tiny_vm, synthetic_images(3), cancel=cancel)

    cancel = threading.Event()
    seen = []

    def progress(done, total):
        seen.append(done)
        if done >= 1:
            cancel.set()  # cancel after the first batch

    with pytest.raises(Cancelled, match="after 1 images"):
        dataset_mean_attention_distance(
            tiny_vm, synthetic_images(3), batch_size=1, progress=progress, cancel=cancel
        )
    assert seen == [0, 1]
    # hooks removed and the fused switch restored even though we raised
    assert [getattr(b.attn, "fused_attn", None) for b in tiny_vm.model.blocks] == fused_before
    assert all(not b.attn.attn_drop._forward_hooks for b in tiny_vm.model.blocks)


# ----------------------------------------------------------------------------------------------------------
# CLI and image sources


@pytest.mark.parametrize("as_zip", [False, True])
def test_cli_writes_csv(tmp_path, as_zip):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, im in enumerate(synthetic_images(2)):
        im.save(folder / f"img{i}.{'png' if i == 0 else 'jpg'}")
    (folder / "notes.txt").write_text("not an image")
    source = folder
    if as_zip:
        source = tmp_path / "imgs.zip"
        with zipfile.ZipFile(source, "w") as zf:
            for p in sorted(folder.iterdir()):
                zf.write(p, f"sub/{p.name}")
    out = tmp_path / "distance.csv"
    spec = TINY_SPECS[0]
    argv = [
        "--model",
        spec.id,
        "--images",
        str(source),
        "--batch-size",
        "1",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    assert distance.main(argv, specs={spec.id: spec}) == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["layer", "head", "mean_distance", "unit", "n_images", "model", "resolution"]
    assert len(rows) == 3 * 4  # layers x heads of the tiny ViT
    assert {r["n_images"] for r in rows} == {"2"} and {r["model"] for r in rows} == {spec.id}
    assert {r["unit"] for r in rows} == {"pixels"} and {r["resolution"] for r in rows} == {"32"}
    assert [(int(r["layer"]), int(r["head"])) for r in rows] == list(itertools.product(range(3), range(4)))
    vm = load_vision_model(spec, "cpu")
    expected = dataset_mean_attention_distance(vm, ImageFiles(source)).mad
    np.testing.assert_allclose([float(r["mean_distance"]) for r in rows], expected.reshape(-1), rtol=1e-5)


def test_cli_unknown_model_and_registry(tmp_path, capsys):
    assert distance.main(["--model", "nope", "--out", str(tmp_path / "x.csv")], specs={}) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert get_builtin_spec("dinov2_vits14").arch == "vit_small_patch14_dinov2"
    with pytest.raises(KeyError, match="dinov2_vits14"):
        get_builtin_spec("nope")


def test_image_files_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        ImageFiles(tmp_path / "missing")
    with pytest.raises(ValueError, match="no"):
        ImageFiles(tmp_path)


def test_sample_images_are_bundled_rgb():
    images = sample_images()
    assert list(images) == [
        "astronaut", "chelsea", "coffee", "rocket", "motorcycle", "hubble_deep_field", "immunohistochemistry", "retina"
    ]  # fmt: skip
    assert all(im.mode == "RGB" and min(im.size) >= 256 for im in images.values())
    assert images["astronaut"].size == (512, 512)
