"""The text page's first minutes (issue 18, items 4 and 7) in headless Chromium: decoder rows named by the step
they write with one caption line, the no-date warning with the output's probability, the live token counter
with the model's limit, "Truncate to the limit", and an earlier analysis dimmed when a new one fails."""

from __future__ import annotations

import pytest

from tests.factories import ARTIFACTS, page_text_settings, tiny_settings

pytestmark = pytest.mark.browser


@pytest.fixture
def base_url(live_server, tmp_path):
    return live_server(tiny_settings(tmp_path, **page_text_settings()))


def analyse(page, text: str) -> dict:
    page.fill("#tx-text", text)
    with page.expect_response(lambda r: r.url.endswith("/api/text/analyze")) as resp:
        page.press("#tx-text", "Enter")
    page.wait_for_function("!document.querySelector('#tx-run').disabled")
    return resp.value


def test_cross_attention_rows_are_steps_and_no_date_warns(page, base_url):
    page.goto(f"{base_url}/text?model=tiny-dates&kind=cross")
    page.wait_for_selector("#tx-summary b")
    body = analyse(page, "no date in here").json()
    page.wait_for_selector(".tx-col-q .tx-tok")
    rows = page.eval_on_selector_all(".tx-col-q .tx-tok", "ns => ns.map(n => n.textContent)")
    # row t reads decoder input t and writes the model's token there (the next input; random weights never stop)
    written = body["predicted"]
    assert written[:-1] == body["target"]["tokens"][1:]
    assert rows == [f"{i} → {w}" for i, w in zip(body["target"]["tokens"], written, strict=True)]
    assert rows[0].startswith("<s> → ")
    keys = page.eval_on_selector_all(".tx-col-k .tx-tok", "ns => ns.map(n => n.textContent)")
    assert "→" not in "".join(keys)  # keys are the encoder's source characters
    note = page.inner_text("#tx-steps")
    assert page.is_visible("#tx-steps") and "Decoder rows are steps" in note and "writes 7" in note
    warning = page.inner_text("#tx-summary .tx-warning")
    assert "No date-like token" in warning
    assert "probability" in page.inner_text("#tx-summary .tx-output-prob")
    # the matrix view labels its rows the same way
    page.click(".tx-tabs [data-view=matrix]")
    page.wait_for_selector("#tx-matrix-plot .main-svg")
    ticks = page.evaluate("document.getElementById('tx-matrix-plot').layout.yaxis.ticktext")
    assert ticks[0].startswith("&lt;s&gt; → ") or ticks[0].startswith("<s> → ")
    page.screenshot(path=str(ARTIFACTS / "text_cross_steps.png"))
    # encoder self-attention has no steps: the caption line goes away
    page.click("#tx-kind button[data-kind=encoder_self]")
    page.wait_for_function("document.getElementById('tx-steps').classList.contains('hidden')")
    # a date-like input has no warning
    analyse(page, "July 4, 1776")
    page.wait_for_function("!document.querySelector('#tx-summary .tx-warning')")


def test_token_counter_truncate_and_stale_dimming(page, base_url):
    page.goto(f"{base_url}/text?model=tiny-dates")
    page.wait_for_selector("#tx-summary b")
    page.wait_for_function("/\\d+ \\/ 128 tokens/.test(document.getElementById('tx-count').textContent)")
    assert "Tiny dates takes up to 128 tokens" in page.inner_text("#tx-limits")
    assert "BERT" not in page.inner_text("#tx-text-help")
    assert page.is_hidden("#tx-truncate")
    first = page.inner_text("#tx-summary")
    long = "Friday, March 18th, 2022 " * 8  # 200 characters: over the date model's 128
    page.fill("#tx-text", long)
    page.wait_for_function("document.getElementById('tx-count').textContent.startsWith('200 / 128')")
    assert "over" in page.get_attribute("#tx-count", "class")
    # a failing analysis: the error shows and the earlier analysis below it is dimmed, not passed off as this one
    with page.expect_response(lambda r: r.url.endswith("/api/text/analyze")) as resp:
        page.press("#tx-text", "Enter")
    assert resp.value.status == 422  # TextError: too many tokens
    page.wait_for_selector("#tx-error:not(:empty)")
    assert "128" in page.inner_text("#tx-error")
    page.wait_for_selector(".tx-main.tx-stale")
    assert (
        "tx-stale" in page.get_attribute("#tx-summary", "class") and page.inner_text("#tx-summary") == first
    )
    page.screenshot(path=str(ARTIFACTS / "text_stale_dimmed.png"))
    # truncate to the limit: the text fits, the counter agrees, and the analysis succeeds and undims
    page.click("#tx-truncate")
    page.wait_for_function("/^\\d+ \\/ 128 tokens/.test(document.getElementById('tx-count').textContent)")
    n = len(page.input_value("#tx-text"))
    assert 100 < n <= 128 and long.startswith(page.input_value("#tx-text"))
    assert page.is_hidden("#tx-truncate")
    with page.expect_response(lambda r: r.url.endswith("/api/text/analyze")) as resp:
        page.click("#tx-run")
    assert resp.value.status == 200
    page.wait_for_function("!document.querySelector('.tx-main').classList.contains('tx-stale')")
    assert page.inner_text("#tx-error") == ""
    # another model: the hint and the counter follow it
    with page.expect_response(lambda r: r.url.endswith("/api/text/analyze")):
        page.select_option("#tx-model", "tiny-bert")
    page.wait_for_function("/ \\/ 512 tokens/.test(document.getElementById('tx-count').textContent)")
    assert "Tiny BERT 4L takes up to 512 tokens" in page.inner_text("#tx-limits")
    # the one console error is the failed analysis's own 422 (the browser logs every failed fetch)
    assert [e for e in page.js_errors if "422" not in e] == []


def test_head_select_agrees_with_the_head_chips(page, base_url):
    """First load: the head view draws every head (every chip on), so the Head select says "mean of heads";
    with only head 2's chip on it says head 2, and "all" brings back the mean (issue 18: controls agree)."""
    page.goto(f"{base_url}/text")
    page.wait_for_selector(".tx-chip")
    chips = page.locator(".tx-chip")
    assert chips.count() > 1 and all(
        c == "true"
        for c in page.eval_on_selector_all(".tx-chip", "ns => ns.map(n => n.getAttribute('aria-pressed'))")
    )
    assert page.input_value("#tx-head") == "mean"
    page.click('.tx-chip-all[data-focus="none"]')
    page.locator(".tx-chip").nth(1).click()  # exactly head 2 on
    page.wait_for_function("document.querySelector('#tx-head').value === '2'")
    page.click('.tx-chip-all[data-focus="all"]')
    page.wait_for_function("document.querySelector('#tx-head').value === 'mean'")
