"""Every page under the real Content-Security-Policy (no ``bypass_csp``): each page is opened, given its main
interaction, and must render its charts and canvases without a single CSP violation or console error.

The other browser tests bypass the CSP so that Playwright's string predicates work; here only CSS selectors
(``wait_for_selector``) and ``page.evaluate`` calls (both run outside the page's CSP) are used. Violations are
recorded by an init script listening for ``securitypolicyviolation``."""

from __future__ import annotations

import pytest

from app.middleware import CSP
from tests.browser.pages import painted, poll
from tests.factories import ARTIFACTS

pytestmark = pytest.mark.browser

TIMEOUT = 60_000


def plotted(page, div_id: str) -> int:
    """Number of traces plotly drew into #div_id (0 when it drew nothing)."""
    return page.evaluate(
        f"""() => {{ const d = document.getElementById({div_id!r});
        return d && d.data && d.querySelector('.main-svg') ? d.data.length : 0; }}"""
    )


def open_page(page, url: str) -> None:
    response = page.goto(url)
    assert response.headers.get("content-security-policy") == CSP  # the real policy is in force


def interact_home(page, base: str) -> None:
    open_page(page, f"{base}/")
    page.wait_for_selector(".cards a.card")
    page.wait_for_selector("#thumb-text canvas", timeout=TIMEOUT)  # the live thumbnails, drawn under the CSP
    page.wait_for_selector("#thumb-vision canvas", timeout=TIMEOUT)
    assert painted(page, "#thumb-text canvas") and painted(page, "#thumb-vision canvas")


def interact_vision(page, base: str) -> None:
    open_page(page, f"{base}/vision")
    page.click('[data-sample="astronaut"]', timeout=TIMEOUT)
    page.wait_for_selector('.vz-overlay-canvas[data-state="ready"]', timeout=TIMEOUT)
    page.click('.vz-viewbar [data-view="rollout"]')
    page.wait_for_selector('.vz-overlay-canvas[data-state="ready"][data-view="rollout"]', timeout=TIMEOUT)
    assert painted(page, ".vz-overlay-canvas") and painted(page, ".vz-grid-canvas")


def interact_text(page, base: str) -> None:
    open_page(page, f"{base}/text")
    page.wait_for_selector("#tx-summary b", timeout=TIMEOUT)
    page.fill("#tx-text", "The quick brown fox jumps over the lazy dog.")
    page.click("#tx-run")
    page.wait_for_selector(".tx-col-q .tx-tok >> text=fox", timeout=TIMEOUT)
    assert painted(page, ".tx-hv-canvas")
    page.click(".tx-tabs [data-view=model]")
    page.wait_for_selector(".tx-mv-canvas", timeout=TIMEOUT)
    assert painted(page, ".tx-mv-canvas")
    page.click(".tx-tabs [data-view=matrix]")
    page.wait_for_selector("#tx-matrix-plot .main-svg", timeout=TIMEOUT)
    assert plotted(page, "tx-matrix-plot") == 1


def interact_positional(page, base: str) -> None:
    open_page(page, f"{base}/positional")
    page.wait_for_selector('#pe-app[data-renders="1"]', timeout=TIMEOUT)
    page.fill("#pe-k", "5")
    page.press("#pe-k", "Enter")  # Enter in a live-controls form must not submit (no navigation)
    page.wait_for_selector('#pe-app[data-k="5"]', timeout=TIMEOUT)
    page.wait_for_selector("#pe-app[data-learned]", timeout=TIMEOUT)
    for div in (
        "pe-heat",
        "pe-curves",
        "pe-sim",
        "pe-mk",
        "pe-farplot",
        "pe-learned",
        "pe-sinus",
        "pe-offset",
    ):
        assert plotted(page, div) >= 1, div
    assert "k=5" in page.url


def interact_scaling(page, base: str) -> None:
    open_page(page, f"{base}/scaling")
    page.wait_for_selector('#sc-app[data-renders="1"]', timeout=TIMEOUT)
    page.fill("#sc-dk", "256")
    page.press("#sc-dk", "Enter")
    page.wait_for_selector('#sc-app[data-dk="256"]', timeout=TIMEOUT)
    for div in ("sc-row", "sc-var", "sc-mp", "sc-ent", "sc-jac"):
        assert plotted(page, div) >= 1, div


def interact_embeddings(page, base: str) -> None:
    open_page(page, f"{base}/vit-embeddings")
    page.wait_for_selector("#emb-tile .main-svg", timeout=TIMEOUT)
    page.wait_for_selector("#emb-filters canvas", timeout=TIMEOUT)
    page.wait_for_selector("#emb-var .main-svg", timeout=TIMEOUT)
    page.focus("#emb-mosaic")
    page.keyboard.press("ArrowRight")
    assert painted(page, "#emb-mosaic") and painted(page, "#emb-filters canvas")
    assert plotted(page, "emb-tile") == 2 and plotted(page, "emb-var") == 2


def interact_distance(page, base: str) -> None:
    open_page(page, f"{base}/distance")
    # the sample run is added on load; then the CNN receptive field is switched on
    poll(page, "() => Number(document.getElementById('dist-chart').dataset.traces) >= 2", "the sample run")
    page.check("#dist-rf")
    poll(
        page, "() => Number(document.getElementById('dist-chart').dataset.traces) >= 4", "the receptive field"
    )
    assert plotted(page, "dist-chart") >= 4


def interact_tour(page, base: str) -> None:
    open_page(page, f"{base}/tour")
    page.wait_for_selector('#tour-app[data-renders="1"]', timeout=TIMEOUT)
    page.click('#tour-dk button[data-dk="1024"]')
    page.wait_for_selector('#tour-app[data-dk="1024"]', timeout=TIMEOUT)
    page.wait_for_selector("#tour-pe .main-svg", timeout=TIMEOUT)
    for div in ("tour-attn", "tour-row", "tour-sat", "tour-pe"):
        assert plotted(page, div) >= 1, div


def interact_offsets(page, base: str) -> None:
    open_page(page, f"{base}/offsets")
    page.wait_for_selector("#of-map .main-svg", timeout=TIMEOUT)
    assert plotted(page, "of-map") >= 1


PAGES = {
    "home": interact_home,
    "vision": interact_vision,
    "text": interact_text,
    "positional": interact_positional,
    "scaling": interact_scaling,
    "vit-embeddings": interact_embeddings,
    "distance": interact_distance,
    "tour": interact_tour,
    "offsets": interact_offsets,
}


@pytest.mark.parametrize("name", list(PAGES))
def test_page_works_under_the_csp(strict_page, base_url, name: str) -> None:
    PAGES[name](strict_page, base_url)
    violations = strict_page.evaluate("() => window.__csp")
    errors = [e for e in strict_page.errors if "favicon" not in e]
    ARTIFACTS.mkdir(exist_ok=True)
    strict_page.screenshot(path=str(ARTIFACTS / f"csp-{name}.png"), full_page=True)
    assert violations == [], violations
    assert errors == [], errors
    shown = strict_page.locator("main .error:not(:empty)")
    assert shown.count() == 0, shown.all_inner_texts()
