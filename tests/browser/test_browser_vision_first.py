"""The first five minutes on the vision side (issue 18, items 2, 3, 6 and 8).

- /vision with no image opens on the measured first look (DINOv2 ViT-S/14, chelsea, 448 px, layer 8, mean of
  heads; models/vision/first_look.py), every control agreeing with it; the note on bright patches is visible;
  no predictions card for a model without a classifier; the crop the model saw is shown;
- no horizontal overflow at 1280 x 720 with a pinned patch;
- side by side opens with B different from A, at A's resolution, not linked, and says what is linked;
- /distance switches to the image diagonal when the runs differ in resolution or grid, and says so.
Screenshots at 1400 x 1000 and 1280 x 720 go to tests/artifacts.
"""

from __future__ import annotations

import pytest

from models.vision.registry import DINOV2_VITS14
from tests.browser.pages import js_errors, overlay
from tests.conftest import serve
from tests.factories import ARTIFACTS, ROOT, tiny_settings

pytestmark = pytest.mark.browser
TIMEOUT = 180_000  # a DINOv2 forward at 448 px on a shared CPU
READY = '.vz-overlay-canvas[data-state="ready"]'


@pytest.fixture(scope="module")
def dinov2_url(tmp_path_factory):
    """The app with DINOv2 ViT-S/14 (the offline default) as the default vision model, tiny text models."""
    settings = tiny_settings(
        tmp_path_factory.mktemp("vfirst"),
        vision_models=[DINOV2_VITS14],
        default_vision_model=DINOV2_VITS14.id,
        cache_dir=ROOT / ".cache",
    )
    with serve(settings) as url:
        yield url


def params(page) -> dict[str, str]:
    return page.evaluate("() => Object.fromEntries(new URLSearchParams(location.search))")


def sized(page, width: int, height: int):
    page.set_viewport_size({"width": width, "height": height})
    return page


def scroll_width(page) -> int:
    return page.evaluate("() => document.documentElement.scrollWidth")


def test_vision_opens_on_the_measured_first_look(dinov2_url, page) -> None:
    sized(page, 1400, 1000).goto(f"{dinov2_url}/vision")
    page.wait_for_selector(READY, timeout=TIMEOUT)
    p = params(page)
    assert (p["sample"], p["res"], p["layer"], p["view"]) == ("chelsea", "448", "8", "mean")
    assert overlay(page)["layer"] == "7" and overlay(page)["head"] == "mean"  # the API's 0-based layer
    # every control agrees: the view buttons, the model grid's selection, the sample, the input size
    assert page.get_attribute(".vz-viewbar [data-view=mean]", "aria-pressed") == "true"
    grid = page.eval_on_selector(".vz-grid-canvas", "c => ({...c.dataset})")
    assert grid["selected"] == f"7,{grid['heads']}"  # layer 8, the mean column
    assert page.get_attribute('[data-sample="chelsea"]', "aria-pressed") == "true"
    assert page.eval_on_selector("#vz-res", "s => s.value") == "448"
    why = page.locator("#vz-firstlook")
    assert why.is_visible() and "Why layer 8 at 448 px" in why.text_content() and "43%" in why.text_content()
    specks = page.locator("#vz-specks")
    assert specks.is_visible() and "not the high-norm artifact tokens" in specks.text_content()
    assert "1.44" in specks.text_content()
    assert page.locator("#vz-preds-card").is_hidden()  # DINOv2 has no classifier head
    assert "No classifier head" in page.text_content("#vz-crop")
    crop = page.locator(".vz-crop-img")
    assert crop.is_visible() and "448×448 px" in page.text_content("#vz-crop")
    assert page.eval_on_selector(".vz-crop-img", "i => i.complete && i.naturalWidth") == 448
    assert page.locator(".vz-help").get_attribute("open") is None  # the rest is behind "More"
    page.screenshot(path=str(ARTIFACTS / "vision_first_1400.png"))
    # a change of layer drops the first-look caption; the note on bright patches stays
    page.keyboard.press("Tab")
    page.select_option("#vz-cmap", "magma")
    page.click(".vz-viewbar [data-view=head]")
    page.wait_for_function("document.querySelector('.vz-overlay-canvas').dataset.head === '0'")
    assert page.locator("#vz-firstlook").is_hidden() and page.locator("#vz-specks").is_visible()
    assert js_errors(page) == []


def test_no_overflow_at_1280_with_a_pinned_patch(dinov2_url, page) -> None:
    sized(page, 1280, 720).goto(f"{dinov2_url}/vision")
    page.wait_for_selector(READY, timeout=TIMEOUT)
    box = page.locator(".vz-overlay-canvas").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.4)
    page.wait_for_function("document.querySelector('.vz-overlay-canvas').dataset.query !== 'cls'")
    page.wait_for_selector("#vz-back:not(.hidden)")
    assert page.locator("#vz-topk-table").count() == 1  # the screen-reader table is there, and clipped
    assert scroll_width(page) <= 1280
    page.screenshot(path=str(ARTIFACTS / "vision_first_1280_pinned.png"))
    assert js_errors(page) == []


