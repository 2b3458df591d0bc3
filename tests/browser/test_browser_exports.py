"""Every export button on every page, clicked under the app's real Content-Security-Policy (issue 18, item 1).

Each page is opened and analysed as a user would; then every visible ``[data-export]`` button (PNG, SVG, CSV,
JSON) is clicked and Playwright's ``expect_download`` must receive a non-empty file of the right type: PNG magic
bytes, an SVG document, a CSV with a header row and at least one data row, JSON that parses. The button's
status line (``.export-status``) must stay empty: a failed export writes its message there.

One server for the module and a fresh page per page tested (the real CSP, no ``bypass_csp``); only CSS selectors and
``page.evaluate`` are used, as in tests/browser/test_browser_csp.py."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from urllib.parse import quote

import pytest

from tests.browser.conftest import new_page, serve
from tests.browser.pages import RECORD_VIOLATIONS, poll
from tests.factories import ARTIFACTS, tiny_settings

pytestmark = pytest.mark.browser
TIMEOUT = 60_000
DOWNLOAD_MS = 20_000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SENTENCE = quote("The quick brown fox jumps over the lazy dog.")


@pytest.fixture(scope="module")
def base_url(tmp_path_factory) -> Iterator[str]:
    with serve(tiny_settings(tmp_path_factory.mktemp("exports"), preload=False)) as url:
        yield url


@pytest.fixture
def page(browser) -> Iterator:
    """A fresh page under the real CSP for each page tested: Chromium throttles a tab that has downloaded many
    files (its multiple-downloads guard), so one tab for the whole module would stop downloading part-way."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.add_init_script(RECORD_VIOLATIONS)
    pg = new_page(context, errors="errors")
    yield pg
    context.close()


def check_file(fmt: str, data: bytes, name: str) -> None:
    assert data, f"{name}: empty download"
    assert name.endswith(f".{fmt}"), name
    if fmt == "png":
        assert data.startswith(PNG_MAGIC), f"{name}: not a PNG ({data[:16]!r})"
    elif fmt == "svg":
        text = data.decode("utf-8").lstrip()
        if text.startswith("<?xml"):
            text = text[text.index("?>") + 2 :].lstrip()
        assert text.startswith("<svg"), f"{name}: not an SVG ({text[:40]!r})"
        assert "</svg>" in text, name
    elif fmt == "csv":
        lines = data.decode("utf-8").splitlines()
        assert len(lines) >= 2, f"{name}: no data row"
        header = lines[0].split(",")
        assert len(header) >= 1 and all(h.strip() for h in header), f"{name}: header {lines[0]!r}"
    elif fmt == "json":
        assert json.loads(data.decode("utf-8")) not in (None, {}, []), name
    else:  # pragma: no cover
        raise AssertionError(f"unknown export format {fmt}")


