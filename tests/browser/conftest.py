"""Fixtures of the page tests: a live server, headless Debian Chromium via Playwright, fresh pages.

``live_server(settings) -> base_url`` (in ``tests/conftest.py``, shared with the API tests) serves
``create_app(settings)`` with uvicorn in a background thread on a free 127.0.0.1 port (:func:`serve` does the
same for a module-scoped server); ``base_url`` is the default app
(tiny random models, nothing preloaded), which a module overrides when it needs other models; ``browser`` is
one Chromium per session (never downloaded: /usr/bin/chromium, and a missing browser FAILS the test);
``page`` is a fresh 1280x800 context per test, ``strict_page`` one under the app's real
Content-Security-Policy. Screenshots go to ``tests/artifacts``. Helpers that read pages are in
:mod:`tests.browser.pages`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.pages import RECORD_VIOLATIONS
from tests.conftest import serve  # noqa: F401  (re-exported: the live server is in tests/conftest.py)
from tests.factories import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, tiny_settings


@pytest.fixture
def base_url(tmp_path, live_server) -> str:
    """The test app (tiny random models, nothing preloaded: pages must not depend on other areas' preloads)."""
    return live_server(tiny_settings(tmp_path, preload=False))


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium (``/usr/bin/chromium``) driven by Playwright; fails if it is missing."""
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: install Debian's chromium package"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def new_page(context, errors: str = "js_errors"):
    """A page of ``context`` whose uncaught page errors and console errors collect in ``page.<errors>``."""
    pg = context.new_page()
    setattr(pg, errors, [])
    pg.on("pageerror", lambda e: getattr(pg, errors).append(f"pageerror: {e}"))
    pg.on("console", lambda m: m.type == "error" and getattr(pg, errors).append(f"console: {m.text}"))
    return pg


@pytest.fixture
def page(browser):
    """A fresh 1280x800 page; ``page.js_errors`` collects uncaught page errors and console errors."""
    ARTIFACTS.mkdir(exist_ok=True)
    # bypass_csp lets Playwright's own wait_for_function(string) helpers run; the app's pages are checked
    # under the real Content-Security-Policy by tests/browser/test_browser_csp.py.
    context = browser.new_context(
        viewport={"width": 1280, "height": 800}, accept_downloads=True, bypass_csp=True
    )
    yield new_page(context)
    context.close()


@pytest.fixture
def strict_page(browser):
    """A page that obeys the app's CSP, with violations (``window.__csp``) and console errors recorded.
    Only CSS selectors and ``page.evaluate`` work here: Playwright's string predicates need eval."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.add_init_script(RECORD_VIOLATIONS)
    yield new_page(context, errors="errors")
    context.close()
