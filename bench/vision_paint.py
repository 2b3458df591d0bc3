"""First paint of /vision in headless Chromium: milliseconds from the analyze response's last byte to the big map
drawn, and from the click on a patch to its map drawn (used by bench/vision.py and tests/browser/test_browser_native.py).

The page marks its overlay canvas ``data-state="ready"`` when a map is drawn; an init script records
``performance.now()`` at each change of the canvas's ``data-query`` / ``data-state`` (MutationObserver), and
the analyze request's ``responseEnd`` comes from the Resource Timing API, both on the page's own clock.
"""

from __future__ import annotations

OVERLAY = ".vz-overlay-canvas"

# Records (time, query, state) of the overlay canvas each time it changes.
MARKS = """
window.__paints = [];
new MutationObserver(() => {
  const c = document.querySelector('.vz-overlay-canvas');
  if (c && c.dataset.state === 'ready') window.__paints.push([performance.now(), c.dataset.query, c.dataset.checksum]);
}).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-state', 'data-query', 'data-checksum'] });
"""


def _first_paint_after(page, t0: float, query: str, timeout_s: float) -> float:
    page.wait_for_function(
        f"(window.__paints || []).some(p => p[0] >= {t0} && p[1] === '{query}')", timeout=timeout_s * 1000
    )
    return page.evaluate(f"window.__paints.find(p => p[0] >= {t0} && p[1] === '{query}')[0]") - t0


def measure(page, base_url: str, sample: str, resolution: int, row: int, col: int, timeout_s: float = 300):
    """Open /vision on ``sample`` at ``resolution``; returns (ms from the analyze response to the [CLS] map
    drawn, ms from the click on patch (row, col) to its map drawn). ``page`` needs :data:`MARKS` as an init
    script (``context.add_init_script(MARKS)``)."""
    page.goto(f"{base_url}/vision?sample={sample}&res={resolution}")
    page.wait_for_function(
        "performance.getEntriesByType('resource').some(e => e.name.includes('/api/vision/analyze') && e.responseEnd > 0)",
        timeout=timeout_s * 1000,
    )
    response_end = page.evaluate(
        "performance.getEntriesByType('resource').find(e => e.name.includes('/api/vision/analyze')).responseEnd"
    )
    cls_ms = _first_paint_after(page, response_end, "cls", timeout_s)
    box = page.locator(OVERLAY).bounding_box()
    d = page.eval_on_selector(OVERLAY, "c => ({...c.dataset})")
    fx, fy, rows, cols = float(d["fx"]), float(d["fy"]), int(d["rows"]), int(d["cols"])
    x = box["x"] + box["width"] * fx * (col + 0.5) / cols
    y = box["y"] + box["height"] * fy * (row + 0.5) / rows
    t_click = page.evaluate("performance.now()")
    page.mouse.click(x, y)
    click_ms = _first_paint_after(page, t_click, str(row * cols + col), timeout_s)
    return cls_ms, click_ms


def run(base_url: str, resolutions: list[int], sample: str = "astronaut") -> dict[int, tuple[float, float]]:
    """:func:`measure` per resolution in one headless Chromium (/usr/bin/chromium), a fresh page each."""
    from playwright.sync_api import sync_playwright

    from tests.factories import CHROMIUM, CHROMIUM_ARGS

    out = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        for res in resolutions:
            context = browser.new_context(
                viewport={"width": 1280, "height": 800}, bypass_csp=True
            )  # for waits
            context.add_init_script(MARKS)
            side = res // 14
            out[res] = measure(context.new_page(), base_url, sample, res, side // 2, side // 2)
            context.close()
        browser.close()
    return out
