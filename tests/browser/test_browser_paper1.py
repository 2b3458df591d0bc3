"""The paper-1 pages (/positional, /scaling, /tour) in real headless Chromium: load, interact once, and check
that the charts were redrawn from the API, that the URL is the permalink, and that exports download.
Screenshots go to tests/artifacts/."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import pytest

from tests.browser.pages import js_errors
from tests.factories import ARTIFACTS

pytestmark = pytest.mark.browser
TIMEOUT = 30_000


@pytest.fixture
def bad_responses(page) -> list[str]:
    """HTTP errors seen by the page (the browser's own favicon probe aside)."""
    bad: list[str] = []
    page.on(
        "response", lambda r: r.status >= 400 and "favicon" not in r.url and bad.append(f"{r.status} {r.url}")
    )
    return bad


def plot_data(page, div_id: str) -> list:
    """The traces plotly currently draws in a div (typed arrays made plain)."""
    return page.evaluate(
        "id => JSON.parse(JSON.stringify(document.getElementById(id).data, "
        "(k, v) => ArrayBuffer.isView(v) ? Array.from(v) : v))",
        div_id,
    )


def test_positional_page_k_changes_m_k(page, base_url, bad_responses) -> None:
    page.goto(f"{base_url}/positional?length=64&d_model=32&k=3")
    page.wait_for_selector('#pe-app[data-renders="1"]', timeout=TIMEOUT)
    assert float(page.get_attribute("#pe-app", "data-max-residual")) < 1e-12
    before = plot_data(page, "pe-mk")[0]["z"]
    assert len(before) == 12 and len(before[0]) == 12
    for div in ("pe-heat", "pe-curves", "pe-sim", "pe-farplot"):
        assert plot_data(page, div), div
    assert "max over pos = 0 … 63" in page.inner_text("#pe-mk-evidence")

    page.fill("#pe-k-range", "10")  # move the k slider
    page.wait_for_selector('#pe-app[data-k="10"]', timeout=TIMEOUT)
    after = plot_data(page, "pe-mk")[0]["z"]
    assert after != before
    assert after[0][0] == pytest.approx(math.cos(10.0), abs=1e-12)  # block 0 rotates by k * w_0 = k
    assert "k=10" in page.url and "d_model=32" in page.url and "length=64" in page.url
    assert float(page.get_attribute("#pe-app", "data-max-residual")) < 1e-12

    # learned (BERT) vs sinusoidal similarity, from the MiniLM wheel
    page.wait_for_selector('#pe-app[data-learned="512"]', timeout=TIMEOUT)
    assert len(plot_data(page, "pe-learned")[0]["z"]) == 512

    # exports: CSV of the M_k chart holds the numbers drawn; PNG is a real image
    with page.expect_download() as dl:
        page.click("#pe-mk-export button[data-export=csv]")
    rows = list(csv.reader(io.StringIO(Path(dl.value.path()).read_text())))
    assert rows[0][:2] == ["row", "col_0"] and float(rows[1][1]) == pytest.approx(after[0][0], abs=1e-6)
    with page.expect_download() as dl:
        page.click("#pe-heat-export button[data-export=png]")
    assert Path(dl.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with page.expect_download() as dl:
        page.click("#pe-far-export button[data-export=json]")
    assert json.loads(Path(dl.value.path()).read_text())["meta"]["k"] == 10

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "paper1_positional.png"), full_page=True)

    # a bad value is refused by the server with a clear inline message, and the page keeps working
    page.fill("#pe-dmodel", "7")
    page.dispatch_event("#pe-dmodel", "change")
    page.wait_for_function(
        "document.getElementById('pe-error').textContent.includes('even')", timeout=TIMEOUT
    )
    assert [b for b in bad_responses if "422" not in b] == []
    assert js_errors(page) == []


def test_scaling_page_slider_saturates_the_row(page, base_url, bad_responses) -> None:
    page.goto(f"{base_url}/scaling?d_k=4&n_samples=128")
    page.wait_for_selector('#sc-app[data-renders="1"]', timeout=TIMEOUT)
    row_before = plot_data(page, "sc-row")
    assert len(row_before) == 2 and len(row_before[0]["y"]) == 16  # unscaled and scaled bars, 16 keys
    for div in ("sc-var", "sc-mp", "sc-ent", "sc-jac"):
        assert plot_data(page, div), div

    page.fill("#sc-dk-range", "1000")  # move the d_k slider to the right end: d_k = 2^10
    page.wait_for_selector('#sc-app[data-dk="1024"]', timeout=TIMEOUT)
    row_after = plot_data(page, "sc-row")
    assert row_after[0]["y"] != row_before[0]["y"]
    assert max(row_after[0]["y"]) > 0.9 > 0.5 > max(row_after[1]["y"])  # unscaled one-hot, scaled not
    assert "d_k=1024" in page.url and "n_samples=128" in page.url
    evidence = page.inner_text("#sc-evidence")
    assert evidence.startswith("At d_k = 1024") and "less gradient" in evidence
    marker = plot_data(page, "sc-mp")[-1]  # the slider's point on the max-prob curves
    assert marker["x"] == [1024, 1024] and marker["y"][0] > 0.9 and marker["y"][1] < 0.2

    with page.expect_download() as dl:
        page.click("#sc-jac-export button[data-export=csv]")
    header = Path(dl.value.path()).read_text().splitlines()[0]
    assert (
        header
        == "d_k,unscaled_mean_jacobian_fro,scaled_mean_jacobian_fro,unscaled_median_jacobian_fro,scaled_median_jacobian_fro"
    )
    with page.expect_download() as dl:
        page.click("#sc-mp-export button[data-export=svg]")
    assert Path(dl.value.path()).read_text()[:200].lstrip().startswith("<svg")

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "paper1_scaling.png"), full_page=True)
    assert bad_responses == []
    assert js_errors(page) == []


def test_tour_page_live_views_and_links(page, base_url, bad_responses) -> None:
    page.goto(f"{base_url}/tour")
    page.wait_for_selector('#tour-app[data-renders="1"]', timeout=TIMEOUT)
    page.wait_for_function("document.getElementById('tour-pe').data !== undefined", timeout=TIMEOUT)
    assert "rounding of the angle" in page.inner_text("#tour-pe-evidence")
    assert plot_data(page, "tour-attn")[0]["y"]
    before = plot_data(page, "tour-row")[0]["y"]

    page.click('#tour-dk button[data-dk="1024"]')
    page.wait_for_selector('#tour-app[data-dk="1024"]', timeout=TIMEOUT)
    assert plot_data(page, "tour-row")[0]["y"] != before
    assert "dk=1024" in page.url
    assert page.get_attribute('#tour-dk button[data-dk="1024"]', "aria-pressed") == "true"
    assert "At d_k = 1024" in page.inner_text("#tour-sat-evidence")

    hrefs = page.eval_on_selector_all(".tour-links a", "as => as.map(a => a.getAttribute('href'))")
    for needle in (
        "kind=cross",
        "kind=decoder_self",
        "/vision?sample=",
        "view=rollout",
        "/vit-embeddings",
        "/distance",
    ):
        assert any(needle in h for h in hrefs), needle
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "paper1_tour.png"), full_page=True)
    assert bad_responses == []
    assert js_errors(page) == []
