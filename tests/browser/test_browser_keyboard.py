"""Accessibility from the keyboard in real headless Chromium (issue 10, section 3), split from
tests/browser/test_browser_a11y.py and run on its server and shared page: the vision patch grid, the text head
view, the side-by-side views and the neuron view work from the keyboard alone (visible cursor, arrow keys,
Enter pins, Esc returns), their text alternatives follow the selection, and the Tab order follows the reading
order. Screenshots of the focused states go to tests/artifacts/a11y-*.png."""

from __future__ import annotations

import re

import pytest

from tests.browser import test_browser_a11y as a11y
from tests.browser.pages import OVERLAY, overlay, poll
from tests.browser.test_browser_a11y import TIMEOUT
from tests.factories import ARTIFACTS

pytestmark = pytest.mark.browser
# the fixtures of the axe tests: one live server (MiniLM-shaped default BERT) and one page for the module
base_url, shared_page, page = a11y.base_url, a11y.shared_page, a11y.page


# --- keyboard ---------------------------------------------------------------------------------------------------
def focused(page) -> dict:
    return page.evaluate(
        """() => { const a = document.activeElement;
        return {tag: a.tagName, id: a.id, cls: a.className, focus: a.dataset.focus || '', pressed: a.getAttribute('aria-pressed'),
                visible: a.matches(':focus-visible')}; }"""
    )


def tab_order_follows_reading_order(page, stop: str, limit: int = 80) -> list[dict]:
    """Press Tab from the top of the page until the element matching ``stop`` has the focus; every element
    reached must come after the previous one in document order (no positive tabindex, no focus jumping back)
    and be visible on screen. Returns the elements passed."""
    # start at the top: focus the page header for a moment (the sequential focus starting point)
    page.evaluate(
        "() => { const h = document.querySelector('header'); h.tabIndex = -1; h.focus(); h.removeAttribute('tabindex'); }"
    )
    page.evaluate(
        """() => { window.__order = []; document.addEventListener('focusin', (e) => window.__order.push(e.target)); }"""
    )
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(f"() => document.activeElement.matches({stop!r})"):
            break
    else:
        raise AssertionError(f"Tab never reached {stop}")
    report = page.evaluate(
        """() => window.__order.map((n, i, all) => ({
            what: n.tagName + (n.id ? '#' + n.id : '') + (n.dataset.focus ? '[' + n.dataset.focus + ']' : ''),
            after: i === 0 || Boolean(all[i - 1].compareDocumentPosition(n) & Node.DOCUMENT_POSITION_FOLLOWING),
            shown: n.getClientRects().length > 0 }))"""
    )
    assert all(r["after"] for r in report), report
    assert all(r["shown"] for r in report), report
    return report


