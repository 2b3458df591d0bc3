"""Side by side (issue 8, section 5) in headless Chromium: /vision?compare=1 and /text?compare=1.

Two panels from the existing API, linked selection, a shared query patch, the difference B − A where the grids
(vision) or tokens (text) match, checked against the API's own numbers; the permalink restores the state; the
single view is unchanged when compare is off; and both compare pages run under the real CSP. The /text side by
side's own tests are in test_browser_compare_text.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.serialization import decode_typed_array
from tests.browser.pages import RECORD_VIOLATIONS, js_errors, poll
from tests.browser.test_browser_vision import TINY_NOHEAD, TINY_VIT12, fnv1a
from tests.factories import ARTIFACTS, page_text_settings, tiny_settings

pytestmark = pytest.mark.browser
TIMEOUT = 60_000
DIFF = "#cmp-diff-canvas"
XSS = "<img src=x onerror=alert(1)>"


def compare_settings(tmp_path):
    """Vision: a 12-layer tiny ViT (8 x 8 patches, default) and a 2-layer one without [CLS] (4 x 4 patches).
    Text: a 4-layer tiny BERT (default), the tiny date model and a tiny GPT-2."""
    s = tiny_settings(tmp_path)
    return tiny_settings(
        tmp_path,
        vision_models=[TINY_VIT12, TINY_NOHEAD, *s.models.vision_models],
        default_vision_model=TINY_VIT12.id,
        **page_text_settings(),
        preload=False,
    )


@pytest.fixture
def base_url(tmp_path, live_server) -> str:
    """The app of :func:`compare_settings` (also test_browser_compare_text.py's)."""
    return live_server(compare_settings(tmp_path))


def params(page) -> dict[str, str]:
    return page.evaluate("() => Object.fromEntries(new URLSearchParams(location.search))")


def wait_panels(page) -> None:
    for side in ("a", "b"):
        page.wait_for_selector(
            f'#cmp-{side}[data-state="ready"] .vz-overlay-canvas[data-state="ready"]', timeout=TIMEOUT
        )


def canvas_data(page, sel: str) -> dict:
    return page.eval_on_selector(sel, "c => ({...c.dataset})")


def vision_cls(page, base_url: str, model: str, sample: str = "astronaut") -> np.ndarray:
    """(L, H, P) [CLS] attention of (sample, model), as the API gives it (a cached analysis: no new forward)."""
    r = page.request.post(f"{base_url}/api/vision/analyze", multipart={"sample": sample, "model": model})
    assert r.ok, r.text()
    return decode_typed_array(r.json()["cls_attention"])


# ---------------------------------------------------------------------------------------------------- vision


def test_vision_side_by_side(base_url, page) -> None:
    page.goto(f"{base_url}/vision?view=head")  # the head view (the page itself opens on the mean of heads)
    page.wait_for_selector('.vz-overlay-canvas[data-state="ready"]', timeout=TIMEOUT)
    page.click('[data-sample="astronaut"]')
    page.wait_for_function("new URLSearchParams(location.search).get('sample') === 'astronaut'")
    page.wait_for_selector('.vz-overlay-canvas[data-state="ready"]', timeout=TIMEOUT)
    assert page.locator("#vz-compare").is_hidden()  # compare off: the single view as before
    page.click("#vz-compare-link")
    page.wait_for_url("**compare=1**")
    wait_panels(page)
    p = params(page)
    # B starts as A's model, image and resolution with the next head, unlinked (test_browser_vision_first.py)
    assert (p["a.model"], p["b.model"], p["a.sample"], p["b.sample"]) == (
        TINY_VIT12.id, TINY_VIT12.id, "astronaut", "astronaut",
    )  # fmt: skip
    assert (p["a.head"], p["b.head"], p["link"]) == ("1", "2", "0") and p["a.res"] == p["b.res"]
    page.wait_for_selector(f'{DIFF}[data-state="ready"]', timeout=TIMEOUT)
    assert page.locator("#vz-main").is_hidden() and page.locator(".vz-input").is_hidden()
    # another model in B: 8 x 8 against 4 x 4 patches: no difference map, and the page says why
    page.select_option("#cmp-b [data-role=model]", TINY_NOHEAD.id)
    page.wait_for_selector("#cmp-diff-caption:has-text('No difference map')", timeout=TIMEOUT)
    assert "8×8" in page.text_content("#cmp-diff-caption") and "4×4" in page.text_content("#cmp-diff-caption")
    assert "same grid of rows × columns" in page.text_content("#cmp-diff-caption")
    href = page.get_attribute("#cmp-distance", "href")
    assert href.startswith("/distance?analysis=") and f"{TINY_NOHEAD.id}~samples~0" in href.replace(
        "%7E", "~"
    )

    # two heads of one model: unlink, B = same model, layer 3 (linked), head 2 vs head 1
    page.uncheck("#cmp-link")
    page.select_option("#cmp-b [data-role=model]", TINY_VIT12.id)
    page.wait_for_selector('#cmp-diff[data-state="ready"]', timeout=TIMEOUT)
    page.check("#cmp-link")
    page.select_option("#cmp-a [data-role=layer]", "3")
    page.wait_for_function("new URLSearchParams(location.search).get('b.layer') === '3'")
    page.uncheck("#cmp-link")
    page.select_option("#cmp-b [data-role=head]", "2")
    page.wait_for_function("new URLSearchParams(location.search).get('b.head') === '2'")
    page.wait_for_function(
        "document.querySelector('#cmp-b .vz-overlay-canvas').dataset.head === '1'"
        f" && document.querySelector('{DIFF}').dataset.state === 'ready'"
    )
    cls = vision_cls(page, base_url, TINY_VIT12.id)  # (L, H, P)
    expected = cls[2, 1] - cls[2, 0]  # B − A in float32, as the page computes it
    page.wait_for_function(f"document.querySelector('{DIFF}').dataset.checksum === '{fnv1a(expected)}'")
    d = canvas_data(page, DIFF)
    assert float(d["absmax"]) == pytest.approx(float(np.abs(expected).max()), rel=1e-6)
    caption = page.text_content("#cmp-diff-caption")
    assert "centred at 0" in caption and "B larger" in caption

    # one query patch for both panels: click row 2, col 3 of A; both panels probe that patch, the URL keeps it
    box = page.locator("#cmp-a .vz-overlay-canvas").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 2.5 / 8, box["y"] + box["height"] * 1.5 / 8)
    page.wait_for_function("new URLSearchParams(location.search).get('qrow') === '2'")
    assert (params(page)["qrow"], params(page)["qcol"]) == ("2", "3")
    page.wait_for_function(
        "['a', 'b'].every((s) => document.querySelector(`#cmp-${s} .vz-overlay-canvas`).dataset.query === '10')"
    )
    page.wait_for_selector(f'{DIFF}[data-state="ready"]')
    page.screenshot(path=str(ARTIFACTS / "compare_vision.png"), full_page=True)

    # the permalink restores both panels, the query and the difference
    url, checksum = page.url, canvas_data(page, DIFF)["checksum"]
    page.goto(url)
    wait_panels(page)
    page.wait_for_selector(f'{DIFF}[data-state="ready"]', timeout=TIMEOUT)
    assert page.eval_on_selector("#cmp-b [data-role=head]", "s => s.value") == "2"
    assert page.eval_on_selector("#cmp-a [data-role=layer]", "s => s.value") == "3"
    assert canvas_data(page, "#cmp-a .vz-overlay-canvas")["query"] == "10"
    assert canvas_data(page, DIFF)["checksum"] == checksum

    # CSV of the difference: 1-based patches, A, B and B − A
    with page.expect_download() as dl:
        page.click("#cmp-diff-export [data-export=csv]")
    lines = Path(dl.value.path()).read_text().splitlines()
    assert lines[0] == "patch,row,col,A,B,B_minus_A" and lines[1].startswith("1,1,1,")
    assert len(lines) == 1 + 64

    # back to the single view with panel A's state
    page.click("#vz-compare-link")
    page.wait_for_selector('.vz-overlay-canvas[data-state="ready"]', timeout=TIMEOUT)
    p = params(page)
    assert "compare" not in p and p["layer"] == "3" and p["model"] == TINY_VIT12.id
    assert page.locator("#vz-compare").is_hidden() and page.locator("#vz-main").is_visible()
    assert js_errors(page) == []


