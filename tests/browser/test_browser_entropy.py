"""The vision page's Entropy view in headless Chromium: the button draws the entropy map of the selected layer
and head on the photo (the numbers of /api/vision/analysis/{id}/entropy), with a caption naming the model,
layer, head, the unit and the log(P) ceiling; picking another head in the grid stays in the view."""

from __future__ import annotations

import math

import httpx
import pytest

from app.serialization import decode_typed_array
from tests.browser.pages import OVERLAY, overlay  # noqa: F401
from tests.browser.pages import js_errors as real_errors
from tests.browser.test_browser_vision import base_url, fnv1a, wait_ready  # noqa: F401
from tests.factories import ARTIFACTS

pytestmark = pytest.mark.browser


def test_entropy_view_draws_the_api_numbers_with_a_caption(base_url, page) -> None:  # noqa: F811
    page.goto(f"{base_url}/vision?sample=coffee&layer=6&head=3")
    wait_ready(page)
    head_view = overlay(page)["checksum"]
    with page.expect_response(lambda r: "/entropy?layer=5&head=2" in r.url):
        page.click('[data-view="entropy"]')
    page.wait_for_function(f"document.querySelector('{OVERLAY}').dataset.view === 'entropy'")
    state = overlay(page)
    assert state["state"] == "ready" and state["checksum"] != head_view
    assert "view=entropy" in page.url
    aid = page.get_attribute("#vision-app", "data-analysis")
    api = httpx.get(f"{base_url}/api/vision/analysis/{aid}/entropy", params={"layer": 5, "head": 2}).json()
    assert state["checksum"] == fnv1a(decode_typed_array(api["values"]))  # the canvas drew these numbers
    caption = page.inner_text("#vz-caption")
    assert "Tiny random ViT, 12 layers (tests)" in caption and "layer 6, head 3" in caption
    assert "nats" in caption and f"log(64) = {math.log(64):.2f} nats" in caption
    assert "prefix tokens left out" in caption
    assert page.inner_text("#vz-title").startswith("Attention entropy")
    drawn = page.eval_on_selector(
        OVERLAY, "c => c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some((v) => v)"
    )
    assert drawn
    page.screenshot(path=str(ARTIFACTS / "vision-entropy.png"))

    # another head from the grid: still the entropy view, now of that head
    page.focus(".vz-grid-canvas")
    page.keyboard.press("ArrowRight")
    page.wait_for_function(f"document.querySelector('{OVERLAY}').dataset.head === '3'")
    assert overlay(page)["view"] == "entropy" and "head 4" in page.inner_text("#vz-caption")
    assert real_errors(page) == []
