"""A 503 with Retry-After is "queued", not an error: the page retries by itself after Retry-After seconds,
shows a queued / retrying banner with a Cancel button, and Cancel leaves a neutral "cancelled" state.

The 503s are injected with Playwright's ``page.route`` (the first N calls of a route answer 503 +
``Retry-After: 1``, later ones pass through to the real server), so these tests do not depend on how
busy the machine is. A JSON 500 shows its request id."""

from __future__ import annotations

import json
import time

import pytest

from tests.factories import ARTIFACTS

pytestmark = pytest.mark.browser

OVERLAY = ".vz-overlay-canvas"
BUSY = {
    "detail": "The compute queue is full (4 jobs waiting); try again in a few seconds.",
    "retry_after_s": 1,
}


def busy_first(n: int, calls: list[str]):
    """A route handler: the first ``n`` calls get 503 + Retry-After: 1, the rest reach the server."""

    def handle(route) -> None:
        calls.append(route.request.url)
        if len(calls) <= n:
            route.fulfill(
                status=503,
                headers={"Retry-After": "1", "Content-Type": "application/json"},
                body=json.dumps(BUSY),
            )
        else:
            route.continue_()

    return handle


def page_errors(page) -> list[str]:
    """Uncaught errors and console errors of the page's code; the browser's own "Failed to load resource:
    ... 503" line for each injected 503 is expected."""
    return [e for e in page.js_errors if "status of 503" not in e and "status of 500" not in e]


def queue_state(page) -> str:
    return page.get_attribute("#api-queue", "data-state")


def test_vision_analyze_waits_out_503s_and_shows_the_result(page, base_url) -> None:
    calls: list[str] = []
    page.route("**/api/vision/analyze", busy_first(2, calls))
    page.goto(f"{base_url}/vision")
    page.click('[data-sample="astronaut"]')

    page.wait_for_selector('#api-queue[data-state="retrying"]', timeout=10_000)
    banner = page.locator("#api-queue")
    assert banner.is_visible()
    text = banner.inner_text()
    assert "Queued" in text and "Retrying in" in text, text
    assert page.locator("#api-queue .queue-cancel").is_visible()
    assert page.inner_text("#vz-error") == ""  # queued is not an error
    page.screenshot(path=str(ARTIFACTS / "retry-queued.png"))

    # no user action: the third call reaches the server and the maps are drawn
    page.wait_for_selector(f'{OVERLAY}[data-state="ready"]', timeout=30_000)
    assert len(calls) == 3
    assert queue_state(page) == "idle" and not banner.is_visible()
    assert page.inner_text("#vz-error") == ""
    assert page_errors(page) == []


def test_cancel_stops_retrying_and_leaves_a_neutral_cancelled_state(page, base_url) -> None:
    calls: list[str] = []
    page.route("**/api/vision/analyze", busy_first(10_000, calls))  # busy for good
    page.goto(f"{base_url}/vision")
    page.click('[data-sample="astronaut"]')
    page.wait_for_selector('#api-queue[data-state="retrying"]', timeout=10_000)
    until = int(page.get_attribute("#api-queue", "data-until"))
    page.click("#api-queue .queue-cancel")

    page.wait_for_selector('#api-queue[data-state="cancelled"]', timeout=5_000)
    banner = page.locator("#api-queue")
    assert banner.is_visible() and "Cancelled" in banner.inner_text()
    assert page.locator("#api-queue .queue-cancel").count() == 0
    assert page.inner_text("#vz-error") == ""  # cancelled is not an error
    page.wait_for_selector('#vision-app[data-busy="0"]', timeout=5_000)
    assert page.is_visible("#vz-empty") and "No image yet" in page.inner_text("#vz-empty")
    page.screenshot(path=str(ARTIFACTS / "retry-cancelled.png"))

    # the retry that was due does not go out: poll the page's clock past its time (plus the jitter)
    seen = len(calls)
    deadline = time.monotonic() + 10
    while page.evaluate("() => Date.now()") < until + 1500:
        assert time.monotonic() < deadline
        page.wait_for_function("true")  # one round trip to the page
    assert len(calls) == seen

    # dismissing the note returns to a clean page; the next click works as usual
    page.click("#api-queue .queue-dismiss")
    assert queue_state(page) == "idle" and not banner.is_visible()
    page.unroute("**/api/vision/analyze")
    page.click('[data-sample="astronaut"]')
    page.wait_for_selector(f'{OVERLAY}[data-state="ready"]', timeout=30_000)
    assert page_errors(page) == []