def vision_rollout(page, base_url: str, model: str, sample: str = "astronaut") -> np.ndarray:
    """(P,) rollout (mean fusion, nothing discarded) of (sample, model), as the API gives it."""
    r = page.request.post(f"{base_url}/api/vision/analyze", multipart={"sample": sample, "model": model})
    assert r.ok, r.text()
    return decode_typed_array(r.json()["rollout"])


def renormalised(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """B-hat - A-hat in float64, each map divided by its sum over the patches, summed in patch order as the page does."""
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    sa = sb = 0.0
    for x, y in zip(a64, b64, strict=True):
        sa += x
        sb += y
    return b64 / sb - a64 / sa


def export_json(page) -> dict:
    with page.expect_download() as dl:
        page.click("#cmp-diff-export [data-export=json]")
    return json.loads(Path(dl.value.path()).read_text())


def test_vision_difference_across_models(base_url, page) -> None:
    """Two different models on one 4 x 4 grid: no head difference; rollout compared as B-hat - A-hat over the patches."""
    a_id, b_id = "tiny_vit", TINY_NOHEAD.id  # 3 layers x 4 heads with [CLS]; 2 layers x 2 heads without
    page.goto(
        f"{base_url}/vision?compare=1&link=1&a.model={a_id}&b.model={b_id}&a.sample=astronaut&b.sample=astronaut"
    )
    wait_panels(page)
    page.wait_for_selector(
        "#cmp-diff-caption:has-text('only the head mean and rollout compare')", timeout=TIMEOUT
    )
    caption = page.text_content("#cmp-diff-caption")
    assert "Head 1 of one model has nothing to do with head 1 of the other" in caption
    assert page.get_attribute("#cmp-diff", "data-state") == "none"  # not drawn
    assert page.locator("#cmp-diff-export [data-export]").count() == 0

    # rollout on both (linked): B-hat - A-hat, each map renormalised over its 16 patches
    page.click('#cmp-a [data-view="rollout"]')
    page.wait_for_selector(f'{DIFF}[data-state="ready"][data-normalisation="patches"]', timeout=TIMEOUT)
    caption = page.text_content("#cmp-diff-caption")
    assert (
        caption.startswith("A and B are different models")
        and "only the head mean and rollout compare" in caption
    )
    assert "renormalised over its 4×4 patches" in caption
    assert page.is_checked("#cmp-renorm") and page.is_disabled("#cmp-renorm")
    panel_a = page.text_content("#cmp-a .vz-caption")
    assert (
        "the weakest 0% of the patch-to-patch entries discarded" in panel_a
        and "rollout's estimate" in panel_a
    )
    ra, rb = vision_rollout(page, base_url, a_id), vision_rollout(page, base_url, b_id)
    assert ra.sum() < 1 - 1e-3 and rb.sum() == pytest.approx(
        1, abs=1e-5
    )  # [CLS] keeps some mass; no prefix in B
    expected = renormalised(ra, rb)
    page.wait_for_function(
        f"document.querySelector('{DIFF}').dataset.checksum === '{fnv1a(expected.astype(np.float32))}'"
    )
    # the export: the panels' own values, the normalisation named, and d recomputed from those values
    data = export_json(page)
    assert data["meta"]["normalisation"] == "each map divided by its sum over the patches"
    assert data["header"] == ["patch", "row", "col", "A", "B", "A_hat", "B_hat", "B_hat_minus_A_hat"]
    rows = np.array([r[3:] for r in data["rows"]], dtype=np.float64)
    np.testing.assert_array_equal(rows[:, 0], ra.astype(np.float64))  # A as panel A shows it, bit for bit
    np.testing.assert_array_equal(rows[:, 1], rb.astype(np.float64))
    d, ref = rows[:, 4], renormalised(rows[:, 0], rows[:, 1])
    assert abs(d.sum()) < 1e-6  # the shares of both maps sum to 1
    margin = 4  # d is stored in float32: one rounding of each share and one of the difference, bounded x 4
    np.testing.assert_allclose(d, ref, rtol=0, atol=margin * 2.0**-24 * float(np.abs(rows[:, 2:4]).max()))
    np.testing.assert_allclose(d, rows[:, 3] - rows[:, 2], rtol=0, atol=margin * 2.0**-24)
    assert data["meta"]["A"]["patch_sum"] == pytest.approx(float(ra.astype(np.float64).sum()), rel=1e-12)

    # one model: raw B - A by default, renormalised on request (and in the permalink)
    page.select_option("#cmp-b [data-role=model]", a_id)
    page.wait_for_selector(f'{DIFF}[data-state="ready"][data-normalisation="none"]', timeout=TIMEOUT)
    assert not page.is_checked("#cmp-renorm") and not page.is_disabled("#cmp-renorm")
    page.uncheck("#cmp-link")
    page.click('#cmp-b [data-view="mean"]')
    page.wait_for_function("document.querySelector('#cmp-b .vz-overlay-canvas').dataset.head === 'mean'")
    page.wait_for_selector(f'{DIFF}[data-state="ready"][data-normalisation="none"]', timeout=TIMEOUT)
    raw = export_json(page)
    assert raw["meta"]["normalisation"].startswith("none") and raw["header"][-1] == "B_minus_A"
    va, vb = (np.array([r[i] for r in raw["rows"]], dtype=np.float32) for i in (3, 4))
    assert page.get_attribute(DIFF, "data-checksum") == fnv1a(vb - va)
    page.check("#cmp-renorm")
    page.wait_for_selector(f'{DIFF}[data-normalisation="patches"]', timeout=TIMEOUT)
    assert params(page).get("renorm") == "1"
    assert page.get_attribute(DIFF, "data-checksum") == fnv1a(renormalised(va, vb).astype(np.float32))
    assert page.text_content("#cmp-diff-caption").startswith("Shown: B\u0302 \u2212 \u00c2")
    assert js_errors(page) == []


# -------------------------------------------------------------------------------------------------------- CSP


def test_compare_pages_under_the_real_csp(base_url, browser) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script(RECORD_VIOLATIONS)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    pg.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text}"))
    try:
        pg.goto(f"{base_url}/vision?compare=1&a.sample=astronaut&b.sample=astronaut&b.model={TINY_VIT12.id}")
        pg.wait_for_selector(f'{DIFF}[data-state="ready"]', timeout=TIMEOUT)
        pg.goto(f"{base_url}/text?compare=1&b.head=2")
        pg.wait_for_selector('#cmpt-diff[data-state="ready"]', timeout=TIMEOUT)
        poll(pg, "() => document.getElementById('cmpt-diff-plot').querySelector('.main-svg')", "the plot")
        assert pg.evaluate("() => window.__csp") == []
        assert [e for e in errors if "Failed to load resource" not in e] == []
    finally:
        context.close()
