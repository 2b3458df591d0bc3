"""The first five minutes (issue 18, "Done when"), scripted in headless Chromium under the app's real CSP:
home -> a live vision view (the "Drop a photo" start) -> pin a patch -> export PNG -> text -> neuron view -> a tour
question with its live view, at 1,400 x 1,000 and at 1,280 x 720 (a projector). Each step asserts what a user
sees and saves a screenshot to tests/artifacts/first_five/ (git-ignored).

Only CSS selectors and ``page.evaluate`` are used (Playwright's string predicates need eval, which the CSP
forbids). The PNG export fails under the CSP until the export fix (branch wt-export) lands: then the walk goes on
and the test ends as xfail "needs wt-export"; every other step must pass."""

from __future__ import annotations

import pytest

from tests.browser.pages import OVERLAY, RECORD_VIOLATIONS, painted, poll
from tests.factories import ARTIFACTS

pytestmark = pytest.mark.browser
TIMEOUT = 60_000
SHOTS = ARTIFACTS / "first_five"
VIEWPORTS = [(1400, 1000), (1280, 720)]


@pytest.fixture
def csp_page(browser, request):
    """A page under the real CSP at the test's viewport, CSP violations recorded in ``window.__csp``."""
    w, h = request.param
    context = browser.new_context(viewport={"width": w, "height": h}, accept_downloads=True)
    context.add_init_script(RECORD_VIOLATIONS)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda e: page.errors.append(f"pageerror: {e}"))
    page.on("console", lambda m: m.type == "error" and page.errors.append(f"console: {m.text}"))
    page.size = f"{w}x{h}"
    yield page
    context.close()


def shot(page, step: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{page.size}_{step}.png"))


def in_view(page, selector: str) -> bool:
    """The element's top is inside the viewport (what a user sees without scrolling)."""
    return page.evaluate(
        f"() => {{ const r = document.querySelector({selector!r}).getBoundingClientRect();"
        " return r.height > 0 && r.top >= 0 && r.top < window.innerHeight; }"
    )


def home(page, base_url: str) -> None:
    page.goto(f"{base_url}/")
    page.wait_for_selector("#thumb-text canvas", timeout=TIMEOUT)
    page.wait_for_selector("#thumb-vision canvas", timeout=TIMEOUT)
    assert page.inner_text("h1") == "See what attention does inside Transformers"
    for start, words in (("#start-text", "Type a sentence"), ("#start-vision", "Drop a photo")):
        assert in_view(page, start) and words in page.inner_text(start)
    assert painted(page, "#thumb-text canvas") and painted(page, "#thumb-vision canvas")
    assert "Live:" in page.inner_text("#thumb-vision-caption")
    assert page.locator("#five-minutes li").count() == 5
    models = page.inner_text("#models-title + p")
    for name in ("DINOv2 ViT-S/14", "all-MiniLM-L6-v2", "Date Transformer (ours)"):
        assert name in models
    nav = page.eval_on_selector_all(".topbar nav a", "ns => ns.map(n => n.textContent)")
    assert {"Offsets", "API docs", "About the models"} <= set(nav)
    shot(page, "1_home")


def vision_pin(page) -> None:
    sample = page.get_attribute("#start-vision", "href")
    assert sample.startswith("/vision?sample="), sample  # the start opens the photo its thumbnail shows
    page.click("#start-vision")
    page.wait_for_selector('#vision-app[data-busy="0"]', timeout=TIMEOUT)
    page.wait_for_selector(f'{OVERLAY}[data-state="ready"]', timeout=TIMEOUT)
    assert painted(page, OVERLAY) and page.inner_text("#vz-title").strip()
    shot(page, "2_vision")
    d, box = page.eval_on_selector(OVERLAY, "c => ({...c.dataset})"), page.locator(OVERLAY).bounding_box()
    fx, fy, rows, cols = float(d["fx"]), float(d["fy"]), int(d["rows"]), int(d["cols"])
    x = box["x"] + box["width"] * fx * (cols // 2 + 0.5) / cols
    y = box["y"] + box["height"] * fy * (rows // 2 + 0.5) / rows
    page.mouse.click(x, y)
    query = str((rows // 2) * cols + cols // 2)
    poll(page, f"() => document.querySelector('{OVERLAY}').dataset.query === '{query}'", "the pinned patch")
    assert "(pinned)" in page.inner_text("#vz-query-text")
    shot(page, "3_pinned")


def export_png(page) -> bool:
    """Click the overlay's PNG export; True when a PNG file downloads."""
    try:
        with page.expect_download(timeout=10_000) as dl:
            page.click("#vz-overlay-export [data-export=png]")
    except Exception:  # noqa: BLE001  (Playwright's TimeoutError: nothing downloaded)
        return False
    path = SHOTS / f"{page.size}_4_export.png"
    dl.value.save_as(path)
    return dl.value.suggested_filename.endswith(".png") and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def text_neuron(page) -> None:
    page.click(".topbar nav a[href='/text']")
    page.wait_for_selector("#tx-summary b", timeout=TIMEOUT)
    page.wait_for_selector(".tx-col-q .tx-tok", timeout=TIMEOUT)
    assert page.get_attribute(".topbar nav a[href='/text']", "aria-current") == "page"
    assert "tokens" in page.inner_text("#tx-count")  # the live counter
    shot(page, "5_text")
    page.click(".tx-tabs [data-view=neuron]")
    page.wait_for_selector("#nv-canvas", timeout=TIMEOUT)
    poll(page, "() => document.querySelector('.nv-title')?.textContent.includes('query')", "the neuron view")
    assert painted(page, "#nv-canvas")
    assert "Section 3.2.1" in page.inner_text(".nv-intro")
    assert not page.locator(".nv-lead").first.is_visible()  # the long text waits behind "More"
    shot(page, "6_neuron")


def tour_question(page) -> None:
    page.click(".topbar nav a[href='/tour']")
    page.wait_for_selector('#tour-app[data-renders="1"]', timeout=TIMEOUT)
    page.locator("#q-scaling").scroll_into_view_if_needed()
    page.click('#tour-dk button[data-dk="1024"]')
    page.wait_for_selector('#tour-app[data-dk="1024"]', timeout=TIMEOUT)
    assert "Why divide by" in page.inner_text("#q-scaling h2")
    assert page.evaluate("() => document.getElementById('tour-row').data.length") > 0
    assert "d_k = 1024" in page.inner_text("#tour-sat-evidence")
    assert in_view(page, "#tour-row")
    shot(page, "7_tour")


@pytest.mark.parametrize("csp_page", VIEWPORTS, indirect=True, ids=[f"{w}x{h}" for w, h in VIEWPORTS])
def test_first_five_minutes(csp_page, base_url) -> None:
    page = csp_page
    home(page, base_url)
    vision_pin(page)
    before = len(page.errors)
    exported = export_png(page)
    export_errors = page.errors[before:]  # the failed export's own errors ("Failed to fetch" a data: URL)
    if not exported:
        del page.errors[before:]
    text_neuron(page)
    tour_question(page)
    violations = page.evaluate("() => window.__csp")
    unrelated = [v for v in violations if "data:" not in v]  # the PNG export's data: fetch is wt-export's fix
    assert unrelated == [], unrelated
    errors = [e for e in page.errors if "favicon" not in e]
    assert errors == [], errors
    if not exported:
        pytest.xfail(
            "needs wt-export: the PNG export fails under the real CSP until its fix lands: "
            + "; ".join(e[:80] for e in export_errors)
        )