def test_side_by_side_starts_with_a_different_b_at_a_resolution(dinov2_url, page) -> None:
    sized(page, 1400, 1000).goto(f"{dinov2_url}/vision")
    page.wait_for_selector(READY, timeout=TIMEOUT)
    page.click("#vz-compare-link")
    page.wait_for_url("**compare=1**")
    page.wait_for_selector('#cmp-diff-canvas[data-state="ready"]', timeout=TIMEOUT)
    p = params(page)
    assert p["a.res"] == p["b.res"] == "448" and p["a.model"] == p["b.model"] == DINOV2_VITS14.id
    assert (p["a.view"], p["a.layer"]) == ("mean", "8") and (p["b.view"], p["b.layer"]) == ("mean", "12")
    assert p["link"] == "0" and not page.is_checked("#cmp-link")
    assert page.text_content("#cmp-linknote").startswith("Not linked")
    assert float(page.get_attribute("#cmp-diff-canvas", "data-absmax")) > 0  # B − A is not blank
    page.screenshot(path=str(ARTIFACTS / "compare_first_1400.png"))
    # changing B's layer leaves A alone while unlinked; ticking Link says so
    page.select_option("#cmp-b [data-role=layer]", "10")
    page.wait_for_function("new URLSearchParams(location.search).get('b.layer') === '10'")
    assert params(page)["a.layer"] == "8"
    page.check("#cmp-link")
    assert page.text_content("#cmp-linknote").startswith("Linked")
    sized(page, 1280, 720)
    assert scroll_width(page) <= 1280
    page.screenshot(path=str(ARTIFACTS / "compare_first_1280.png"))
    assert js_errors(page) == []


def test_tiny_models_open_on_the_sample_at_their_last_layer(base_url, page) -> None:
    page.goto(f"{base_url}/vision")
    page.wait_for_selector(READY, timeout=60_000)
    p = params(page)
    assert p["sample"] == "chelsea" and p["view"] == "mean"
    assert "measured for DINOv2 ViT-S/14 only" in page.text_content("#vz-firstlook")
    assert "not measured for this model" in page.text_content("#vz-specks")
    assert page.locator("#vz-preds-card").is_visible()  # the tiny ViT has a classifier head
    assert js_errors(page) == []


def test_distance_switches_to_the_image_diagonal_for_mixed_grids(base_url, page) -> None:
    runs = "tiny_vit~samples~0,tiny_deit_distilled~samples~0"  # 32 px, 4x4 patches vs 48 px, 3x3 patches
    for width, height in ((1400, 1000), (1280, 720)):
        sized(page, width, height).goto(f"{base_url}/distance?runs={runs}")
        page.wait_for_function(
            "document.querySelectorAll('#dist-series .vf-chip[data-state=done]').length === 2", timeout=60_000
        )
        page.wait_for_function("new URLSearchParams(location.search).get('unit') === 'diagonal'")
        assert page.eval_on_selector("#dist-unit", "s => s.value") == "diagonal"
        note = page.locator("#dist-unit-note")
        note.wait_for(state="visible", timeout=60_000)  # drawn after the URL changes: a loaded CPU lags
        assert note.is_visible() and "fraction of each image's diagonal" in note.text_content()
        assert "32 px" in note.text_content() and "48 px" in note.text_content()
        assert scroll_width(page) <= width
        page.screenshot(path=str(ARTIFACTS / f"distance_first_{width}.png"))
    # a unit the user picks is kept, and the line says the runs do not compare in it
    page.select_option("#dist-unit", "pixels")
    page.wait_for_function("document.querySelector('#dist-unit-note').textContent.includes('do not compare')")
    assert js_errors(page) == []


def test_text_side_by_side_b_wraps_past_the_last_head(base_url, page) -> None:
    # the single view at its last head links to B = "the next head": B wraps to head 1 instead of copying A
    page.goto(f"{base_url}/text?compare=1&link=0&a.head=99&b.head=100")
    page.wait_for_selector('#cmpt-diff[data-state="ready"]', timeout=60_000)
    heads = page.eval_on_selector("#cmpt-a [data-role=head]", "s => s.value")
    assert page.eval_on_selector("#cmpt-b [data-role=head]", "s => s.value") != heads
    page.wait_for_function("new URLSearchParams(location.search).get('b.head') === '1'")
    assert page.text_content("#cmpt-linknote") == "(not linked: A and B keep their own)"
    page.check("#cmpt-link")
    assert page.text_content("#cmpt-linknote") == "(linked: A and B move together)"
    assert js_errors(page) == []
