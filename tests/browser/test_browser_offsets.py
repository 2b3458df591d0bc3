"""The relative-offset page in headless Chromium (issue 8, section 6): the date model's three attention kinds
as a head x offset heatmap, the most positional heads, the permalink, and the link from the text page to the
offsets of the analysed input."""

from __future__ import annotations

import pytest

from tests.factories import ARTIFACTS

pytestmark = pytest.mark.browser


def test_offsets_page_date_model_kinds_and_text_link(page, base_url):
    page.goto(f"{base_url}/offsets?model=tiny-dates&window=4")
    page.wait_for_selector("#of-map .main-svg", timeout=120_000)
    kinds = page.eval_on_selector_all("#of-kind button", "ns => ns.map(n => n.dataset.kind)")
    assert kinds == ["encoder_self", "decoder_self", "cross"]
    rows = int(page.get_attribute("#of-map", "data-rows"))
    assert rows >= 2 and page.locator("#of-top tbody tr").count() == min(10, rows)
    assert "Section 3.5" in page.inner_text(".lead") and "hypothes" in page.inner_text(".lead")
    page.click("#of-kind button[data-kind='cross']")
    page.wait_for_function("location.search.includes('kind=cross')")
    assert "two different sequences" in page.inner_text("#of-map-caption")
    assert "Inputs:" in page.inner_text("#of-inputs")
    page.screenshot(path=str(ARTIFACTS / "offsets_dates_cross.png"), full_page=True)

    # from the text page: the offsets of the analysed input
    page.goto(f"{base_url}/text")
    page.wait_for_selector("#tx-summary a")
    href = page.get_attribute("#tx-summary a", "href")
    assert href.startswith("/offsets?analysis=")
    page.click("#tx-summary a")
    page.wait_for_selector("#of-map .main-svg", timeout=60_000)
    assert "current analysis" in page.inner_text("#of-map-caption")
    page.goto(f"{base_url}/text")
    page.wait_for_selector("#tx-table th")
    assert "pos. score" in page.inner_text("#tx-table thead")
    assert [e for e in page.js_errors if "Failed to load resource" not in e] == []