def test_vision_patch_grid_from_the_keyboard(page, base_url) -> None:
    page.goto(f"{base_url}/vision?view=head")  # one head (the page opens on the mean of heads by default)
    # choose the sample photo with the keyboard too
    page.wait_for_selector('[data-sample="astronaut"]', timeout=TIMEOUT)
    page.focus('[data-sample="astronaut"]')
    page.keyboard.press("Enter")
    page.wait_for_function(
        "new URLSearchParams(location.search).get('sample') === 'astronaut'", timeout=TIMEOUT
    )
    page.wait_for_selector('#vision-app[data-busy="0"]', timeout=TIMEOUT)
    page.wait_for_selector(f'{OVERLAY}[data-state="ready"]', timeout=TIMEOUT)
    cls = overlay(page)
    assert cls["query"] == "cls"
    rows, cols = int(cls["rows"]), int(cls["cols"])

    # reading order: the input row, the model view grid, the map's controls, then the map itself
    order = tab_order_follows_reading_order(page, OVERLAY)
    names = [r["what"] for r in order]
    assert names.index("DIV#vz-drop") < names.index("CANVAS") < len(names) - 1, (
        names
    )  # grid canvas before the map
    state = focused(page)
    assert state["visible"], state  # a keyboard focus shows a focus ring
    # focusing from the keyboard puts the query cursor on the centre patch and probes it
    centre = (rows // 2) * cols + cols // 2
    page.wait_for_selector(f'{OVERLAY}[data-query="{centre}"]')
    assert page.get_attribute(OVERLAY, "role") == "application"
    assert "Arrow keys" in page.get_attribute(OVERLAY, "aria-label")
    centre_map = overlay(page)["checksum"]
    assert centre_map != cls["checksum"]
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(".vz-overlaypanel").screenshot(path=str(ARTIFACTS / "a11y-vision-keyboard-cursor.png"))

    # arrow keys move the cursor and the overlay changes; the live region and the top-k table follow
    page.keyboard.press("ArrowRight")
    page.wait_for_selector(f'{OVERLAY}[data-query="{centre + 1}"]')
    assert overlay(page)["checksum"] != centre_map
    page.keyboard.press("ArrowUp")
    target = centre + 1 - cols
    page.wait_for_selector(f'{OVERLAY}[data-query="{target}"]')
    r, c = target // cols + 1, target % cols + 1
    poll(
        page,
        f"() => document.getElementById('vz-live').textContent.includes('row {r}, col {c}')",
        "the live text",
    )
    table = page.eval_on_selector(
        "#vz-topk-table",
        "t => ({caption: t.caption.textContent, rows: t.tBodies[0].rows.length, first: Number(t.dataset.first)})",
    )
    assert table["rows"] == 5 and f"row {r}, col {c}" in table["caption"], table
    assert page.get_attribute(OVERLAY, "aria-describedby") == "vz-topk-table"
    # the table's first row is the brightest patch of the map drawn, as the API's values say
    analysis = page.get_attribute("#vision-app", "data-analysis")
    brightest = page.evaluate(
        f"""async () => {{ const {{ decodeTyped }} = await import('/static/js/lib/typed.js');
        const d = document.querySelector('{OVERLAY}').dataset;
        const q = new URLSearchParams({{ layer: d.layer, head: d.head, query: '{target}' }});
        const r = await (await fetch('/api/vision/analysis/{analysis}/attention?' + q)).json();
        const v = decodeTyped(r.values).data; let best = 0;
        for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
        return best; }}"""
    )
    assert table["first"] == brightest

    # Enter pins the patch under the cursor (URL and "Back" button); the cursor then moves on its own
    page.keyboard.press("Enter")
    page.wait_for_function(f"new URLSearchParams(location.search).get('query') === '{target}'")
    assert page.locator("#vz-back").is_visible()
    poll(page, "() => document.getElementById('vz-live').textContent.includes('(pinned)')", "the pinned note")
    page.locator(".vz-overlaypanel").screenshot(path=str(ARTIFACTS / "a11y-vision-keyboard-pinned.png"))
    page.keyboard.press("ArrowDown")  # pinned: the cursor moves, the map and the URL stay on the pinned patch
    assert page.evaluate("() => new URLSearchParams(location.search).get('query')") == str(target)
    page.keyboard.press("Enter")  # pin the new cursor position instead
    page.wait_for_selector(f'{OVERLAY}[data-query="{target + cols}"]')

    # Esc unpins and returns to the [CLS] map: the same pixels as before any probing
    page.keyboard.press("Escape")
    page.wait_for_selector(f'{OVERLAY}[data-query="cls"]')
    assert overlay(page)["checksum"] == cls["checksum"]
    assert not page.locator("#vz-back").is_visible()
    assert page.evaluate("() => new URLSearchParams(location.search).get('query')") in (None, "")
    # the focus stayed on the map; the next arrow key resumes from the last cursor position
    assert page.evaluate(f"() => document.activeElement === document.querySelector('{OVERLAY}')")
    page.keyboard.press("ArrowLeft")
    page.wait_for_selector(f'{OVERLAY}[data-query="{target + cols - 1}"]')
    # leaving the map by Tab with nothing pinned returns to the [CLS] map too
    page.keyboard.press("Tab")
    page.wait_for_selector(f'{OVERLAY}[data-query="cls"]')
    assert page.js_errors == []


def analyse_the_fox(page, base_url: str) -> None:
    """/text with the fox sentence analysed by the default (MiniLM-shaped) model, its tokens shown."""
    page.goto(f"{base_url}/text")
    page.fill("#tx-text", "The quick brown fox jumps over the lazy dog.")
    page.press("#tx-text", "Enter")
    page.wait_for_selector(".tx-col-q .tx-tok >> text=fox", timeout=TIMEOUT)


def test_text_head_view_from_the_keyboard(page, base_url) -> None:
    analyse_the_fox(page, base_url)
    n_q = page.locator(".tx-col-q .tx-tok").count()

    # the tabs: one Tab stop, Left/Right move between views
    page.focus(".tx-tabs [data-view=head]")
    page.keyboard.press("ArrowRight")
    page.wait_for_selector(".tx-mv-canvas", timeout=TIMEOUT)
    assert focused(page)["id"] == "tx-tab-model"
    assert page.get_attribute("#tx-tab-model", "aria-selected") == "true"
    assert page.get_attribute("#tx-tab-head", "tabindex") == "-1"
    page.keyboard.press("ArrowLeft")
    page.wait_for_selector(".tx-col-q .tx-tok", timeout=TIMEOUT)
    assert focused(page)["id"] == "tx-tab-head"

    # reading order down to the tokens: the form, the tabs, the head chips, then one Tab stop for the tokens
    order = tab_order_follows_reading_order(page, ".tx-tok")
    names = [r["what"] for r in order]
    assert (
        names.index("TEXTAREA#tx-text") < names.index("BUTTON#tx-tab-head") < names.index("BUTTON[chip0]")
    ), names
    state = focused(page)
    assert state["focus"] == "q0" and state["visible"], state
    # focus on a token shows its lines and shades its keys; the text alternative lists its top keys
    poll(page, "() => document.querySelector('.tx-hv-sr table')?.dataset.focus === 'q0'", "the q0 table")
    for _ in range(3):
        page.keyboard.press("ArrowDown")
    assert focused(page)["focus"] == "q3"
    poll(page, "() => document.querySelector('.tx-hv-sr table')?.dataset.focus === 'q3'", "the q3 table")
    caption = page.eval_on_selector(".tx-hv-sr table", "t => t.caption.textContent")
    label = page.eval_on_selector(".tx-col-q .tx-tok[data-index='3']", "n => n.textContent")
    assert f"query {label} (4)" in caption, caption
    assert page.eval_on_selector(".tx-hv-sr table", "t => t.tBodies[0].rows.length") == 5
    shaded = page.eval_on_selector_all(".tx-col-k .tx-tok", "ns => ns.filter(n => n.style.background).length")
    assert shaded >= 1

    # Enter pins it; the pin survives a head toggled from the keyboard, and the focus returns to the chip
    page.keyboard.press("Enter")
    assert focused(page)["pressed"] == "true"
    page.locator(".tx-hv-body").screenshot(path=str(ARTIFACTS / "a11y-text-keyboard-pinned.png"))
    page.focus(".tx-chip[data-head='0']")
    page.keyboard.press("Enter")  # head 1 off
    poll(
        page,
        "() => document.querySelector(\".tx-chip[data-head='0']\")?.getAttribute('aria-pressed') === 'false'",
        "chip 1 off",
    )
    state = focused(page)
    assert state["focus"] == "chip0", state
    assert page.get_attribute(".tx-col-q .tx-tok[data-index='3']", "aria-pressed") == "true"
    page.keyboard.press("Shift+Enter")  # only head 1
    poll(
        page,
        "() => [...document.querySelectorAll('.tx-chip')].map(c => c.getAttribute('aria-pressed')).join() === "
        "['true', ...Array(11).fill('false')].join()",
        "only head 1",
    )
    assert re.search(r"heads? 1\b", page.eval_on_selector(".tx-hv-sr table", "t => t.caption.textContent"))
    page.screenshot(path=str(ARTIFACTS / "a11y-text-keyboard-chips.png"))

    # back to the tokens: Right crosses to the keys, Esc unpins and clears the shading
    page.focus(".tx-tok[tabindex='0']")
    assert focused(page)["focus"] == "q3"
    page.keyboard.press("ArrowRight")
    assert focused(page)["focus"] == "k3"
    page.keyboard.press("End")
    assert focused(page)["focus"] == f"k{page.locator('.tx-col-k .tx-tok').count() - 1}"
    page.keyboard.press("Escape")
    assert page.locator(".tx-tok[aria-pressed=true]").count() == 0
    poll(page, "() => !document.querySelector('.tx-hv-sr table').dataset.focus", "the overview table")
    rows = page.eval_on_selector(".tx-hv-sr table", "t => t.tBodies[0].rows.length")
    # no token in focus: each query's most attended key
    assert rows == n_q, page.eval_on_selector(".tx-hv-sr table", "t => t.innerText")

    # the statistics table sorts from the keyboard: its headers are buttons, focus stays after the redraw
    page.wait_for_selector("#tx-table button.th-sort", timeout=TIMEOUT)
    page.focus("#tx-table button.th-sort[data-sort='0']")
    page.keyboard.press("Enter")
    poll(page, "() => document.querySelector('#tx-table th[aria-sort=descending]') !== null", "sorted")
    assert page.evaluate("() => document.activeElement.dataset.sort") == "0"
    page.keyboard.press(" ")
    poll(page, "() => document.querySelector('#tx-table th[aria-sort=ascending]') !== null", "re-sorted")
    assert page.js_errors == []


def test_vision_side_by_side_from_the_keyboard(page, base_url) -> None:
    page.goto(f"{base_url}/vision?compare=1&sample=astronaut")
    page.wait_for_selector('#cmp-diff[data-state="ready"]', timeout=TIMEOUT)
    a, b = f"#cmp-a {OVERLAY}", f"#cmp-b {OVERLAY}"
    cls_b = page.eval_on_selector(b, "c => ({...c.dataset})")
    rows, cols = int(cls_b["rows"]), int(cls_b["cols"])
    tab_order_follows_reading_order(page, a)
    centre = (rows // 2) * cols + cols // 2  # both panels use the same tiny model: the same grid
    for sel in (a, b):  # one query for both panels
        page.wait_for_selector(f'{sel}[data-query="{centre}"]')
    page.keyboard.press("ArrowDown")
    page.wait_for_selector(f'{b}[data-query="{centre + cols}"]')
    page.keyboard.press("Enter")
    r, c = (centre + cols) // cols + 1, (centre + cols) % cols + 1
    page.wait_for_function(f"new URLSearchParams(location.search).get('qrow') === '{r}'")
    assert page.evaluate("() => new URLSearchParams(location.search).get('qcol')") == str(c)
    poll(
        page, "() => document.getElementById('cmp-live').textContent.includes('(pinned)')", "the pinned note"
    )
    assert page.eval_on_selector("#cmp-a-topk", "t => t.tBodies[0].rows.length") == 5
    page.keyboard.press("Escape")
    page.wait_for_selector(f'{b}[data-query="cls"]')
    assert page.eval_on_selector(b, "c => c.dataset.checksum") == cls_b["checksum"]
    assert page.js_errors == []


def test_text_model_view_and_neuron_view_without_a_mouse(page, base_url) -> None:
    analyse_the_fox(page, base_url)
    n_keys = page.locator(".tx-col-k .tx-tok").count()

    # model view: Tab-focusable canvas, the arrow keys move a cursor, Enter opens that head in the matrix
    page.click("#tx-tab-model")
    page.wait_for_selector(".tx-mv-canvas", timeout=TIMEOUT)
    page.focus(".tx-mv-canvas")
    start = page.get_attribute(".tx-mv-canvas", "data-cursor")
    assert start == "0,0", start
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert page.get_attribute(".tx-mv-canvas", "data-cursor") == "1,2"
    assert "Cursor: layer 2, head 3" in page.get_attribute(".tx-mv-canvas", "aria-label")
    page.screenshot(path=str(ARTIFACTS / "a11y-text-model-view-cursor.png"))
    page.keyboard.press("Enter")
    poll(
        page,
        "() => document.querySelector('#tx-tab-matrix')?.getAttribute('aria-selected') === 'true'",
        "matrix",
    )
    assert page.input_value("#tx-layer") == "2" and page.input_value("#tx-head") == "3"

    # neuron view: the canvas's values are in a screen-reader table, one row per key, strongest first
    page.click("#tx-tab-neuron")
    page.wait_for_selector("#nv-sr", state="attached", timeout=TIMEOUT)
    assert page.eval_on_selector("#nv-sr", "t => t.tBodies[0].rows.length") == n_keys
    weights = page.eval_on_selector_all(
        "#nv-sr tbody tr td:nth-child(4)", "tds => tds.map(t => Number(t.textContent))"
    )
    assert weights == sorted(weights, reverse=True) and abs(sum(weights) - 1) < 0.01 * len(weights)
    assert page.js_errors == []
