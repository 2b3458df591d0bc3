"""The neuron view in headless Chromium under the app's real Content-Security-Policy: open it from a
permalink, pick another query token, hover a cell, open a decoder's masked self-attention, and check the
page says the recomputed softmax matches the model's own probabilities. Screenshots go to tests/artifacts."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.browser.pages import poll
from tests.factories import ARTIFACTS

pytestmark = pytest.mark.browser
TIMEOUT = 60_000


def title(page) -> str:
    return page.evaluate("() => document.querySelector('.nv-title')?.textContent || ''")


def painted(page) -> bool:
    return page.evaluate(
        """() => { const c = document.querySelector('#nv-canvas'); if (!c || !c.width) return false;
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
        for (let i = 0; i < d.length; i += 4) if (d[i] !== 255 || d[i + 1] !== 255 || d[i + 2] !== 255) n++;
        return n > 500; }"""
    )


def test_neuron_view_encoder_from_permalink(strict_page, base_url):
    page = strict_page
    text = quote("The quick brown fox jumps over the lazy dog.")
    page.goto(f"{base_url}/text?model=tiny-bert&text={text}&view=neuron&layer=2&head=3&q=4")
    page.wait_for_selector("#nv-canvas", timeout=TIMEOUT)
    poll(page, "() => document.querySelector('.nv-title')?.textContent.includes('query 4')", "the title")
    assert "layer 2 · head 3 · query 4" in title(page)
    assert painted(page)
    # the chart comes first: one sentence above it, the rest (two paragraphs, the check) behind "More"
    assert "Section 3.2.1" in page.locator(".nv-intro").inner_text()
    order = page.evaluate(
        "() => [...document.querySelectorAll('#tx-pane-neuron .nv-intro, #nv-canvas, #tx-pane-neuron details.more')]"
        ".map(n => n.id || n.className)"
    )
    assert order == ["small nv-intro", "nv-canvas", "more"], order
    assert not page.locator(".nv-lead").first.is_visible()
    page.click("#tx-pane-neuron details.more > summary")
    assert page.locator(".nv-check.ok").count() == 1, page.locator(".nv-check").inner_text()
    assert "Section 3.2.1" in page.locator(".nv-lead").first.inner_text()
    # the model's own factor is printed (tiny-bert: d_k = 8), and a factor other than 1/sqrt(d_k) says so
    lead = page.locator(".nv-lead").first.inner_text()
    assert "own factor 0.3536 = 1/√8" in lead, lead
    words = page.evaluate(
        "async () => { const m = await import('/static/js/text/neuron.js');"
        " return [m.scaleWords(0.0625, 64, 'scores'), m.scaleWords(0.125, 64, 'scores')]; }"
    )
    assert "0.0625 (not 1/√64 = 0.125" in words[0] and "0.125 = 1/√64" in words[1], words
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "text_neuron_encoder.png"), full_page=True)

    # another query token: the view and the permalink follow
    page.click(".nv-q[data-q='6']")
    poll(page, "() => document.querySelector('.nv-title')?.textContent.includes('query 6')", "query 6")
    assert "q=6" in page.url and "view=neuron" in page.url
    assert page.locator(".nv-q[aria-pressed=true]").get_attribute("data-q") == "6"

    # hover a key cell: the readout names the key, the dimension and the values
    box = page.locator("#nv-canvas").bounding_box()
    g = json.loads(page.locator("#nv-canvas").get_attribute("data-geom"))
    page.mouse.move(box["x"] + g["xk"] + g["cw"] / 2, box["y"] + g["y0"] + 2.5 * g["rh"])
    poll(page, "() => document.querySelector('.nv-readout').textContent.includes('key 3')", "the readout")
    assert "dim 1" in page.locator(".nv-readout").inner_text()

    # CSV export: one row per key, numbered from 1 as on screen
    with page.expect_download() as dl:
        page.click("#tx-export [data-export=csv]")
    lines = Path(dl.value.path()).read_text().splitlines()
    assert lines[0] == "key_index,key,allowed,q_dot_k,scaled,softmax,model_softmax,softmax_unscaled"
    assert lines[1].startswith("1,[CLS],1,") and len(lines) == 13

    # mean of heads has no q and k: the neuron view opens head 1
    page.select_option("#tx-head", "mean")
    poll(page, "() => document.querySelector('.nv-title')?.textContent.includes('head 1 ')", "head 1")
    assert page.evaluate("() => document.querySelector('#tx-head').value") == "1"

    assert page.evaluate("() => window.__csp") == []
    assert page.errors == []


def test_neuron_view_decoder_masked_self_attention(strict_page, base_url):
    page = strict_page
    text = quote("Friday, March 18th, 2022")
    page.goto(
        f"{base_url}/text?model=tiny-dates&text={text}&kind=decoder_self&view=neuron&layer=1&head=2&q=3"
    )
    page.wait_for_selector("#nv-canvas", timeout=TIMEOUT)
    poll(page, "() => document.querySelector('.nv-title')?.textContent.includes('query 3')", "the title")
    assert "masked self-attention" in title(page).lower()
    page.click("#tx-pane-neuron details.more > summary")  # the detail is behind "More"
    assert page.locator(".nv-check.ok").count() == 1, page.locator(".nv-check").inner_text()
    assert "Grey rows" in page.locator(".nv-lead").nth(1).inner_text()
    assert "divides q by √" in page.locator(".nv-lead").first.inner_text()
    assert painted(page)
    page.screenshot(path=str(ARTIFACTS / "text_neuron_decoder.png"), full_page=True)
    page.click("#tx-kind [data-kind=cross]")
    poll(page, "() => document.querySelector('.nv-title')?.textContent.startsWith('Cross')", "cross")
    assert page.locator(".nv-check.ok").count() == 1
    assert page.evaluate("() => window.__csp") == []
    assert page.errors == []
