"""Helpers that read the app's pages in the browser tests (the fixtures are in tests/browser/conftest.py)."""

from __future__ import annotations

import time

OVERLAY = ".vz-overlay-canvas"  # the vision page's patch-grid canvas; its dataset holds the selected query

# Records the page's Content-Security-Policy violations in ``window.__csp`` (an init script of strict_page).
RECORD_VIOLATIONS = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} blocked ${e.blockedURI || "(inline)"} at ${e.sourceFile}:${e.lineNumber}`);
});
"""


def poll(page, script: str, what: str, timeout_s: float = 60):
    """Evaluate ``script`` (a function source) until it returns something truthy; CSP-proof polling."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = page.evaluate(script)
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        page.wait_for_selector("body")  # one round trip to the page between tries


def painted(page, selector: str) -> bool:
    """The canvas matched by ``selector`` has a size and at least one non-transparent, non-white pixel."""
    return page.evaluate(
        f"""() => {{ const c = document.querySelector({selector!r});
        if (!c || !c.width || !c.height) return false;
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        for (let i = 0; i < d.length; i += 4) if (d[i + 3] && (d[i] < 250 || d[i + 1] < 250 || d[i + 2] < 250)) return true;
        return false; }}"""
    )


def js_errors(page) -> list[str]:
    """The page's JS errors, minus the browser's own "Failed to load resource" log lines (the favicon probe and
    the 4xx answers that tests provoke on purpose)."""
    return [e for e in page.js_errors if "Failed to load resource" not in e]


def overlay(page) -> dict:
    """The vision overlay canvas's ``data-*`` attributes (state, query, ...)."""
    return page.eval_on_selector(OVERLAY, "c => ({...c.dataset})")


def pick_sample(page, name: str, timeout_ms: float = 60_000) -> None:
    """Click a sample photo on /vision and wait until its analysis is the page's and none is running.

    Waiting for the overlay's "ready" alone races: the previous image's grid stays ready while the new analysis
    runs, and a click on it pins a patch that the new analysis then clears."""
    page.click(f'[data-sample="{name}"]')
    page.wait_for_selector(f'[data-sample="{name}"][aria-pressed="true"]', timeout=timeout_ms)
    page.wait_for_selector(
        f'#vision-app:not([data-busy="1"]) {OVERLAY}[data-state="ready"]', timeout=timeout_ms
    )
