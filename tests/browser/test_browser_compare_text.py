"""Side by side on /text (/text?compare=1) in headless Chromium: B − A checked against the API's float32 maps,
the synchronised hover, linked selection, exports, and the value-weighted toggle (Kobayashi et al. 2020) on
both panels. The vision side by side and the CSP check are in test_browser_compare.py, whose app
(``compare_settings``) these tests share."""

from __future__ import annotations

import numpy as np
import pytest

from app.serialization import decode_typed_array
from tests.browser.pages import js_errors, poll
from tests.browser.test_browser_compare import TIMEOUT, XSS, compare_settings, params
from tests.factories import ARTIFACTS

pytestmark = pytest.mark.browser


@pytest.fixture
def base_url(tmp_path, live_server) -> str:
    return live_server(compare_settings(tmp_path))


def text_head(page, base_url: str, text: str, model: str, kind: str, layer: int, head: int) -> np.ndarray:
    r = page.request.post(f"{base_url}/api/text/analyze", data={"text": text, "model": model})
    assert r.ok, r.text()
    aid = r.json()["analysis_id"]
    h = page.request.get(f"{base_url}/api/text/analysis/{aid}/head?kind={kind}&layer={layer}&head={head}")
    assert h.ok, h.text()
    return decode_typed_array(h.json()["data"])


def test_text_side_by_side(base_url, page) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{base_url}/text")
    page.wait_for_selector("#tx-summary b", timeout=TIMEOUT)
    assert page.locator("#tx-compare").is_hidden()
    page.click("#tx-compare-link")
    page.wait_for_url("**compare=1**")
    page.wait_for_selector('#cmpt-diff[data-state="ready"]', timeout=TIMEOUT)
    assert page.locator("#tx-form").is_hidden() and page.locator(".tx-main").is_hidden()
    p = params(page)
    assert (p["a.head"], p["b.head"], p["a.model"], p["b.model"]) == ("1", "2", "tiny-bert", "tiny-bert")

    # B − A = head 2 − head 1 of layer 1, checked against the API's float32 maps
    text = p["a.text"]
    a = text_head(page, base_url, text, "tiny-bert", "encoder_self", 0, 0)
    b = text_head(page, base_url, text, "tiny-bert", "encoder_self", 0, 1)
    absmax = float(page.eval_on_selector("#cmpt-diff-plot", "d => d.dataset.absmax"))
    assert absmax == pytest.approx(float(np.abs(b - a).max()), rel=1e-6)
    z = page.evaluate("() => document.getElementById('cmpt-diff-plot').data[0].z")
    got = np.array(z, dtype=np.float64)
    np.testing.assert_allclose(
        got, (b - a).astype(np.float64), rtol=0, atol=1e-7
    )  # float32 rounding x margin
    np.testing.assert_allclose(got.sum(axis=1), 0, atol=1e-5)  # rows of A and B sum to 1
    assert "centred at 0" in page.text_content("#cmpt-diff-caption")

    # synchronised hover: the cell under the pointer in A is shown in B and in the difference
    box = page.locator("#cmpt-a-plot .nsewdrag").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    for other in ("#cmpt-b-plot", "#cmpt-diff-plot"):
        page.wait_for_selector(f"{other} .hoverlayer .hovertext", timeout=10_000)
    page.mouse.move(0, 0)

    # link: layer and head move together
    page.check("#cmpt-link")
    page.select_option("#cmpt-a [data-role=layer]", "3")
    page.wait_for_function("new URLSearchParams(location.search).get('b.layer') === '3'")
    assert params(page)["b.head"] == params(page)["a.head"]
    page.wait_for_selector('#cmpt-diff[data-state="ready"]')
    assert "exactly 0" in page.text_content("#cmpt-diff-caption")  # same model, text, layer and head
    page.screenshot(path=str(ARTIFACTS / "compare_text.png"), full_page=True)

    # two inputs: B gets other text (literal, never HTML); tokens differ, so no difference matrix
    page.fill("#cmpt-b [data-role=text]", f"Dogs bark {XSS}")
    page.click("#cmpt-b [data-role=run]")
    page.wait_for_selector("#cmpt-diff-caption:has-text('No difference matrix')", timeout=TIMEOUT)
    assert page.locator("#cmpt-b img[src=x]").count() == 0 and dialogs == []
    hover = page.eval_on_selector("#cmpt-b-plot", "d => d.data[0].text.flat().join(' ')")
    assert "&lt;" in hover and "<" not in hover  # plotly reads hover text as HTML: the tokens go in escaped

    # a causal model in B: masked cells stay masked, the permalink restores everything
    page.select_option("#cmpt-b [data-role=model]", "tiny-gpt2")
    page.wait_for_function("new URLSearchParams(location.search).get('b.model') === 'tiny-gpt2'")
    page.wait_for_function("document.querySelector('#cmpt-b').dataset.state === 'ready'")
    url = page.url
    page.goto(url)
    page.wait_for_selector('#cmpt-b[data-state="ready"]', timeout=TIMEOUT)
    assert page.eval_on_selector("#cmpt-b [data-role=model]", "s => s.value") == "tiny-gpt2"
    assert page.eval_on_selector("#cmpt-b [data-role=text]", "t => t.value") == f"Dogs bark {XSS}"
    assert page.is_checked("#cmpt-link")
    z = page.evaluate("() => document.getElementById('cmpt-b-plot').data[0].z")
    assert z[0][1] is None and z[1][0] is not None  # query 1 cannot see key 2

    # back to the single view with panel A's state
    page.click("#tx-compare-link")
    page.wait_for_selector("#tx-summary b", timeout=TIMEOUT)
    p = params(page)
    assert "compare" not in p and p["layer"] == "3" and p["view"] == "matrix"
    assert page.locator("#tx-compare").is_hidden() and page.locator(".tx-main").is_visible()
    assert js_errors(page) == []


