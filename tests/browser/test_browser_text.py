"""The text page in headless Chromium: type, open a layer, hover, switch to cross attention, and make sure
user text is never interpreted as HTML (no dialog, no injected element, the text shows literally)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.browser.pages import js_errors
from tests.factories import ARTIFACTS, page_text_settings, tiny_settings

pytestmark = pytest.mark.browser
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def base_url(live_server, tmp_path):
    settings = tiny_settings(tmp_path, **page_text_settings())
    return live_server(settings)


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
    # layers and heads are numbered from 1 on screen (as on the vision page): chips, dropdowns, head table
    assert page.eval_on_selector_all(".tx-chip", "ns => ns.map(n => n.textContent)") == ["1", "2", "3", "4"]
    layer_labels = page.eval_on_selector_all("#tx-layer option", "ns => ns.map(n => n.textContent)")
    assert layer_labels == ["layer 1", "layer 2", "layer 3", "layer 4"]
    head_labels = page.eval_on_selector_all("#tx-head option", "ns => ns.map(n => n.textContent)")
    assert head_labels == ["mean of heads", "head 1", "head 2", "head 3", "head 4"]
    table_labels = page.eval_on_selector_all(
        "#tx-table tbody td:first-child", "ns => ns.map(n => n.textContent)"
    )
    assert (
        table_labels[:2] == ["L1 · H1", "L1 · H2"]
        and table_labels[4] == "L1 · mean"
        and len(table_labels) == 4 * 5
    )
    assert "layer=1" in page.url and "head=1" in page.url
    # every column of the head table fits its 530 px panel at 1280 px wide, "pos. score", "null", "excess" included
    fit = page.eval_on_selector("#tx-table", "n => [n.scrollWidth, n.clientWidth]")
    assert fit[0] <= fit[1], f"the head table is {fit[0]} px wide in a {fit[1]} px box"
    assert "pos. score" in page.inner_text("#tx-table thead")
    assert "null" in page.inner_text("#tx-table thead") and "excess" in page.inner_text("#tx-table thead")

    # open layer 3 (1-based: the third of the 4 layers; the API gets index 2)
    page.select_option("#tx-layer", "3")
    page.wait_for_selector(".tx-hv-legend >> text=layer 3")
    assert "layer=3" in page.url and "fox" in page.url
    assert page.eval_on_selector("#tx-layer", "s => s.selectedOptions[0].textContent") == "layer 3"

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
    canvas.click(position={"x": 56 + 10, "y": 22 + 10})  # the first cell: layer 1, head 1
    page.wait_for_selector("#tx-matrix-plot .main-svg")
    assert re.search(r"view=matrix", page.url) and box["width"] > 300
    assert "layer=1" in page.url and "head=1" in page.url
    title = page.evaluate("document.getElementById('tx-matrix-plot').layout.title.text")
    assert title == "Encoder self-attention · layer 1 · head 1"

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


def test_text_page_url_counts_layers_and_heads_from_one(page, base_url):
    """?layer=3&head=2 is the third layer and second head on screen and index 2 / 1 in the API; old links
    with layer=0 / head=0 open layer 1 / head 1."""
    bodies: list[dict] = []
    page.on(
        "request", lambda r: bodies.append(r.post_data_json) if r.url.endswith("/api/text/analyze") else None
    )
    page.goto(f"{base_url}/text?text=one%20two%20three&layer=3&head=2&view=matrix")
    page.wait_for_selector("#tx-matrix-plot .main-svg")
    assert bodies[-1]["layer"] == 2
    title = page.evaluate("document.getElementById('tx-matrix-plot').layout.title.text")
    assert title == "Encoder self-attention · layer 3 · head 2"
    assert page.input_value("#tx-layer") == "3" and page.input_value("#tx-head") == "2"
    assert page.eval_on_selector("#tx-table tr.selected td", "n => n.textContent") == "L3 · H2"
    selected = page.eval_on_selector("#tx-table tr.selected", "n => n.dataset.layer + '/' + n.dataset.head")
    assert selected == "2/1"  # data attributes keep the API's indices
    # exports name and label layers / heads as the screen does
    with page.expect_download() as dl:
        page.click("#tx-export [data-export=json]")
    assert dl.value.suggested_filename == "attention_encoder_self_layer3_head2.json"
    meta = json.loads(Path(dl.value.path()).read_text())["meta"]
    assert (meta["layer"], meta["head"]) == (3, 2) and "1-based" in meta["numbering"]
    with page.expect_download() as dl:
        page.click("#tx-table-export [data-export=csv]")
    csv = Path(dl.value.path()).read_text().splitlines()
    assert csv[0].startswith("kind,layer,head,") and csv[1].startswith("encoder_self,1,1,")
    assert csv[5].startswith("encoder_self,1,mean,") and csv[-1].startswith("encoder_self,4,mean,")

    page.goto(f"{base_url}/text?text=one%20two%20three&layer=0&head=0&view=matrix")
    page.wait_for_selector("#tx-matrix-plot .main-svg")
    assert bodies[-1]["layer"] == 0
    assert page.input_value("#tx-layer") == "1" and page.input_value("#tx-head") == "1"
    assert "layer=1" in page.url and "head=1" in page.url
    page.select_option("#tx-head", "mean")
    page.wait_for_function(
        "document.getElementById('tx-matrix-plot')?.layout?.title.text === "
        "'Encoder self-attention · layer 1 · mean of heads'"
    )
    assert "head=mean" in page.url
    assert js_errors(page) == []


def test_csv_exports_neutralise_formulas_and_count_tokens_from_one(page, base_url):
    """A token such as "=1+1" is exported as the text '=1+1 (a spreadsheet shows it, never runs it); the
    weights stay plain numbers, and token indexes count from 1 as on screen (OWASP CSV injection)."""
    import csv
    import io

    page.goto(f"{base_url}/text")
    page.wait_for_selector("#tx-summary b")
    analyse(page, "=1+1 @SUM(A1) -2 +x")
    page.wait_for_selector(".tx-col-q .tx-tok")
    labels = page.eval_on_selector_all(".tx-col-q .tx-tok", "ns => ns.map(n => n.textContent)")
    risky = [t for t in labels if t[:1] in "=+-@"]
    assert risky, labels  # the tokenizer kept some tokens that start like a formula
    with page.expect_download() as dl:
        page.click("#tx-export [data-export=csv]")
    rows = list(csv.reader(io.StringIO(Path(dl.value.path()).read_text())))
    header, body = rows[0], rows[1:]
    assert header == ["kind", "layer", "head", "query_index", "query", "key_index", "key", "weight"]
    queries = {int(r[3]): r[4] for r in body}
    assert sorted(queries) == list(range(1, len(labels) + 1))  # 1-based, as on screen
    for i, token in enumerate(labels, start=1):
        expected = "'" + token if token[:1] in "=+-@" else token
        assert queries[i] == expected, (i, token, queries[i])
    assert all(0.0 <= float(r[7]) <= 1.0 for r in body)  # numbers are numbers, never quoted

    # the rule itself: string cells only; a negative number is a number
    out = page.evaluate(
        """async () => {
        const { toCSV } = await import('/static/js/lib/export.js');
        return toCSV(['label', 'value'], [['=1+1', -0.5], ['-0.5', 2], ['\\tx', '@a'], ['a,b', '+1'], ['plain', null]]);
    }"""
    )
    assert out.splitlines() == ["label,value", "'=1+1,-0.5", "'-0.5,2", "'\tx,'@a", '"a,b",\'+1', "plain,"]
    assert js_errors(page) == []
