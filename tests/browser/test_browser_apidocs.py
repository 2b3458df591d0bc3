"""/docs (Swagger UI) and /redoc (ReDoc) render offline under the app's real Content-Security-Policy (issue 18):
their assets come from this server (/vendor/apidocs/, the fastapi-offline package), each is started by an
external script, and the page lists the API's operations. No request leaves the server: every request the page
makes is checked against the server's origin. Screenshots go to tests/artifacts."""

from __future__ import annotations

import pytest

from app.middleware import CSP
from tests.browser.pages import poll
from tests.factories import ARTIFACTS

pytestmark = pytest.mark.browser
TIMEOUT = 60_000


def open_docs(page, base_url: str, path: str) -> list[str]:
    """Open ``path`` and return the URLs of every request it made that did not go to this server."""
    outside: list[str] = []
    page.on(
        "request",
        lambda r: (
            r.url.startswith(("http:", "https:")) and not r.url.startswith(base_url) and outside.append(r.url)
        ),
    )
    page.set_viewport_size({"width": 1400, "height": 1000})
    response = page.goto(f"{base_url}{path}")
    assert response.status == 200
    assert response.headers.get("content-security-policy") == CSP
    return outside


def finish(page, name: str, outside: list[str]) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"apidocs-{name}.png"))
    assert outside == [], outside
    assert page.evaluate("() => window.__csp") == []
    errors = [e for e in page.errors if "favicon" not in e]
    assert errors == [], errors


def test_swagger_ui_lists_the_operations(strict_page, base_url) -> None:
    page = strict_page
    outside = open_docs(page, base_url, "/docs")
    page.wait_for_selector('#apidocs[data-state="ready"]', timeout=TIMEOUT)
    page.wait_for_selector(".opblock-summary-path", timeout=TIMEOUT)
    paths = page.evaluate(
        "() => [...document.querySelectorAll('.opblock-summary-path')].map((e) => e.getAttribute('data-path'))"
    )
    assert "/api/vision/analyze" in paths and "/api/text/analyze" in paths, paths
    assert page.locator(".info .title").inner_text().startswith("Attention Atlas")
    finish(page, "swagger", outside)


def test_redoc_renders_the_operations(strict_page, base_url) -> None:
    page = strict_page
    outside = open_docs(page, base_url, "/redoc")
    page.wait_for_selector('#apidocs[data-state="ready"]', timeout=TIMEOUT)
    poll(
        page,
        "() => document.querySelector('#redoc')?.textContent.includes('/api/vision/analyze')",
        "ReDoc's operations",
    )
    assert page.locator("#redoc h1").first.inner_text().startswith("Attention Atlas")
    finish(page, "redoc", outside)


def test_every_page_links_the_api_docs(strict_page, base_url) -> None:
    strict_page.goto(f"{base_url}/")
    hrefs = strict_page.evaluate(
        "() => [...document.querySelectorAll('footer a')].map((a) => a.getAttribute('href'))"
    )
    assert {"/docs", "/redoc", "/openapi.json"} <= set(hrefs)
    strict_page.click("footer a[href='/docs']")
    strict_page.wait_for_selector(".opblock-summary-path", timeout=TIMEOUT)