def retried_after_one_503(page, url: str, route: str, ready: str, error_box: str) -> None:
    """Open ``url`` with the first call to ``route`` answered 503 + Retry-After: the queue widget shows
    "retrying", the second try succeeds (``ready`` appears), the widget is idle again and ``error_box`` empty."""
    calls: list[str] = []
    page.route(route, busy_first(1, calls))
    page.goto(url)
    page.wait_for_selector('#api-queue[data-state="retrying"]', timeout=10_000)
    assert page.locator("#api-queue").is_visible()
    page.wait_for_selector(ready, timeout=30_000)
    assert len(calls) == 2
    assert queue_state(page) == "idle" and page.inner_text(error_box) == ""
    assert page_errors(page) == []


def test_figure_request_retries_after_503(page, base_url) -> None:
    url, ready = f"{base_url}/positional", '#pe-app[data-renders="1"]'
    retried_after_one_503(page, url, "**/api/figures/positional?*", ready, "#pe-error")


def test_text_analyze_retries_after_503(page, base_url) -> None:
    url = f"{base_url}/text?text=one%20two%20three"
    retried_after_one_503(page, url, "**/api/text/analyze", "#tx-summary b", "#tx-error")


def test_a_json_500_shows_its_request_id(page, base_url) -> None:
    def fail(route) -> None:
        route.fulfill(
            status=500,
            headers={"Content-Type": "application/json", "X-Request-ID": "5ca1ab1e0001"},
            body=json.dumps({"detail": "Internal server error.", "request_id": "5ca1ab1e0001"}),
        )

    page.route("**/api/figures/scaling?*", fail)
    page.goto(f"{base_url}/scaling")
    page.wait_for_function("document.getElementById('sc-error').textContent.length > 0", timeout=30_000)
    message = page.inner_text("#sc-error")
    assert "Internal server error" in message and "5ca1ab1e0001" in message
    assert queue_state(page) == "idle"


def test_a_newer_choice_replaces_a_queued_request_without_a_cancelled_note(page, base_url) -> None:
    """Clicking another photo while the first one waits in the queue drops the first request (no more
    retries for it) and shows the second; the banner goes away instead of saying "cancelled"."""
    first: list[str] = []

    def handle(route) -> None:
        if "astronaut" in (route.request.post_data or ""):
            first.append(route.request.url)
            route.fulfill(  # long enough that the second click always comes first
                status=503,
                headers={"Retry-After": "5", "Content-Type": "application/json"},
                body=json.dumps(BUSY),
            )
        else:
            route.continue_()

    page.route("**/api/vision/analyze", handle)
    page.goto(f"{base_url}/vision")
    page.click('[data-sample="astronaut"]')
    page.wait_for_selector('#api-queue[data-state="retrying"]', timeout=10_000)
    page.click('[data-sample="chelsea"]')
    page.wait_for_selector(f'{OVERLAY}[data-state="ready"]', timeout=30_000)
    assert queue_state(page) == "idle"
    assert page.get_attribute('[data-sample="chelsea"]', "aria-pressed") == "true"
    assert "sample=chelsea" in page.url and len(first) == 1
    assert page_errors(page) == []


def test_giving_up_after_the_cap_says_so_in_words(page, base_url) -> None:
    """Past the cap on tries (or on the total wait) the call fails with a sentence, not a bare 503."""
    calls: list[str] = []
    page.route("**/api/figures/scaling?*", busy_first(10_000, calls))
    page.goto(f"{base_url}/scaling")
    page.wait_for_selector('#api-queue[data-state="retrying"]', timeout=10_000)
    page.evaluate("async () => { (await import('/static/js/lib/api.js')).RETRY.maxAttempts = 2; }")
    page.fill("#sc-dk", "128")
    page.press("#sc-dk", "Enter")  # a new load replaces the queued one, and gives up after its 2nd try
    page.wait_for_function(
        "document.getElementById('sc-error').textContent.includes('still busy')", timeout=20_000
    )
    message = page.inner_text("#sc-error")
    assert "2 tries" in message and "compute queue is full" in message and "try again in a minute" in message
    assert queue_state(page) == "idle"
    assert page_errors(page) == []
