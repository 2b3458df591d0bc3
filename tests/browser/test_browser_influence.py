"""/influence in headless Chromium (issue 15): a sentence and a photo are analysed, every section mounts and
draws, and axe-core finds no violation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from axe_playwright_python.sync_playwright import Axe

from tests.browser.conftest import serve
from tests.browser.pages import js_errors
from tests.factories import ARTIFACTS, tiny_settings

pytestmark = pytest.mark.browser
TIMEOUT = 120_000
AXE = Axe()


@pytest.fixture(scope="module")
def base_url(tmp_path_factory) -> Iterator[str]:
    with serve(tiny_settings(tmp_path_factory.mktemp("influence"), preload=False)) as url:
        yield url


def sections(page) -> list[str]:
    return page.eval_on_selector_all("[data-section]", "ns => ns.map(n => n.dataset.section)")


def wait_mounted(page) -> None:
    for name in sections(page):
        page.wait_for_selector(f'[data-section="{name}"][data-state="ready"]', timeout=TIMEOUT)


def assert_no_violations(page, where: str) -> None:
    results = AXE.run(page)
    assert results.violations_count == 0, f"{where}:\n{results.generate_report()}"


def test_influence_sentence_and_photo(page, base_url):
    page.goto(f"{base_url}/influence")
    page.wait_for_selector("body[data-ready='1']", timeout=TIMEOUT)
    assert sections(page)[:3] == ["contributions", "relevance", "curves"]
    assert_no_violations(page, "default state")
    page.click("#inf-go")
    wait_mounted(page)
    page.screenshot(path=str(ARTIFACTS / "influence_text.png"), full_page=True)
    assert_no_violations(page, "after a sentence")

    assert int(page.get_attribute("#inf-contributions .inf-flow", "data-edges")) > 0
    page.focus("#inf-contributions .inf-flow svg")
    page.keyboard.press("ArrowDown")
    assert page.input_value("#inf-flow-focus") == "0"  # the first token, by keyboard
    assert "cosine similarity" in page.inner_text("#inf-relevance")
    assert page.locator("#inf-auc tbody tr").count() == 3

    page.select_option("#inf-model", "tiny-dates")
    page.fill("#inf-text", "3 May 1999")
    page.click("#inf-go")
    page.wait_for_function("document.querySelector('#inf-summary').textContent.includes('decoded')")
    wait_mounted(page)
    steps = page.locator("#inf-rel-step option").count()
    assert page.input_value("#inf-rel-step") == ("6" if steps >= 7 else "0")
    assert "log-probability" in page.inner_text("#inf-relevance")
    assert_no_violations(page, "after the date model")

    page.click("#inf-family button[data-family='vision']")
    page.click("#inf-go")
    page.wait_for_function("document.querySelector('#inf-summary').textContent.includes('patches')")
    wait_mounted(page)
    page.screenshot(path=str(ARTIFACTS / "influence_vision.png"), full_page=True)
    assert_no_violations(page, "after a photo")
    assert js_errors(page) == []


def test_tour_question_is_attention_an_explanation(page, base_url):
    page.goto(f"{base_url}/tour")
    page.wait_for_selector("#q-explanation", timeout=TIMEOUT)
    assert "Is attention an explanation?" in page.inner_text("#q-explanation h2")
    page.click("#tour-expl-run")
    page.wait_for_selector('#tour-expl[data-state="ready"]', timeout=TIMEOUT)
    caption = page.inner_text("#tour-expl-caption")
    assert "Area under the deletion curve" in caption and "astronaut" in caption
    page.locator("#q-explanation").screenshot(path=str(ARTIFACTS / "tour_explanation.png"))
    assert_no_violations(page, "tour after the explanation view")
    assert js_errors(page) == []
