"""The /vit-embeddings and /distance pages in real headless Chromium: load, interact, and check the charts
changed (mosaic tile selection by mouse and keyboard, stride, a non-square model, exports; distance runs from
the sample photos, an upload and a vision-page analysis, units, the CNN reference, the URL as a permalink).
Screenshots go to tests/artifacts/."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from models.vision.receptive_field import (
    max_mad,
    resnet50_receptive_fields,
    uniform_image_mad,
    uniform_window_mad,
)
from tests.api.test_api_vit_figures import WIDE
from tests.browser.pages import js_errors
from tests.factories import ARTIFACTS, photo_bytes, tiny_settings

pytestmark = pytest.mark.browser


@pytest.fixture
def base_url(tmp_path, live_server) -> str:
    s = tiny_settings(tmp_path)
    return live_server(tiny_settings(tmp_path, vision_models=[*s.models.vision_models, WIDE], preload=False))


def plot_data(page, div_id: str) -> list[dict]:
    return page.evaluate(
        f"() => document.getElementById('{div_id}').data.map((t) => ({{x: Array.from(t.x || []), "
        f"y: Array.from(t.y || []), z: t.z ? t.z.map((r) => Array.from(r)) : null, name: t.name}}))"
    )


def test_embeddings_page(page, base_url) -> None:
    page.goto(f"{base_url}/vit-embeddings?model=tiny_vit")
    page.wait_for_function(
        "document.querySelector('#emb-tile .main-svg') && document.querySelectorAll('.vf-filter').length === 28"
    )
    assert page.inner_text("#emb-tile-title") == "Position (3, 3) of 4×4"  # the centre by default
    caption = page.inner_text("#emb-mosaic-caption")  # a random-init model: no "learned layout" claim
    assert "randomly initialised" in caption and "learned the 2-D layout" not in caption
    assert "Figure 7" in page.inner_text(".lead")  # one sentence first, the rest behind "More"
    page.click(".vf-more summary")
    assert "2-D interpolation" in page.inner_text(".vf-more")  # ViT Sections 3.1-3.2
    before = plot_data(page, "emb-tile")[0]["z"]
    assert np.asarray(before).shape == (4, 4) and before[2][2] == pytest.approx(1.0, abs=1 / 127)

    # click tile (1, 1), the top-left block of the 4 x 4 mosaic
    box = page.locator("#emb-mosaic").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.1, box["y"] + box["height"] * 0.1)
    page.wait_for_function(
        "document.getElementById('emb-tile-title').textContent.startsWith('Position (1, 1)')"
    )
    after = plot_data(page, "emb-tile")[0]["z"]
    assert after != before and after[0][0] == pytest.approx(1.0, abs=1 / 127)
    assert "row=1" in page.url and "col=1" in page.url
    page.focus("#emb-mosaic")
    page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "document.getElementById('emb-tile-title').textContent.startsWith('Position (1, 2)')"
    )

    with page.expect_download() as dl:
        page.click("#emb-mosaic-export [data-export=csv]")
    lines = dl.value.path().read_text().splitlines()
    assert lines[0].startswith("query_row,query_col,r1c1,r1c2") and len(lines) == 1 + 16
    assert lines[1].startswith("1,1,")  # rows and columns count from 1, as on screen
    with page.expect_download() as dl:
        page.click("#emb-tile-export [data-export=json]")
    assert dl.value.suggested_filename == "position-similarity-tiny_vit-r1-c2.json"

    page.select_option("#emb-stride", "2")
    page.wait_for_function(
        "document.getElementById('emb-mosaic-caption').textContent.includes('2×2 tiles shown')"
    )
    assert "stride=2" in page.url

    page.select_option("#emb-model", "tiny_wide")  # a non-square 4 x 6 grid
    page.wait_for_function("document.getElementById('emb-tile-title').textContent.endsWith('of 4×6')")
    wide = page.locator("#emb-mosaic").bounding_box()
    # stride 2 shows 2 x 3 tiles of 4 x 6 cells
    assert wide["width"] / wide["height"] == pytest.approx((3 * 6) / (2 * 4), rel=0.05)
    page.screenshot(path=str(ARTIFACTS / "vit_embeddings.png"), full_page=True)
    assert js_errors(page) == []


def test_distance_page(page, base_url) -> None:
    page.goto(f"{base_url}/distance")
    page.wait_for_function("Number(document.getElementById('dist-chart').dataset.traces) === 2")
    first = plot_data(page, "dist-chart")
    assert len(first[0]["y"]) == 3 * 4 and first[1]["x"] == [1, 2, 3]  # 3 layers x 4 heads, mean line
    assert "runs=tiny_vit~samples~0" in page.url.replace("%7E", "~")

    page.check("#dist-rf")
    page.wait_for_function("Number(document.getElementById('dist-chart').dataset.traces) === 5")
    refs = plot_data(page, "dist-chart")
    # the CNN line is a mean distance (uniform attention over each receptive-field window), not the width
    rf_px = [r.rf_pixels for r in resnet50_receptive_fields()]
    window = uniform_window_mad((4, 4), 8, rf_px)
    assert "ResNet-50" in refs[2]["name"] and refs[2]["y"] == pytest.approx(list(window), rel=1e-9)
    custom = page.evaluate("() => document.getElementById('dist-chart').data[2].customdata")
    assert [c[1] for c in custom] == rf_px  # the raw width stays in the hover
    assert refs[3]["y"] == pytest.approx([uniform_image_mad((4, 4), 8)] * 2)
    assert refs[4]["y"] == pytest.approx([max_mad((4, 4), 8)] * 2)

    page.select_option("#dist-unit", "patches")
    page.wait_for_function(
        "document.getElementById('dist-chart').layout.yaxis.title.text.includes('patches')"
    )
    in_patches = plot_data(page, "dist-chart")
    np.testing.assert_allclose(in_patches[0]["y"], np.asarray(first[0]["y"]) / 8, rtol=1e-9)
    assert max(in_patches[2]["y"]) == pytest.approx(window.max() / 8, rel=1e-9)
    assert in_patches[4]["y"][0] == pytest.approx(max_mad((4, 4), 8) / 8, rel=1e-9)

    page.set_input_files(
        "#dist-files",
        [
            {"name": f"im{i}.png", "mimeType": "image/png", "buffer": photo_bytes(i, (56, 40))}
            for i in range(2)
        ],
    )
    page.click("#dist-run")
    page.wait_for_function("Number(document.getElementById('dist-chart').dataset.traces) === 7")
    assert page.locator(".vf-chip").count() == 2
    assert "2 uploaded images" in page.inner_text("#dist-series")
    url = page.url.replace("%7E", "~").replace("%2C", ",")
    assert "runs=tiny_vit~samples~0,tiny_vit~upload~0" in url and "unit=patches" in url and "rf=1" in url

    with page.expect_download() as dl:
        page.click("#dist-export [data-export=csv]")
    lines = dl.value.path().read_text().splitlines()
    assert lines[0] == "model,images,n_images,renormalize,unit,layer,head,mean_distance"
    assert sum(",mean," in line for line in lines) == 6  # per-layer means of both runs
    assert lines[1].split(",")[5:7] == ["1", "1"]  # layer 1, head 1: as on the chart

    page.click(".vf-chip:nth-child(2) button")  # remove the upload run
    page.wait_for_function("Number(document.getElementById('dist-chart').dataset.traces) === 5")
    page.screenshot(path=str(ARTIFACTS / "distance.png"), full_page=True)
    assert js_errors(page) == []


def test_distance_from_a_vision_analysis(page, base_url) -> None:
    aid = httpx.post(f"{base_url}/api/vision/analyze", data={"sample": "astronaut"}).json()["analysis_id"]
    page.goto(f"{base_url}/distance?analysis={aid}")
    page.wait_for_function("Number(document.getElementById('dist-chart').dataset.traces) === 4")
    names = [t["name"] for t in plot_data(page, "dist-chart")]
    assert "this image" in names[0] and "8 sample photos" in names[2]
    assert page.is_visible("#dist-analysis-choice")
    page.goto(f"{base_url}/distance?analysis=00000000000000000000dead")
    page.wait_for_function("document.getElementById('dist-error').textContent.includes('expired')")
    assert js_errors(page) == []
