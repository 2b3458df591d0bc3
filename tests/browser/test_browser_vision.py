"""The vision page in real headless Chromium: gallery + file upload + drop + paste, the layers x heads grid
(keyboard and mouse), patch queries drawn from the attention endpoint, rollout options, exports, the URL as a
permalink, and inline errors. Screenshots go to tests/artifacts/."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.serialization import decode_typed_array
from app.settings import VisionModelEntry
from tests.browser.pages import OVERLAY, js_errors, overlay
from tests.factories import ARTIFACTS, photo_bytes, random_vit, tiny_settings

pytestmark = pytest.mark.browser

# 8 x 8 patches and 12 layers; 4 x 4 patches without [CLS] (no classifier, average pooling)
VIT12 = dict(img_size=64, patch_size=8, embed_dim=48, depth=12, num_heads=4, num_classes=1000)
NOHEAD = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=0)
NOHEAD.update(class_token=False, global_pool="avg")
TINY_VIT12 = random_vit(VisionModelEntry, "tiny_vit12", "Tiny random ViT, 12 layers (tests)", **VIT12)
TINY_NOHEAD = random_vit(
    VisionModelEntry, "tiny_nohead", "Tiny random ViT, no [CLS] token, no classifier (tests)", **NOHEAD
)
GRID = ".vz-grid-canvas"


@pytest.fixture
def base_url(tmp_path, live_server) -> str:
    """The app with a 12-layer tiny ViT as default (8 x 8 patches), served on a free port."""
    s = tiny_settings(tmp_path)
    s = tiny_settings(
        tmp_path,
        vision_models=[TINY_VIT12, TINY_NOHEAD, *s.models.vision_models],
        default_vision_model=TINY_VIT12.id,
        preload=False,  # models load on first use; the page must not depend on other areas' preloads
        secret_key=SECRET,  # known here, so the test can compute the keyed image ids the page shows
    )
    return live_server(s)


SECRET = "browser-test-secret-of-32-bytes-or-more"  # ATLAS_SECRET_KEY needs >= 32 bytes


def image_id(data: bytes) -> str:
    """The server's ``image_hash`` of these bytes: AppState.keyed_id("image", sha256) under SECRET."""
    parts = [p.encode() for p in ("image", hashlib.sha256(data).hexdigest())]
    message = b"".join(b"%d:%b" % (len(p), p) for p in parts)  # each part length-prefixed
    return hmac.new(SECRET.encode(), message, hashlib.sha256).hexdigest()[:24]


def fnv1a(values: np.ndarray) -> str:
    """The page's checksum of drawn values (FNV-1a over float32 bytes)."""
    h = 0x811C9DC5
    for b in np.ascontiguousarray(values, dtype=np.float32).tobytes():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return f"{h:08x}"


def wait_ready(page) -> dict:
    page.wait_for_selector('#vision-app[data-busy="0"]', timeout=30_000)
    page.wait_for_selector(f'{OVERLAY}[data-state="ready"]', timeout=30_000)
    return overlay(page)


def pixels(page, sel: str = OVERLAY) -> str:
    return page.eval_on_selector(sel, "c => c.toDataURL()")


def patch_point(page, row: int, col: int) -> tuple[float, float]:
    d, box = overlay(page), page.locator(OVERLAY).bounding_box()
    fx, fy, rows, cols = float(d["fx"]), float(d["fy"]), int(d["rows"]), int(d["cols"])
    return box["x"] + box["width"] * fx * (col + 0.5) / cols, box["y"] + box["height"] * fy * (
        row + 0.5
    ) / rows


def click_cell(page, layer: int, col: int) -> None:
    g, box = page.eval_on_selector(GRID, "c => ({...c.dataset})"), page.locator(GRID).bounding_box()
    x = float(g["originX"]) + col * float(g["pitchX"]) + float(g["thumbW"]) / 2
    if col == int(g["heads"]):
        x += float(g["meanGap"])
    y = float(g["originY"]) + layer * float(g["pitchY"]) + float(g["thumbH"]) / 2
    page.mouse.click(box["x"] + x, box["y"] + y)


