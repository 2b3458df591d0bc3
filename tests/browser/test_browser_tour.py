"""/tour: every one of the ten questions has a live view that renders (issue 18, item 6), under the app's real
Content-Security-Policy; axe-core finds no violation; the tour's links to /vision land on an analysed view.
Screenshots (1400x1000) go to tests/artifacts."""

from __future__ import annotations

import pytest
from axe_playwright_python.sync_playwright import Axe

from tests.browser.conftest import new_page
from tests.browser.pages import OVERLAY, RECORD_VIOLATIONS
from tests.factories import ARTIFACTS

pytestmark = pytest.mark.browser
TIMEOUT = 90_000
# question id -> its live view(s): plotly divs and canvases
LIVE = {
    "q-attention": ["#tour-attn"],
    "q-functions": ["#tour-var"],
    "q-scaling": ["#tour-row", "#tour-sat"],
    "q-multihead": ["#tour-kinds"],
    "q-sinusoids": ["#tour-pe"],
    "q-data": ["#tour-local"],
    "q-1d2d": ["#tour-positions"],
    "q-distance": ["#tour-distance"],
    "q-patches": ["#tour-filters"],
    "q-rollout": ["#tour-rollout"],
    "q-registers": ["#tour-norms"],
}
RENDERED = """(sel) => { const e = document.querySelector(sel); if (!e) return false;
  if (e.tagName === 'CANVAS') { if (!e.width || !e.height) return false;
    const d = e.getContext('2d').getImageData(0, 0, e.width, e.height).data;
    for (let i = 0; i < d.length; i += 4) if (d[i + 3] && (d[i] < 250 || d[i + 1] < 250 || d[i + 2] < 250)) return true;
    return false; }
  return Boolean(e.data && e.data.length && e.querySelector('.main-svg')); }"""


def open_tour(page, base_url: str) -> None:
    page.goto(f"{base_url}/tour")
    page.wait_for_selector('#tour-app[data-live="9"]', timeout=TIMEOUT)


def test_every_question_has_a_live_view(browser, base_url) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.add_init_script(RECORD_VIOLATIONS)
    page = new_page(context, errors="errors")
    try:
        open_tour(page, base_url)
        questions = page.evaluate("() => [...document.querySelectorAll('section.tour-q')].map((s) => s.id)")
        # the ten paper questions, registers and sinks, then "is attention an explanation?" (a view run on demand)
        assert questions == [*LIVE, "q-explanation"]
        assert page.locator("#q-explanation .tour-live #tour-expl-run").count() == 1
        for q, views in LIVE.items():
            assert page.locator(f"#{q} .tour-live").count() == 1, q
            for sel in views:
                assert page.evaluate(RENDERED, sel), f"{q}: {sel} is empty"
            caption = page.evaluate(
                f"() => [...document.querySelectorAll('#{q} .tour-live .fig-caption, #{q} .tour-live .evidence')]"
                ".map((p) => p.textContent).join(' ')"
            )
            assert len(caption) > 40, f"{q}: no caption ({caption!r})"
        assert page.locator("main .error:not(:empty)").count() == 0
        assert page.evaluate("() => window.__csp") == []
        assert [e for e in page.errors if "favicon" not in e] == []
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "tour-1400.png"))
        page.screenshot(path=str(ARTIFACTS / "tour-1400-full.png"), full_page=True)
        # the long prose is behind "More"; opening it shows it
        more = page.locator("#q-distance details.tour-more")
        assert not more.locator("p").first.is_visible()
        more.locator("summary").click()
        assert more.locator("p").first.is_visible()
    finally:
        context.close()


def test_tour_has_no_axe_violation(page, base_url) -> None:
    open_tour(page, base_url)
    page.click('#tour-dk button[data-dk="1024"]')
    page.wait_for_selector('#tour-app[data-dk="1024"]', timeout=TIMEOUT)
    results = Axe().run(page)
    assert results.violations_count == 0, results.generate_report()


def test_tour_links_to_vision_land_on_an_analysed_view(page, base_url) -> None:
    page.goto(f"{base_url}/tour")
    hrefs = page.evaluate(
        "() => [...document.querySelectorAll('.tour-links a[href^=\"/vision\"]')].map((a) => a.getAttribute('href'))"
    )
    assert len(hrefs) == 4 and all("sample=" in h for h in hrefs), hrefs  # Q6/Q10 and the two sink tabs
    page.click('#q-rollout .tour-links a[href^="/vision"]')
    page.wait_for_selector(f'{OVERLAY}[data-state="ready"][data-view="rollout"]', timeout=TIMEOUT)
