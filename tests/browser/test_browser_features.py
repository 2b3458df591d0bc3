"""The Features and Norms & sinks tabs of /vision in real headless Chromium: the tabs (mouse and keyboard, URL),
the PCA colours and the threshold slider, click-a-patch similarity beside its attention, K-means parts, the norms
table with its outlier sentence, the sink mass views, and axe-core at 0 violations on both tabs. Screenshots go
to tests/artifacts/ (vision-features.png, vision-norms.png)."""

from __future__ import annotations

import numpy as np
import pytest
from axe_playwright_python.sync_playwright import Axe

from app.serialization import decode_typed_array
from app.settings import VisionModelEntry
from tests.browser.pages import js_errors, poll
from tests.factories import ARTIFACTS, random_vit, tiny_settings

pytestmark = pytest.mark.browser
TIMEOUT = 60_000
# 8 x 8 patches (the middle one is 36), 12 layers of 4 heads, [CLS] and no registers
VIT12 = dict(img_size=64, patch_size=8, embed_dim=48, depth=12, num_heads=4, num_classes=1000)
TINY_VIT12 = random_vit(VisionModelEntry, "tiny_vit12", "Tiny random ViT, 12 layers (tests)", **VIT12)


@pytest.fixture
def base_url(tmp_path, live_server) -> str:
    s = tiny_settings(tmp_path)
    s = tiny_settings(
        tmp_path,
        vision_models=[TINY_VIT12, *s.models.vision_models],
        default_vision_model=TINY_VIT12.id,
        preload=False,
    )
    return live_server(s)


def open_tab(page, base_url: str, tab: str, sample: str = "astronaut") -> None:
    page.goto(f"{base_url}/vision?sample={sample}&tab={tab}")
    page.wait_for_selector("#vz-tabs:not(.hidden)", timeout=TIMEOUT)


def features_ready(page) -> None:
    poll(
        page,
        "() => { const d = document.getElementById('vz-features').dataset; return d.pca && d.similarity && d.parts; }",
        "features",
    )


def test_tabs_switch_by_mouse_keyboard_and_url(page, base_url) -> None:
    open_tab(page, base_url, "attention")
    assert page.is_visible("#vz-main") and not page.is_visible("#vz-features")
    page.click("#vz-tab-features")
    features_ready(page)
    assert page.is_visible("#vz-features") and not page.is_visible("#vz-main")
    assert "tab=features" in page.url
    page.focus("#vz-tab-features")
    page.keyboard.press("ArrowRight")  # ARIA tabs: automatic activation
    poll(page, "() => document.getElementById('vz-norms').dataset.state === 'ready'", "norms tab")
    assert page.get_attribute("#vz-tab-norms", "aria-selected") == "true"
    assert page.get_attribute("#vz-tab-norms", "tabindex") == "0"
    assert page.get_attribute("#vz-tab-features", "tabindex") == "-1"
    page.keyboard.press("Home")
    assert page.is_visible("#vz-main") and "tab=" not in page.url
    page.reload()
    page.wait_for_selector("#vz-tabs:not(.hidden)", timeout=TIMEOUT)
    assert page.is_visible("#vz-main")
    assert js_errors(page) == []


def test_features_tab_draws_pca_similarity_and_parts(page, base_url) -> None:
    open_tab(page, base_url, "features")
    features_ready(page)
    aid = page.get_attribute("#vision-app", "data-analysis")
    body = page.evaluate(f"() => fetch('/api/vision/analysis/{aid}/features').then(r => r.json())")
    fg = decode_typed_array(body["foreground"])
    assert page.get_attribute("#vz-features", "data-foreground") == str(int(fg.sum()))
    assert "patches score above the threshold" in page.inner_text("#ft-pca-caption")
    # the slider moves the threshold: at its minimum every patch is foreground
    page.eval_on_selector("#ft-threshold", "s => { s.value = s.min; s.dispatchEvent(new Event('input')); }")
    poll(page, "() => document.getElementById('vz-features').dataset.foreground === '64'", "all foreground")
    # similarity: the middle patch first, then a click on the top-left patch, then the keyboard
    assert page.get_attribute("#vz-features", "data-similarity") == "36|last"
    box = page.locator("#ft-sim canvas").bounding_box()
    page.mouse.click(box["x"] + 3, box["y"] + 3)
    poll(page, "() => document.getElementById('vz-features').dataset.similarity === '0|last'", "click")
    page.focus("#ft-sim canvas")
    page.keyboard.press("ArrowRight")
    poll(page, "() => document.getElementById('vz-features').dataset.similarity === '1|last'", "arrow key")
    page.select_option("#ft-layer", "2")
    poll(page, "() => document.getElementById('vz-features').dataset.similarity === '1|2'", "layer 3")
    sim = page.evaluate(
        f"() => fetch('/api/vision/analysis/{aid}/similarity?patch=1&layer=2').then(r => r.json())"
    )
    values = decode_typed_array(sim["values"])
    assert values.reshape(-1)[1] == pytest.approx(1.0, abs=1e-5)
    assert page.get_attribute("#ft-sim canvas", "data-layer") == "2"
    assert (
        page.get_attribute("#ft-att canvas", "data-layer") == "2"
    )  # where the same patch attends, same layer
    assert "Most similar" in page.inner_text("#ft-live")
    # K-means parts with another k
    page.fill("#ft-k", "3")
    page.click("#ft-parts-run")
    poll(page, "() => document.getElementById('vz-features').dataset.parts === '3'", "parts k=3")
    assert page.inner_text("#ft-parts-legend").count("part ") == 3
    page.screenshot(path=str(ARTIFACTS / "vision-features.png"), full_page=True)
    assert js_errors(page) == []