def test_sample_grid_query_permalink_and_exports(base_url, page) -> None:
    # no image in the URL: the page opens on its first look (a sample at the mean of heads; see
    # test_browser_vision_first.py); ?view=head keeps the head view this test starts from
    page.goto(f"{base_url}/vision?view=head")
    wait_ready(page)
    page.click('[data-sample="astronaut"]')
    page.wait_for_function("new URLSearchParams(location.search).get('sample') === 'astronaut'")
    state = wait_ready(page)
    grid = page.eval_on_selector(GRID, "c => ({...c.dataset})")
    assert (grid["layers"], grid["heads"]) == ("12", "4")
    assert page.locator('[data-predictions="5"] li').count() == 5
    assert state["query"] == "cls" and state["view"] == "head"

    # keyboard: Home -> layer 1, ArrowRight -> head 2 (the UI counts from 1, the data attributes from 0)
    page.focus(GRID)
    page.keyboard.press("Home")
    page.keyboard.press("ArrowRight")
    page.wait_for_function(f"document.querySelector('{OVERLAY}').dataset.layer === '0'")
    assert page.eval_on_selector(GRID, "c => c.dataset.selected") == "0,1"
    assert overlay(page)["head"] == "1"
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")  # past the last head: the mean column
    page.wait_for_function(f"document.querySelector('{OVERLAY}').dataset.view === 'mean'")

    # mouse: layer 12, head 1
    click_cell(page, 11, 0)
    page.wait_for_function(f"document.querySelector('{OVERLAY}').dataset.view === 'head'")
    cls_state, cls_pixels = overlay(page), pixels(page)
    assert (cls_state["layer"], cls_state["head"], cls_state["query"]) == ("11", "0", "cls")
    assert page.locator("#vz-title").inner_text().startswith("Layer 12 · head 1")
    page.screenshot(path=str(ARTIFACTS / "vision-cls.png"))

    # hover previews a patch query; click pins it; further hovering keeps the pinned map
    page.mouse.move(*patch_point(page, 1, 1))
    page.wait_for_function(f"document.querySelector('{OVERLAY}').dataset.query === '9'")
    page.mouse.click(*patch_point(page, 2, 5))
    page.wait_for_function(f"document.querySelector('{OVERLAY}').dataset.query === '21'")
    pinned = overlay(page)
    assert pinned["checksum"] != cls_state["checksum"] and pixels(page) != cls_pixels
    aid = page.get_attribute("#vision-app", "data-analysis")
    assert page.get_attribute("#vz-distance-link", "href") == f"/distance?analysis={aid}"
    api = httpx.get(
        f"{base_url}/api/vision/analysis/{aid}/attention", params={"layer": 11, "head": 0, "query": 21}
    )
    assert pinned["checksum"] == fnv1a(
        decode_typed_array(api.json()["values"]).ravel()
    )  # exactly what was drawn
    page.mouse.move(*patch_point(page, 6, 6))
    page.wait_for_timeout(250)
    assert overlay(page)["query"] == "21"
    assert "patch row 3, col 6 (pinned)" in page.locator("#vz-query-text").inner_text()
    page.screenshot(path=str(ARTIFACTS / "vision-query.png"))

    url = page.url
    for part in (
        "sample=astronaut",
        "model=tiny_vit12",
        "res=64",
        "view=head",
        "layer=12",
        "head=1",
        "query=21",
    ):
        assert part in url, (part, url)

    # exports: PNG figure, CSV numbers, model-view SVG
    with page.expect_download() as dl:
        page.click("#vz-overlay-export [data-export=png]")
    assert dl.value.suggested_filename.endswith(".png")
    png = ARTIFACTS / "vision-export.png"
    dl.value.save_as(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with page.expect_download() as dl:
        page.click("#vz-overlay-export [data-export=csv]")
    lines = Path(dl.value.path()).read_text().splitlines()
    assert lines[0] == "patch,row,col,value" and len(lines) == 1 + 64
    assert lines[1].startswith("1,1,1,") and lines[-1].startswith("64,8,8,")  # 1-based, as on screen
    with page.expect_download() as dl:
        page.click("#vz-overlay-export [data-export=json]")
    exported = json.loads(Path(dl.value.path()).read_text())
    assert {k: exported["meta"][k] for k in ("layer", "head", "query", "model")} == {
        "layer": 12,  # exports count from 1, as on screen (the URL's query=21 is the API's patch index)
        "head": 1,
        "query": 22,
        "model": "tiny_vit12",
    }
    assert fnv1a(np.array(exported["values"])) == pinned["checksum"]
    with page.expect_download() as dl:
        page.click("#vz-grid-export [data-export=svg]")
    assert Path(dl.value.path()).read_text().startswith("<svg")

    # a reload (or a shared link) restores image, layer, head and the pinned query
    page.reload()
    restored = wait_ready(page)
    assert {k: restored[k] for k in ("layer", "head", "query", "checksum", "view")} == {
        k: pinned[k] for k in ("layer", "head", "query", "checksum", "view")
    }
    assert page.eval_on_selector(GRID, "c => c.dataset.selected") == "11,0"
    assert page.get_attribute('[data-sample="astronaut"]', "aria-pressed") == "true"
    page.click("#vz-back")
    page.wait_for_function(f"document.querySelector('{OVERLAY}').dataset.query === 'cls'")
    assert overlay(page)["checksum"] == cls_state["checksum"] and "query=" not in page.url

    # the model picker re-runs the same photo; a model without a classifier says so
    page.select_option("#vz-model", "tiny_nohead")
    page.wait_for_function(f"document.querySelector('{GRID}').dataset.layers === '2'")
    assert page.locator("#vz-preds-card").is_hidden()  # no empty predictions card
    assert "No classifier head" in page.locator("#vz-crop").inner_text()
    assert page.locator("#vz-grid-what").inner_text() == "mean patch-query attention"
    assert "no [CLS] token" in page.locator("#vz-caption").inner_text()
    assert "model=tiny_nohead" in page.url and "layer=2" in page.url
    assert js_errors(page) == []


DROP_JS = """async ([kind, url]) => {
  const blob = await (await fetch(url)).blob();
  const dt = new DataTransfer();
  dt.items.add(new File([blob], "dropped.jpg", { type: "image/jpeg" }));
  const target = document.getElementById("vz-drop");
  if (kind === "drop") {
    target.dispatchEvent(new DragEvent("dragenter", { dataTransfer: dt, bubbles: true }));
    target.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
  } else {
    document.body.dispatchEvent(new ClipboardEvent("paste", { clipboardData: dt, bubbles: true, cancelable: true }));
  }
}"""


def test_file_upload_drop_paste_and_inline_errors(base_url, page, tmp_path) -> None:
    page.goto(f"{base_url}/vision")
    data = photo_bytes(1, (96, 72), high=255)
    (tmp_path / "photo.png").write_bytes(data)
    page.set_input_files("#vz-file", str(tmp_path / "photo.png"))
    wait_ready(page)
    digest = image_id(data)
    assert f"img={digest}" in page.url and "sample=" not in page.url
    first = page.get_attribute("#vision-app", "data-analysis")
    page.reload()
    wait_ready(page)
    assert page.get_attribute("#vision-app", "data-analysis") == first

    # a text file renamed .png: the server's message inline, the previous analysis stays on screen
    (tmp_path / "notes.png").write_text("these are my notes, not a picture\n")
    page.set_input_files("#vz-file", str(tmp_path / "notes.png"))
    err = page.locator("#vz-error")
    err.wait_for(state="visible")
    assert "not an image" in err.inner_text()
    assert page.locator("#vz-main").is_visible() and f"img={digest}" in page.url
    page.screenshot(path=str(ARTIFACTS / "vision-error.png"))

    # over the operator's limit (1 MB in the test settings): refused in the page, before any upload
    (tmp_path / "big.png").write_bytes(data + b"\0" * (1024 * 1024))
    page.set_input_files("#vz-file", str(tmp_path / "big.png"))
    page.wait_for_function("document.getElementById('vz-error').textContent.includes('the limit is 1 MB')")

    # drag-and-drop and Ctrl+V paste of an image file
    coffee = image_id(httpx.get(f"{base_url}/api/vision/samples/coffee.jpg").content)
    page.evaluate(DROP_JS, ["drop", "/api/vision/samples/coffee.jpg"])
    page.wait_for_url(re.compile(f"img={coffee}"))
    wait_ready(page)
    assert page.locator("#vz-error").inner_text() == ""
    rocket = image_id(httpx.get(f"{base_url}/api/vision/samples/rocket.jpg").content)
    page.evaluate(DROP_JS, ["paste", "/api/vision/samples/rocket.jpg"])
    page.wait_for_url(re.compile(f"img={rocket}"))
    wait_ready(page)

    # a permalink whose image the server no longer holds: the 404 message, asking to upload again
    page.goto(f"{base_url}/vision?img={'0' * 64}&layer=3&head=2")
    err.wait_for(state="visible")
    assert "no longer cached" in err.inner_text() and "upload it again" in err.inner_text()
    assert page.locator("#vz-main").is_hidden()
    assert js_errors(page) == []


def test_rollout_options_colormap_and_views(base_url, page) -> None:
    page.goto(f"{base_url}/vision?sample=coffee&layer=6&head=3")
    state = wait_ready(page)
    assert (state["layer"], state["head"]) == ("5", "2")
    page.click('[data-view="rollout"]')
    page.wait_for_function(f"document.querySelector('{OVERLAY}').dataset.view === 'rollout'")
    mean_rollout = overlay(page)["checksum"]
    with page.expect_request(lambda r: "/rollout?head_fusion=max" in r.url):
        page.select_option("#vz-fusion", "max")
    page.wait_for_function(
        f"document.querySelector('{OVERLAY}').dataset.checksum !== '{mean_rollout}'", timeout=10_000
    )
    assert "view=rollout" in page.url and "fusion=max" in page.url
    aid = page.get_attribute("#vision-app", "data-analysis")
    api = httpx.get(f"{base_url}/api/vision/analysis/{aid}/rollout", params={"head_fusion": "max"})
    assert overlay(page)["checksum"] == fnv1a(decode_typed_array(api.json()["rollout"]))

    page.eval_on_selector("#vz-discard", "e => { e.value = 0.5; e.dispatchEvent(new Event('input')); }")
    page.wait_for_url(re.compile(r"discard=0\.5"))
    page.wait_for_function(f"document.querySelector('{OVERLAY}').dataset.checksum !== '{mean_rollout}'")
    before = pixels(page)
    page.select_option("#vz-cmap", "magma")
    page.wait_for_function(f"document.querySelector('{OVERLAY}').toDataURL() !== {before!r}")
    assert "cmap=magma" in page.url
    page.screenshot(path=str(ARTIFACTS / "vision-rollout.png"))

    page.click('[data-view="mean"]')
    page.wait_for_function(f"document.querySelector('{OVERLAY}').dataset.head === 'mean'")
    assert page.eval_on_selector(GRID, "c => c.dataset.selected") == "5,4"
    assert js_errors(page) == []
