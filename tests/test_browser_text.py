"""The text page in headless Chromium: type, open a layer, hover, switch to cross attention, and make sure
user text is never interpreted as HTML (no dialog, no injected element, the text shows literally)."""

from __future__ import annotations

import re

import pytest
from conftest import ARTIFACTS, tiny_settings

from app.settings import TextModelEntry

pytestmark = pytest.mark.browser
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def base_url(live_server, tmp_path):
    entries = [
        TextModelEntry(
            id="tiny-bert",
            kind="encoder",
            source="random",
            name="bert",
            label="Tiny BERT 4L",
            config={"num_hidden_layers": 4},
        ),  # fmt: skip
        TextModelEntry(
            id="tiny-dates", kind="seq2seq", source="random", name="dates", label="Tiny dates", max_tokens=128
        ),
        TextModelEntry(id="tiny-gpt2", kind="causal", source="random", name="gpt2", label="Tiny GPT-2"),
    ]
    settings = tiny_settings(
        tmp_path, text_models=entries, default_text_model="tiny-bert", default_seq2seq_model="tiny-dates"
    )
    return live_server(settings)


def js_errors(page) -> list[str]:
    return [e for e in page.js_errors if "Failed to load resource" not in e]


def analyse(page, text: str) -> None:
    page.fill("#tx-text", text)
    with page.expect_response(lambda r: r.url.endswith("/api/text/analyze")):
        page.press("#tx-text", "Enter")
    page.wait_for_function("!document.querySelector('#tx-run').disabled")


def test_text_page_end_to_end(page, base_url):
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{base_url}/text")
    page.wait_for_selector("#tx-summary b")

    # type a sentence
    analyse(page, "The quick brown fox jumps over the lazy dog.")
    page.wait_for_selector(".tx-col-q .tx-tok >> text=fox")
    assert page.locator(".tx-chip").count() == 4

    # open layer 3
    page.select_option("#tx-layer", "3")
    page.wait_for_selector(".tx-hv-legend >> text=layer 3")
    assert "layer=3" in page.url and "fox" in page.url

    # hover a token: its own row is highlighted, the keys it attends to get shaded
    page.hover(".tx-col-q .tx-tok >> text=fox")
    assert page.eval_on_selector(".tx-col-q .tx-tok >> text=fox", "n => n.style.background") != ""
    shaded = page.eval_on_selector_all(".tx-col-k .tx-tok", "ns => ns.filter(n => n.style.background).length")
    assert shaded > 3

    # the model view is one canvas; clicking a cell opens that head in the matrix view
    page.click(".tx-tabs [data-view=model]")
    canvas = page.wait_for_selector(".tx-mv-canvas")
    assert page.locator("#tx-pane-model canvas").count() == 1
    box = canvas.bounding_box()
    canvas.click(position={"x": 56 + 10, "y": 22 + 10})  # layer 0, head 0
    page.wait_for_selector("#tx-matrix-plot .main-svg")
    assert re.search(r"view=matrix", page.url) and "layer=0" in page.url and box["width"] > 300

    # switch to the encoder-decoder model and to cross attention
    page.click(".tx-tabs [data-view=head]")
    with page.expect_response(lambda r: r.url.endswith("/api/text/analyze")):
        page.select_option("#tx-model", "tiny-dates")
    page.wait_for_selector("#tx-kind button[data-kind=cross]")
    page.click("#tx-kind button[data-kind=cross]")
    page.wait_for_selector(".tx-hv-legend >> text=Cross (encoder–decoder) attention")
    assert page.get_attribute("#tx-kind button[data-kind=cross]", "aria-pressed") == "true"
    assert "kind=cross" in page.url and "model=tiny-dates" in page.url
    assert not page.is_hidden("#tx-target")
    # masked decoder self-attention: the future cells are empty (null) in the matrix
    page.click("#tx-kind button[data-kind=decoder_self]")
    page.click(".tx-tabs [data-view=matrix]")
    page.wait_for_selector("#tx-matrix-plot .main-svg")
    z = page.evaluate("document.getElementById('tx-matrix-plot').data[0].z")
    assert z[0][1] is None and z[1][0] is not None and z[-1][-1] is not None
    page.screenshot(path=str(ARTIFACTS / "text_decoder_matrix.png"))

    # user text that looks like HTML stays text: on the causal model, in the head view and the matrix
    with page.expect_response(lambda r: r.url.endswith("/api/text/analyze")):
        page.select_option("#tx-model", "tiny-gpt2")
    page.click(".tx-tabs [data-view=head]")
    analyse(page, XSS)
    page.wait_for_selector(".tx-col-q .tx-tok")
    shown = page.eval_on_selector_all(".tx-col-q .tx-tok", "ns => ns.map(n => n.textContent).join('')")
    assert shown.replace("Ġ", " ") == XSS
    page.click(".tx-tabs [data-view=matrix]")
    page.wait_for_selector("#tx-matrix-plot .main-svg")
    ticks = page.eval_on_selector_all(
        "#tx-matrix-plot .xtick text", "ns => ns.map(n => n.textContent).join('')"
    )
    assert ticks.replace("Ġ", " ") == XSS
    page.hover("#tx-matrix-plot .nsewdrag", position={"x": 5, "y": 5})
    page.wait_for_timeout(300)
    assert page.evaluate("document.querySelectorAll('main img, .hoverlayer img, svg img').length") == 0
    assert page.input_value("#tx-text") == XSS
    page.wait_for_timeout(300)
    assert dialogs == []
    page.screenshot(path=str(ARTIFACTS / "text_xss.png"))
    assert js_errors(page) == []


def test_text_page_shows_server_errors_as_text(page, base_url):
    page.goto(f"{base_url}/text")
    page.wait_for_selector("#tx-summary b")
    analyse(page, "   ")
    assert "empty" in page.text_content("#tx-error")
    long = "a " * 600
    page.evaluate(
        "t => { const x = document.getElementById('tx-text'); x.maxLength = 100000; x.value = t; }", long
    )
    with page.expect_response(lambda r: r.url.endswith("/api/text/analyze")):
        page.press("#tx-text", "Enter")
    page.wait_for_function("document.getElementById('tx-error').textContent.includes('512')")
    assert "at most 512 tokens" in page.text_content("#tx-error")