def download_from(page, button, what: str):
    """The download one click on ``button`` starts. Under load, headless Chromium now and then drops a download
    that follows another within a fraction of a second (no event, no error, nothing in the page's status line);
    a second click, only then, tells that apart from a button that does not work."""
    for attempt, timeout in enumerate((DOWNLOAD_MS // 2, DOWNLOAD_MS)):
        try:
            with page.expect_download(timeout=timeout) as info:
                button.click()
            return info.value
        except Exception as e:
            status = button.evaluate(
                "(b) => b.closest('.export')?.querySelector('.export-status')?.textContent"
            )
            if attempt or status:  # a message in the status line is a failed export: no second try
                raise AssertionError(f"{what}: no download ({status!r}, {page.errors})") from e
    raise AssertionError(what)  # pragma: no cover


def click_every_export(page, where: str) -> list[str]:
    """Click every visible export button on the page; returns the downloaded file names."""
    buttons = page.locator("[data-export]")
    names = []
    for i in range(buttons.count()):
        button = buttons.nth(i)
        if not button.is_visible():
            continue
        fmt = button.get_attribute("data-export")
        group = button.evaluate("(b) => b.closest('.export')?.getAttribute('aria-label') || ''")
        download = download_from(page, button, f"{where}: {group} {fmt}")
        path = download.path()
        assert path is not None, f"{where}: {fmt} download failed ({download.failure()})"
        with open(path, "rb") as f:
            data = f.read()
        check_file(fmt, data, f"{where}: {download.suggested_filename}")
        if fmt == "png":  # kept for a look: tests/artifacts/exports/
            (ARTIFACTS / "exports").mkdir(parents=True, exist_ok=True)
            (ARTIFACTS / "exports" / download.suggested_filename).write_bytes(data)
        names.append(download.suggested_filename)
    failed = page.evaluate(
        "() => [...document.querySelectorAll('.export-status')].map((s) => s.textContent).filter(Boolean)"
    )
    assert failed == [], f"{where}: {failed}"
    assert names, f"{where}: no export button"
    return names


def wait(selector: str) -> Callable:
    return lambda page: page.wait_for_selector(selector, timeout=TIMEOUT)


def vision(page) -> None:
    page.wait_for_selector('.vz-overlay-canvas[data-state="ready"]', timeout=TIMEOUT)


def text_view(view: str, ready: str) -> Callable:
    def go(page) -> None:
        page.wait_for_selector(".tx-col-q .tx-tok", timeout=TIMEOUT)
        page.click(f".tx-tabs [data-view={view}]")
        page.wait_for_selector(ready, timeout=TIMEOUT)

    return go


def distance(page) -> None:
    poll(page, "() => Number(document.getElementById('dist-chart').dataset.traces) >= 2", "the sample run")


# (label, path, wait until analysed)
PAGES: list[tuple[str, str, Callable]] = [
    ("vision", "/vision?sample=astronaut", vision),
    ("vision rollout", "/vision?sample=astronaut&view=rollout", vision),
    ("vision compare", "/vision?compare=1&sample=astronaut", wait('#cmp-diff[data-state="ready"]')),
    ("text head view", f"/text?text={SENTENCE}", wait(".tx-col-q .tx-tok")),
    ("text model view", f"/text?text={SENTENCE}", text_view("model", ".tx-mv-canvas")),
    ("text matrix view", f"/text?text={SENTENCE}", text_view("matrix", "#tx-matrix-plot .main-svg")),
    ("text neuron view", f"/text?text={SENTENCE}", text_view("neuron", "#nv-canvas")),
    ("text compare", "/text?compare=1", wait('#cmpt-diff[data-state="ready"]')),
    ("distance", "/distance", distance),
    ("offsets", "/offsets", wait("#of-map .main-svg")),
    ("positional", "/positional", wait('#pe-app[data-renders="1"]')),
    ("scaling", "/scaling", wait('#sc-app[data-renders="1"]')),
    ("vit-embeddings", "/vit-embeddings", wait("#emb-var .main-svg")),
]


@pytest.mark.parametrize(("label", "path", "ready"), PAGES, ids=[p[0] for p in PAGES])
def test_every_export_button_downloads_its_file(page, base_url, label, path, ready) -> None:
    page.goto(f"{base_url}{path}")
    ready(page)
    if label == "vit-embeddings":
        page.wait_for_selector("#emb-filters canvas", timeout=TIMEOUT)
        page.wait_for_selector("#emb-tile .main-svg", timeout=TIMEOUT)
    names = click_every_export(page, label)
    formats = {n.rsplit(".", 1)[-1] for n in names}
    assert {"png", "svg"} <= formats, f"{label}: {names}"
    violations = page.evaluate("() => window.__csp")
    assert violations == [], f"{label}: {violations}"
    errors = [e for e in page.errors if "favicon" not in e and "Failed to load resource" not in e]
    assert errors == [], f"{label}: {errors}"


def test_a_failed_export_says_so(page, base_url) -> None:
    """A handler that throws (here: a canvas with no picture yet) writes a visible message next to the buttons."""
    page.goto(f"{base_url}/scaling")
    page.wait_for_selector('#sc-app[data-renders="1"]', timeout=TIMEOUT)
    page.evaluate(
        """async () => {
        const { downloadCanvas, exportButtons } = await import("/static/js/lib/export.js");
        const empty = document.createElement("canvas"); empty.width = 0;
        const box = exportButtons({ png: () => downloadCanvas("nothing", empty, "png") }, "Export a test");
        box.id = "failing-export"; document.querySelector("main").append(box); }"""
    )
    page.click("#failing-export [data-export=png]")
    page.wait_for_selector("#failing-export .export-status:not(:empty)", timeout=TIMEOUT)
    status = page.locator("#failing-export .export-status")
    assert status.is_visible()
    assert status.get_attribute("aria-live") == "polite"
    assert status.inner_text() == "PNG export failed: there is no picture to export yet"


# Pages with no export button today; if one gets a button, it moves to PAGES above.
NO_EXPORTS = [
    ("home", "/", ".cards a.card"),
    ("tour", "/tour", '#tour-app[data-live="9"]'),
    ("about-models", "/about-models", "main h1"),
    ("docs", "/docs", ".opblock"),
    ("influence", "/influence", "#inf-form"),
]


@pytest.mark.parametrize(("label", "path", "ready"), NO_EXPORTS, ids=[p[0] for p in NO_EXPORTS])
def test_pages_without_export_buttons(page, base_url, label, path, ready) -> None:
    page.goto(f"{base_url}{path}")
    page.wait_for_selector(ready, state="attached", timeout=TIMEOUT)
    assert page.locator("[data-export]").count() == 0, f"{label} has export buttons: add it to PAGES"


def test_every_page_is_covered() -> None:
    """Every page of the nav (and /offsets) is in PAGES or NO_EXPORTS."""
    from app.routers.pages import NAV

    covered = {p[1].split("?")[0] for p in PAGES} | {p[1] for p in NO_EXPORTS}
    assert {href for href, _ in NAV} | {"/", "/offsets"} <= covered


def test_head_view_png_has_a_legend_of_the_head_colours(page, base_url) -> None:
    """The head view's PNG (drawn at 2x) carries one swatch per head shown, in the head's line colour, under the
    title (headview.js PALETTE: head 1 #1f77b4, head 2 #ff7f0e, ...)."""
    import io

    from PIL import Image

    page.goto(f"{base_url}/text?text={SENTENCE}")
    page.wait_for_selector(".tx-col-q .tx-tok", timeout=TIMEOUT)
    heads = page.locator(".tx-chips .tx-chip[aria-pressed=true]").count()
    with page.expect_download(timeout=DOWNLOAD_MS) as info:
        page.click("#tx-export [data-export=png]")
    with open(info.value.path(), "rb") as f:
        img = Image.open(io.BytesIO(f.read())).convert("RGB")
    band = img.crop((0, 48, img.width, 80))  # the legend row (y 24..40 at 1x)
    counts = {c: n for n, c in band.getcolors(maxcolors=1 << 16)}
    palette = [(0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E), (0x2C, 0xA0, 0x2C), (0xD6, 0x27, 0x28)]
    # a swatch is a solid 20x20 block at 2x: hundreds of pixels of exactly the head's colour (a line has few)
    shown = [c for c in palette if counts.get(c, 0) >= 300]
    assert heads >= 1 and len(shown) == min(heads, 4), (heads, shown)