def text_norms(page, base_url: str, text: str, model: str) -> np.ndarray:
    """(L, H, n_key) value norms ‖f_h(x_j)‖ of the encoder self-attention, from the API."""
    r = page.request.post(f"{base_url}/api/text/analyze", data={"text": text, "model": model})
    aid = r.json()["analysis_id"]
    v = page.request.get(f"{base_url}/api/text/analysis/{aid}/value_norms")
    assert v.ok, v.text()
    block = next(b for b in v.json()["blocks"] if b["kind"] == "encoder_self")
    return decode_typed_array(block["norms"])


def test_text_side_by_side_value_weighted(base_url, page) -> None:
    """The value-weighted toggle on /text?compare=1: both panels draw α·‖f_h(x_j)‖ renormalised per row
    (checked against the API's float32 heads and norms), B − A is the difference of the weighted maps, the
    permalink keeps it, and "merge word pieces" turns it off as on the single view."""
    page.goto(f"{base_url}/text?compare=1&a.layer=2&a.head=2&b.layer=2&b.head=3")
    page.wait_for_selector('#cmpt-diff[data-state="ready"]', timeout=TIMEOUT)
    text = params(page)["a.text"]
    page.check("#cmpt-vw")
    for side in ("a", "b"):
        poll(
            page,
            f"() => document.querySelector('#cmpt-{side}-plot .gtitle')?.textContent.includes('value-weighted')",
            side,
        )
    page.wait_for_selector('#cmpt-diff[data-state="ready"]', timeout=TIMEOUT)
    assert params(page)["vw"] == "1"
    norms = text_norms(page, base_url, text, "tiny-bert")  # (L, H, n)
    weighted = {}
    for side, head in (("a", 1), ("b", 2)):
        raw = text_head(page, base_url, text, "tiny-bert", "encoder_self", 1, head).astype(np.float64)
        expect = raw * norms[1, head][None, :]
        expect /= expect.sum(-1, keepdims=True)
        got = np.array(
            page.evaluate(f"() => document.getElementById('cmpt-{side}-plot').data[0].z"), dtype=float
        )
        np.testing.assert_allclose(got, expect, rtol=0, atol=1e-6)  # float32 rounding x margin
        assert not np.allclose(got, raw, atol=1e-4)
        weighted[side] = got
        caption = page.text_content(f"#cmpt-{side}-vw")
        assert "Kobayashi" in caption and "renormalised" in caption
    diff = np.array(page.evaluate("() => document.getElementById('cmpt-diff-plot').data[0].z"), dtype=float)
    np.testing.assert_allclose(diff, weighted["b"] - weighted["a"], rtol=0, atol=1e-6)
    assert "Both panels are value-weighted" in page.text_content("#cmpt-diff-caption")

    page.check("#cmpt-merge")  # one column per word: no norms per column, the toggle is off and disabled
    poll(page, "() => document.querySelector('#cmpt-vw').disabled", "the disabled toggle")
    page.wait_for_selector('#cmpt-a-plot[data-state="ready"]', timeout=TIMEOUT)
    poll(
        page,
        "() => !document.querySelector('#cmpt-a-plot .gtitle')?.textContent.includes('value-weighted')",
        "raw A",
    )
    assert page.locator("#cmpt-a-vw").is_hidden()
    page.screenshot(path=str(ARTIFACTS / "compare_text_value_weighted.png"), full_page=True)
    assert js_errors(page) == []
