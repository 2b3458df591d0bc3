"""The measurements behind what /vision opens on (models/vision/first_look.py, static/js/vision/firstlook.js).

- clustered_top_mass against a brute force (a Python loop over the patches and their 8 neighbours) and on
  hand-made maps whose answer is known (uniform, one blob, isolated specks);
- the numbers the page states, re-measured on DINOv2 ViT-S/14 and the bundled samples: the layer the page opens
  at, its scores, and the largest max/median output patch norm (no registers-paper high-norm tokens: < 2).
"""

from __future__ import annotations

import hashlib
import io
import math
import re

import numpy as np
import pytest

from models.vision.first_look import clustered_top_mass, norm_ratio
from models.vision.samples import SAMPLE_NAMES, sample_images
from tests.factories import ROOT

JS = (ROOT / "static/js/vision/firstlook.js").read_text()


def js_number(name: str) -> float:
    return float(re.search(rf"\b{name}: ([0-9.]+)", JS).group(1))


def brute_force(m: np.ndarray, fraction: float = 0.1) -> float:
    rows, cols = m.shape
    p = m / m.sum()
    k = math.ceil(fraction * rows * cols)
    flat = [(-p[r, c], r * cols + c) for r in range(rows) for c in range(cols)]
    top = {i for _, i in sorted(flat)[:k]}
    total = 0.0
    for i in top:
        r, c = divmod(i, cols)
        near = [(r + dy) * cols + (c + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy or dx)
                and 0 <= r + dy < rows and 0 <= c + dx < cols]  # fmt: skip
        if any(j in top for j in near):
            total += p[r, c]
    return total


def test_clustered_top_mass_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    maps = rng.random((5, 7, 9)) ** 4  # (B, R, C)
    got = clustered_top_mass(maps)
    assert got.shape == (5,)
    np.testing.assert_allclose(got, [brute_force(m) for m in maps], rtol=1e-12)


def test_clustered_top_mass_known_cases() -> None:
    uniform = np.ones((10, 10))  # the first 10 patches in index order: one row, all touching
    assert clustered_top_mass(uniform) == pytest.approx(0.10)
    blob = np.zeros((10, 10))
    blob[4:6, 3:8] = 1  # 10 touching patches hold all the mass
    assert clustered_top_mass(blob) == pytest.approx(1.0)
    specks = np.full((10, 10), 1e-9)
    specks[::3, ::3][:3, :3] = 1  # 9 isolated patches (3 apart) hold nearly all of it
    specks[9, 9] = 1
    assert clustered_top_mass(specks) < 1e-6
    assert norm_ratio(np.array([1.0, 2.0, 2.0, 10.0])) == pytest.approx(5.0)


def test_samples_are_distinct_photos() -> None:
    images = sample_images()
    digests = set()
    for image in images.values():
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        digests.add(hashlib.sha256(buf.getvalue()).hexdigest())
    assert len(digests) == len(SAMPLE_NAMES) == 8


@pytest.mark.slow
def test_page_numbers_match_the_measurement() -> None:
    from models.vision.analysis import load_vision_model
    from models.vision.first_look import measure
    from models.vision.registry import DINOV2_VITS14

    vm = load_vision_model(DINOV2_VITS14, cache_dir=ROOT / ".cache")
    images = sample_images()
    at448 = measure(vm, images, 448)
    assert at448["layer"] == int(js_number("layer"))
    assert at448["mean"][at448["layer"]] == pytest.approx(js_number("meanScore"), abs=0.01)
    assert at448["mean"][-1] == pytest.approx(js_number("lastScore"), abs=0.01)
    assert at448["scores"]["chelsea"][at448["layer"]] == pytest.approx(js_number("photoScore"), abs=0.01)
    assert at448["scores"]["chelsea"][-1] == pytest.approx(js_number("photoLastScore"), abs=0.01)
    ratios = [*at448["norm_ratios"].values(), *measure(vm, images, 224)["norm_ratios"].values()]
    assert max(ratios) == pytest.approx(js_number("maxNormRatio"), abs=0.02)
    assert min(ratios) >= 1.0 and max(ratios) < 2.0  # no high-norm outlier tokens (Darcet et al. 2023)
