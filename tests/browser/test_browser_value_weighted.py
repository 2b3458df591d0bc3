"""The value-weighted toggle (Kobayashi et al. 2020; static/js/lib/valueweight.js) in headless Chromium: on /text
it changes the matrix view's numbers to α·‖f‖ renormalised per row (checked against the API's norms), and
redraws the head and model views; on /vision it changes the drawn map and the model grid. axe-core stays at 0
violations with it on. Screenshots: tests/artifacts/value_weighted_{text,vision}.png."""

from __future__ import annotations

import numpy as np
import pytest
from axe_playwright_python.sync_playwright import Axe

from tests.browser.pages import OVERLAY, js_errors, pick_sample, poll
from tests.factories import ARTIFACTS

pytestmark = pytest.mark.browser
TIMEOUT = 60_000
MATRIX_Z = (
    "() => { const d = document.getElementById('tx-matrix-plot'); return d && d.data ? d.data[0].z : null; }"
)


def no_violations(page, where: str) -> None:
    results = Axe().run(page)
    assert results.violations_count == 0, f"{where}:\n{results.generate_report()}"


def test_text_toggle_weights_the_views(page, base_url):
    page.goto(f"{base_url}/text?view=matrix&head=2&layer=2")
    page.wait_for_selector("#tx-matrix-plot .main-svg", timeout=TIMEOUT)
    before = np.array(page.evaluate(MATRIX_Z), dtype=float)  # (T, T) α of layer 2, head 2
    page.check("#tx-vw")
    poll(
        page,
        "() => document.querySelector('#tx-matrix-plot .gtitle')?.textContent.includes('value-weighted')",
        "the weighted matrix",
    )
    after = np.array(page.evaluate(MATRIX_Z), dtype=float)
    caption = page.inner_text("#tx-vw-caption")
    assert "Kobayashi" in caption and "b_O" in caption and "renormalised" in caption
    assert page.evaluate("() => new URL(location.href).searchParams.get('vw')") == "1"  # in the permalink
    norms = page.evaluate(
        """async () => { const id = document.getElementById('tx-summary').querySelector('a').href.match(/analysis=([^&]+)/)[1];
        const r = await (await fetch(`/api/text/analysis/${id}/value_norms`)).json(); return r.blocks[0].norms; }"""
    )
    from app.serialization import decode_typed_array

    n = decode_typed_array(norms)[1, 1]  # layer 2, head 2 (0-based 1, 1)
    expect = before * n[None, :]
    expect /= expect.sum(-1, keepdims=True)
    np.testing.assert_allclose(after, expect, atol=1e-6)
    assert not np.allclose(after, before, atol=1e-4)
    no_violations(page, "text, matrix view, value-weighted")
    for view, ready in (("model", ".tx-mv-canvas"), ("head", ".tx-col-q .tx-tok")):
        page.click(f".tx-tabs [data-view={view}]")
        page.wait_for_selector(ready, timeout=TIMEOUT)
        no_violations(page, f"text, {view} view, value-weighted")
    page.click(".tx-tabs [data-view=model]")
    page.wait_for_selector(".tx-mv-canvas", timeout=TIMEOUT)
    page.screenshot(path=str(ARTIFACTS / "value_weighted_text.png"), full_page=True)
    assert js_errors(page) == []


def test_vision_toggle_changes_the_map(page, base_url):
    page.goto(f"{base_url}/vision")
    page.wait_for_selector('[data-sample="astronaut"]', timeout=TIMEOUT)
    pick_sample(page, "astronaut", TIMEOUT)
    drawn = f"() => document.querySelector('{OVERLAY}').toDataURL()"
    grid = "() => document.querySelector('#vz-grid canvas').toDataURL()"
    before, grid_before = page.evaluate(drawn), page.evaluate(grid)
    page.check("#vz-vw")
    poll(
        page,
        "() => document.getElementById('vz-caption').textContent.includes('Kobayashi')",
        "the weighted map",
    )
    poll(page, f"() => ({drawn})() !== {before!r}", "a redrawn map")
    assert page.evaluate(grid) != grid_before
    assert "value-weighted" in page.inner_text("#vz-grid-what")
    assert "multiplies their share" in page.inner_text("#vz-caption")
    no_violations(page, "vision, value-weighted")
    box = page.locator(OVERLAY).bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # pin a query patch
    poll(
        page,
        "() => document.getElementById('vz-caption').textContent.includes('Where the outlined patch')",
        "probe",
    )
    assert "Kobayashi" in page.inner_text("#vz-caption")
    page.click('.vz-viewbar [data-view="mean"]')
    poll(
        page,
        "() => document.getElementById('vz-caption').textContent.includes('averaged over the heads')",
        "mean",
    )
    no_violations(page, "vision, value-weighted patch probe")
    page.screenshot(path=str(ARTIFACTS / "value_weighted_vision.png"), full_page=True)
    assert js_errors(page) == []