def test_norms_tab_states_what_it_measured(page, base_url) -> None:
    open_tab(page, base_url, "norms")
    poll(page, "() => document.getElementById('vz-norms').dataset.state === 'ready'", "norms")
    aid = page.get_attribute("#vision-app", "data-analysis")
    n = page.evaluate(f"() => fetch('/api/vision/analysis/{aid}/norms').then(r => r.json())")
    assert page.inner_text("#nm-summary") == f"This photo: {n['summary']}"
    rows = page.locator("#nm-table tbody tr")
    assert rows.count() == 12
    outliers = [int(x) for x in n["outliers"]]
    cells = [rows.nth(i).locator("td").nth(3).inner_text() for i in range(12)]
    assert cells == [str(c) if c else "none" for c in outliers]
    if sum(outliers) == 0:
        assert "No outliers" in page.inner_text("#nm-summary")
    # a larger k can only remove outliers
    page.fill("#nm-k", "50")
    poll(page, "() => document.getElementById('nm-summary').textContent.includes('50 x MAD')", "k=50")
    # the sink views: [CLS] mass per layer and head, then registers (none in this model)
    s = page.evaluate(f"() => fetch('/api/vision/analysis/{aid}/sinks').then(r => r.json())")
    mass = decode_typed_array(s["mass"])
    assert mass.shape == (12, 4, 3)
    first = page.locator("#sk-mass-t tbody tr").first.locator("td").first.inner_text()
    assert float(first) == pytest.approx(float(mass[0, 0, 0]), rel=0.01, abs=1e-3)
    page.click("#vz-norms [data-sink='1']")
    assert "no register tokens" in page.inner_text("#sk-mass-caption")
    assert page.locator("#sk-dist tbody tr").count() == 12
    assert np.isfinite(decode_typed_array(s["distance_without"])).all()
    page.screenshot(path=str(ARTIFACTS / "vision-norms.png"), full_page=True)
    assert js_errors(page) == []


@pytest.mark.parametrize("tab", ["features", "norms"])
def test_axe_finds_no_violation_on_the_tabs(page, base_url, tab: str) -> None:
    open_tab(page, base_url, tab)
    if tab == "features":
        features_ready(page)
    else:
        poll(page, "() => document.getElementById('vz-norms').dataset.state === 'ready'", "norms")
    results = Axe().run(page)
    assert results.violations_count == 0, results.generate_report()


def test_set_fit_runs_as_a_job_with_progress(page, base_url) -> None:
    open_tab(page, base_url, "features")
    features_ready(page)
    page.fill("#ft-k", "3")
    page.click("#fs-run")
    poll(page, "() => document.getElementById('fs-panel').dataset.state === 'done'", "the set job", 120)
    assert page.locator("#fs-results figure").count() == 8
    assert "k = 3" in page.inner_text("#fs-status")
    assert page.is_disabled("#fs-cancel")
    page.locator("#fs-panel").screenshot(path=str(ARTIFACTS / "vision-features-set.png"))
    assert js_errors(page) == []


def test_set_fit_over_uploaded_files(page, base_url) -> None:
    from tests.factories import photo_bytes

    open_tab(page, base_url, "features")
    features_ready(page)
    files = [{"name": f"p{i}.png", "mimeType": "image/png", "buffer": photo_bytes(i)} for i in range(2)]
    page.set_input_files("#fs-files", files)
    page.click("#fs-run-files")
    poll(page, "() => document.getElementById('fs-panel').dataset.state === 'done'", "the upload job", 120)
    names = page.locator("#fs-results figcaption").all_inner_texts()
    assert names == ["p0.png", "p1.png"]
    assert js_errors(page) == []
