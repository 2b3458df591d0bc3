"""/influence's head ablation, importance map and logit lens in headless Chromium (issue 15, items 3 and 5),
on the tiny random date model: cutting heads changes the shown output, the map renders after its job, the lens
table renders, and axe-core finds no violation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from axe_playwright_python.sync_playwright import Axe

from models.influence import ablation_run
from tests.browser.conftest import serve
from tests.browser.pages import js_errors
from tests.factories import ARTIFACTS, tiny_settings

pytestmark = pytest.mark.browser
TIMEOUT = 120_000
AXE = Axe()


@pytest.fixture(scope="module")
def base_url(tmp_path_factory) -> Iterator[str]:
    # The server runs in this process: a short evaluation set keeps the map's job to seconds on a busy CPU
    # (its numbers are checked in tests/api/test_api_influence_ablation.py; here the page is under test).
    short = ablation_run.date_eval_set()[:6]
    with (
        pytest.MonkeyPatch.context() as mp,
        serve(tiny_settings(tmp_path_factory.mktemp("ablate"), preload=False)) as url,
    ):
        mp.setattr(ablation_run, "date_eval_set", lambda: short)  # where the map job reads it
        yield url


def outcome_text(page) -> str:
    return page.inner_text("#inf-ablation [data-role='outcome'] tbody")


def test_ablation_importance_and_lens_on_the_date_model(page, base_url):
    page.goto(f"{base_url}/influence")
    page.wait_for_selector("body[data-ready='1']", timeout=TIMEOUT)
    page.select_option("#inf-model", "tiny-dates")
    page.fill("#inf-text", "7 Dec '41")
    page.click("#inf-go")
    for name in ("ablation", "importance", "lens"):
        page.wait_for_selector(f'[data-section="{name}"][data-state="ready"]', timeout=TIMEOUT)
    page.wait_for_selector("#inf-ablation [data-role='ablation-output'][data-state='ready']", timeout=TIMEOUT)
    intact = outcome_text(page)
    assert "Decoded date" in intact and "±0.000" in intact  # nothing cut: intact == ablated

    cross = page.locator("#inf-ablation table.inf-heads", has_text="cross").first
    cross.locator("button.inf-layer").last.click()  # every head of the last cross-attention layer
    page.wait_for_selector("#inf-ablation [data-role='ablation-output'][data-heads='4']", timeout=TIMEOUT)
    cut = outcome_text(page)
    assert cut != intact and "±0.000" not in cut.split("log p")[1]
    assert cross.locator("button.inf-head[aria-pressed='true']").count() == 4
    # keyboard: Space on a focused head cuts it, and the focus stays on that head after the grid redraws
    key = "encoder_self|0|1"
    page.focus(f"#inf-ablation button[data-key='{key}']")
    page.keyboard.press("Space")
    page.wait_for_selector("#inf-ablation [data-role='ablation-output'][data-heads='5']", timeout=TIMEOUT)
    assert page.evaluate("document.activeElement.dataset.key") == key
    page.select_option("#inf-ablation select", "mean")  # mean-ablation over the evaluation set
    page.wait_for_selector("#inf-ablation caption >> text=5 heads mean-ablated", timeout=TIMEOUT)

    page.click("#inf-importance button.primary")
    page.wait_for_selector(
        "#inf-importance [data-role='importance-map'][data-state='ready']", timeout=TIMEOUT
    )
    assert page.locator("#inf-importance table.inf-imap").count() == 3
    assert page.locator("#inf-lens [data-role='lens-table'] tbody tr").count() == 2 * 3
    page.screenshot(path=str(ARTIFACTS / "influence_ablation.png"), full_page=True)
    results = AXE.run(page)
    assert results.violations_count == 0, results.generate_report()
    assert js_errors(page) == []
