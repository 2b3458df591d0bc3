"""Accessibility in real headless Chromium (issue 10, section 3): axe-core finds no violation on any page, in
its default state and after an analysis. One server and one browser page for the module, which
tests/browser/test_browser_keyboard.py (the views from the keyboard alone) uses too.

axe-core comes from axe-playwright-python (it bundles axe.min.js, 4.x); it is injected with page.evaluate,
so these tests use the ``page`` fixture (bypass_csp): tests/browser/test_browser_csp.py checks the pages under the CSP.
No rule is disabled and no subtree is excluded."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from axe_playwright_python.sync_playwright import Axe

from tests.browser.conftest import new_page, serve
from tests.browser.pages import OVERLAY, pick_sample, poll
from tests.factories import minilm_shaped_bert, tiny_settings

pytestmark = pytest.mark.browser
TIMEOUT = 60_000
AXE = Axe()


@pytest.fixture(scope="module")
def base_url(tmp_path_factory) -> Iterator[str]:
    """One live server for the module: tiny random vision models, and a MiniLM-shaped BERT (12 heads, so the
    head chips reach two digits) as the default text model."""
    tmp = tmp_path_factory.mktemp("a11y")
    s = tiny_settings(tmp)
    text_models = [minilm_shaped_bert(), *(m for m in s.models.text_models if m.id != "tiny-bert")]
    with serve(tiny_settings(tmp, text_models=text_models, preload=False)) as url:
        yield url


@pytest.fixture(scope="module")
def shared_page(browser) -> Iterator:
    """One page for the whole module: plotly.min.js (3.5 MB, loaded by every page) is fetched and compiled
    once, not once per test. ``page.js_errors`` is emptied before each test by ``page`` below."""
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    yield new_page(context)
    context.close()


@pytest.fixture
def page(shared_page):
    shared_page.js_errors.clear()
    shared_page.goto("about:blank")
    return shared_page


def assert_no_violations(page, where: str) -> None:
    results = AXE.run(page)
    assert results.violations_count == 0, f"{where}:\n{results.generate_report()}"


# --- every page: its default state, then after its main interaction --------------------------------------------
def vision_default(page, base: str) -> None:
    page.goto(f"{base}/vision")
    page.wait_for_selector('[data-sample="astronaut"]', timeout=TIMEOUT)
    settled(page)  # /vision analyses its first-look sample on load; its map dims while busy


def settled(page) -> None:
    """The vision page is not busy: axe reads the page a user reads, not the dimmed one of a running analysis."""
    page.wait_for_selector(f'#vision-app:not([data-busy="1"]) {OVERLAY}[data-state="ready"]', timeout=TIMEOUT)


def vision_after(page, base: str) -> None:
    pick_sample(page, "astronaut", TIMEOUT)
    box = page.locator(OVERLAY).bounding_box()
    page.mouse.click(box["x"] + 5, box["y"] + 5)  # pin patch 1: the query caption and "Back" button show
    page.wait_for_selector(f'{OVERLAY}[data-query="0"]', timeout=TIMEOUT)
    settled(page)


def text_default(page, base: str) -> None:
    page.goto(f"{base}/text")
    page.wait_for_selector("#tx-summary b", timeout=TIMEOUT)  # the page analyses its example sentence on load


def text_after(page, base: str) -> None:
    page.fill("#tx-text", "The quick brown fox jumps over the lazy dog.")
    page.click("#tx-run")
    page.wait_for_selector(".tx-col-q .tx-tok >> text=fox", timeout=TIMEOUT)
    page.hover(".tx-col-q .tx-tok >> text=fox")  # the shaded keys keep their text readable
    page.wait_for_selector(".tx-hv-sr table[data-focus]")


def text_views(page, base: str) -> None:
    """The analysed sentence in the head view (a token hovered), then the other three views, each checked."""
    text_after(page, base)
    for view, ready in (
        ("model", ".tx-mv-canvas"),
        ("matrix", "#tx-matrix-plot .main-svg"),
        ("neuron", "#nv-canvas"),
    ):
        assert_no_violations(page, f"text, {view} view before the switch")
        page.click(f".tx-tabs [data-view={view}]")
        page.wait_for_selector(ready, timeout=TIMEOUT)


def opened(path: str, ready: str) -> Callable:
    def default(page, base: str) -> None:
        page.goto(f"{base}{path}")
        page.wait_for_selector(ready, timeout=TIMEOUT)

    return default


def nothing(page, base: str) -> None:
    pass


def positional_after(page, base: str) -> None:
    page.fill("#pe-k", "5")
    page.press("#pe-k", "Enter")
    page.wait_for_selector('#pe-app[data-k="5"]', timeout=TIMEOUT)


def scaling_after(page, base: str) -> None:
    page.fill("#sc-dk", "256")
    page.press("#sc-dk", "Enter")
    page.wait_for_selector('#sc-app[data-dk="256"]', timeout=TIMEOUT)


def tour_after(page, base: str) -> None:
    page.click('#tour-dk button[data-dk="1024"]')
    page.wait_for_selector('#tour-app[data-dk="1024"]', timeout=TIMEOUT)


def distance_after(page, base: str) -> None:
    page.check("#dist-rf")
    poll(
        page, "() => Number(document.getElementById('dist-chart').dataset.traces) >= 4", "the receptive field"
    )


def embeddings_after(page, base: str) -> None:
    page.focus("#emb-mosaic")
    page.keyboard.press("ArrowRight")


def seq2seq_after(page, base: str) -> None:
    page.wait_for_selector("#tx-kind [data-kind=cross]", timeout=TIMEOUT)
    page.click("#tx-kind [data-kind=cross]")
    page.wait_for_selector(".tx-hv-legend >> text=Cross", timeout=TIMEOUT)


def home_after(page, base: str) -> None:
    page.wait_for_selector("#thumb-vision canvas", timeout=TIMEOUT)


# name -> (open the page in its default state, then analyse / interact)
PAGES: dict[str, tuple[Callable, Callable]] = {
    "home": (opened("/", "#thumb-text canvas"), home_after),
    "about-models": (opened("/about-models", ".model-cards article"), nothing),
    "vision": (vision_default, vision_after),
    "vision-compare": (
        opened("/vision?compare=1&sample=astronaut", '#cmp-diff[data-state="ready"]'),
        nothing,
    ),
    "text": (text_default, text_views),
    "text-seq2seq": (opened("/text?model=tiny-dates", ".tx-col-q .tx-tok"), seq2seq_after),
    "text-compare": (opened("/text?compare=1", '#cmpt-diff[data-state="ready"]'), nothing),
    "positional": (opened("/positional", '#pe-app[data-renders="1"]'), positional_after),
    "scaling": (opened("/scaling", '#sc-app[data-renders="1"]'), scaling_after),
    "vit-embeddings": (opened("/vit-embeddings", "#emb-var .main-svg"), embeddings_after),
    "distance": (opened("/distance", "#dist-chart .main-svg"), distance_after),
    "tour": (opened("/tour", '#tour-app[data-renders="1"]'), tour_after),
    "offsets": (opened("/offsets", "#of-map .main-svg"), nothing),
}


@pytest.mark.parametrize("name", list(PAGES))
def test_axe_finds_no_violation(page, base_url, name: str) -> None:
    default, after = PAGES[name]
    default(page, base_url)
    assert_no_violations(page, f"{name}, default state")
    if after is not nothing:
        after(page, base_url)
        assert_no_violations(page, f"{name}, after the interaction")
    errors = [e for e in page.js_errors if "favicon" not in e]
    assert errors == [], errors
