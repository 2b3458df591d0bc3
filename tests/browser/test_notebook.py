"""Notebook API (app/notebook/): the numbers on tiny random models, the inlined HTML, and a real notebook
executed headless with nbclient whose output HTML is opened in Chromium."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app.notebook import show_text, show_vision, vision_stats
from app.notebook.html import SPECIFIER, module_list
from app.serialization import decode_typed_array
from models.text.lines import top_k_lines
from models.text.random_models import build_random_text_model
from models.vision.distance import mean_attention_distance
from models.vision.rollout import attention_rollout
from tests.browser.pages import poll
from tests.factories import make_tiny_vit, minilm_shaped_bert, tiny_settings

ROOT = Path(__file__).resolve().parents[2]
SENTENCE = "The animal didn't cross the street because it was too tired."
F16 = 2.0**-11  # float16 relative rounding: the vision maps are cached in float16 (models/vision/analysis.py)


def photo(h: int = 40, w: int = 52) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8))


# ------------------------------------------------------------------------------------------- vision


def test_show_vision_numbers_on_a_timm_model_object():
    vit = make_tiny_vit()  # 32 px, 8 px patches: 4 x 4 patches + [CLS], 3 layers x 4 heads
    vit.train()  # the caller's mode is restored after the forward
    r = show_vision(vit, photo(), layer=1, head=2)
    assert vit.training
    assert r.maps.shape == (3, 4, 17, 17) and r.maps.dtype == np.float32
    assert r.grid == (4, 4) and r.num_prefix_tokens == 1 and r.has_cls
    # rows are softmax distributions (Section 3.2.1), stored in float16: 17 terms of rounding each
    np.testing.assert_allclose(r.maps.sum(-1), 1.0, atol=17 * F16 * 2)
    np.testing.assert_allclose(r.cls, r.maps[:, :, 0, 1:], rtol=F16 * 2, atol=1e-6)
    attn = torch.from_numpy(r.maps).half()
    expected = mean_attention_distance(attn, (4, 4), 1, 8).numpy()  # (L, H) pixels
    # the distance is computed as the forward runs, from its float32 maps (tests/models/test_native.py checks
    # it exactly there); r.maps is their float16 copy, so the two agree to float16 rounding
    np.testing.assert_allclose(r.distance, expected, rtol=2 * F16)
    np.testing.assert_allclose(r.rollout, attention_rollout(attn).numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        r.rollout_map("max", 0.5), attention_rollout(attn, "max", 0.5).numpy(), rtol=1e-4
    )
    stats = vision_stats(r.maps, 1)
    rows = r.maps[:, :, 1:, :]  # (L, H, P, N)
    np.testing.assert_allclose(stats["entropy"], -(rows * np.log(rows)).sum(-1).mean(-1), rtol=1e-5)
    assert r.stats["prefix_share"].shape == (3, 4)
    # the same photo as a path and as an array gives the same maps
    path = Path(__file__).parents[1] / "artifacts" / "notebook_photo.png"
    path.parent.mkdir(exist_ok=True)
    photo().save(path)
    np.testing.assert_array_equal(show_vision(vit, path).maps, r.maps)
    np.testing.assert_array_equal(show_vision(vit, np.asarray(photo())).maps, r.maps)


def test_vision_payload_probe_rows_and_budget():
    r = show_vision(make_tiny_vit(), photo(), layer=2)
    d = r.payload()
    assert d["probe_layers"] == [0, 1, 2]
    q = decode_typed_array(d["probe"]).astype(np.float32)  # (L, H, P, P) uint8
    scale = decode_typed_array(d["probe_scale"])  # (L, H, P): row max / 255
    rows = r.maps[:, :, 1:, 1:]  # (L, H, P, P)
    # uint8 steps of the row maximum: at most half a step off
    assert np.abs(q * scale[..., None] - rows).max() <= 0.5 * scale.max() * 1.001
    assert set(d["rollouts"]) == {f"{f}|{x:.2f}" for f in ("mean", "max", "min") for x in (0, 0.5, 0.9)}
    np.testing.assert_array_equal(decode_typed_array(d["rollouts"]["mean|0.00"]), r.rollout)
    r.max_mb = 1e-4  # not even one layer fits: the selected one is always kept
    assert r.probe_layers() == [2]
    html = r._repr_html_()
    assert "atlasNotebookLoad" in html and "/api/" not in html.split('type="application/json"')[0]


def test_show_vision_by_model_id(tmp_path, monkeypatch):
    import app.settings

    monkeypatch.setattr(app.settings, "get_settings", lambda: tiny_settings(tmp_path))
    r = show_vision("tiny_vit", photo())
    assert r.model_id == "tiny_vit" and r.maps.shape == (3, 4, 17, 17)
    d = show_vision("tiny_deit_distilled", photo())  # [CLS] + distillation token: 2 prefix tokens
    assert d.num_prefix_tokens == 2 and d.maps.shape == (2, 2, 11, 11) and d.cls.shape == (2, 2, 9)
    assert decode_typed_array(d.payload()["probe"]).shape == (2, 2, 9, 9)
    with pytest.raises(KeyError, match="unknown vision model"):
        show_vision("nope", photo())


# --------------------------------------------------------------------------------------------- text


def test_show_text_encoder_switches_to_eager_and_back():
    model, tok = build_random_text_model("bert", attn_implementation="sdpa")
    t = show_text(model, tok, SENTENCE)
    assert model.config._attn_implementation == "sdpa"
    eager, _ = build_random_text_model("bert", attn_implementation="eager")  # same seed: same weights
    ids = torch.tensor([tok(SENTENCE)["input_ids"]])  # (1, T)
    with torch.inference_mode():
        ref = torch.stack(eager(ids, output_attentions=True).attentions)[:, 0].numpy()  # (L, H, T, T)
    assert isinstance(t.maps, np.ndarray) and t.maps.shape == ref.shape
    np.testing.assert_allclose(t.maps, ref, atol=1e-6)
    T = ref.shape[-1]
    offsets = np.abs(np.arange(T)[None, :] - np.arange(T)[:, None])  # (T, T): |j - i|
    dist = (ref * offsets).sum(-1).mean(-1)  # (L, H): sum_j A[i, j] |j - i|, mean over the queries i
    np.testing.assert_allclose(t.distance["encoder_self"], dist, rtol=1e-5)
    s = t.stats["encoder_self"]  # (L, H + 1, S)
    assert s.shape == (2, 5, len(t.stat_names))
    self_share = np.einsum("lhii->lh", ref) / T
    np.testing.assert_allclose(s[:, :4, t.stat_names.index("self")], self_share, rtol=1e-5)
    assert t.tier() == "f4"


def test_show_text_causal_and_seq2seq():
    g, gt = build_random_text_model("gpt2")
    t = show_text(g, gt, SENTENCE)
    assert t.analysis.kind == "causal" and list(t.blocks) == ["decoder_self"]
    m = t.maps
    assert np.all(np.triu(m, k=1) == 0.0)  # masked future positions: weight exactly 0 (Section 3.2.3)
    mm, mt = build_random_text_model("marian")
    t2 = show_text(mm, mt, "The animal was tired.", target="Das Tier war müde.")
    assert list(t2.blocks) == ["encoder_self", "decoder_self", "cross"] and isinstance(t2.maps, dict)
    assert np.isnan(t2.distance["cross"]).all() and np.isfinite(t2.distance["decoder_self"]).all()
    L, H, Tt, Ts = t2.blocks["cross"].shape
    assert Ts == len(t2.tokens) and Tt == len(t2.analysis.target.tokens)
    d = t2.payload()
    assert [b["kind"] for b in d["blocks"]] == ["encoder_self", "decoder_self", "cross"]
    paper, chars = build_random_text_model("dates")  # the paper Transformer object and its CharTokenizer
    t3 = show_text(paper, chars, "Friday, March 18th, 2022", target="2022-03-18")
    assert list(t3.blocks) == ["encoder_self", "decoder_self", "cross"]
    assert t3.blocks["cross"].shape[-1] == len("Friday, March 18th, 2022")


def test_text_tiers_keep_the_numbers(tmp_path, monkeypatch):
    import app.settings

    monkeypatch.setattr(app.settings, "get_settings", lambda: tiny_settings(tmp_path))
    t = show_text("tiny-bert", None, " ".join([SENTENCE] * 8))  # ~110 tokens, 2 x 4 heads
    view = t.blocks["encoder_self"]
    assert t.tier() == "f4"  # 2 x 4 x T^2 float32: about 0.5 MB as base64
    np.testing.assert_array_equal(decode_typed_array(t.payload()["blocks"][0]["nb"]["data"]), view)
    t.max_mb = 0.3  # float32 no longer fits, uint8 does: 1/255 steps, at most half a step off
    assert t.tier() == "u1"
    u8 = decode_typed_array(t.payload()["blocks"][0]["nb"]["data"]).astype(np.float32) / 255.0
    np.testing.assert_allclose(u8, view, atol=0.5 / 255 + 1e-6)
    t.max_mb, k = 0.01, 5
    t.top_k = k
    assert t.tier() == "topk"
    nb = t.payload()["blocks"][0]["nb"]
    idx, w = decode_typed_array(nb["index"]), decode_typed_array(nb["weight"])  # (L, H, T, k)
    ref_idx, ref_w = top_k_lines(view[1], k)
    np.testing.assert_array_equal(w[1], ref_w)
    picked = np.take_along_axis(view[1], idx[1].astype(np.int64), -1)  # the weights behind the indices
    np.testing.assert_allclose(picked, ref_w / 255.0, atol=0.5 / 255 + 1e-6)


def test_long_input_html_stays_a_few_megabytes():
    """512 tokens through a MiniLM-shaped BERT (6 layers x 12 heads): bertviz inlines 869 MB of JSON."""
    from models.text.analysis import load_text_model

    tm = load_text_model(minilm_shaped_bert())
    words = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "while", "attention"]
    t = show_text(tm, None, " ".join(words[i % len(words)] for i in range(510)))
    assert len(t.tokens) == 512 and t.tier() == "topk"
    with_plotly = len(t._repr_html_().encode())
    t.include_plotly = False
    without = len(t._repr_html_().encode())
    assert without < 3.0e6 and with_plotly < 8.0e6, (without, with_plotly)


def test_modules_are_inlined_in_dependency_order():
    for entry in ("notebook/vision.js", "notebook/text.js"):
        mods = module_list(entry)
        paths = [p for p, _ in mods]
        assert paths[-1] == entry and len(set(paths)) == len(paths)
        for i, (_, src) in enumerate(mods):
            assert not SPECIFIER.search(src), "a relative import was left in"
            assert all(int(n) < i for n in re.findall(r"__ATLAS_MODULE_(\d+)__", src))
        assert "vision/grid.js" in paths or "text/headview.js" in paths


# ------------------------------------------------------------- a real notebook, run headless, in Chromium

NOTEBOOK_CELLS = [
    f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n"
    "import numpy as np, timm, torch\nfrom PIL import Image\n"
    "from app.notebook import show_text, show_vision\n"
    "from models.text.random_models import build_random_text_model",
    "torch.manual_seed(0)\n"
    "vit = timm.create_model('vit_tiny_patch16_224', pretrained=False, img_size=32, patch_size=8, embed_dim=32,\n"
    "                        depth=3, num_heads=4, num_classes=10).eval()\n"
    "img = Image.fromarray((np.random.default_rng(0).random((40, 52, 3)) * 255).astype(np.uint8))\n"
    "r = show_vision(vit, img)\nr",
    "bert, tok = build_random_text_model('bert', attn_implementation='sdpa')\n"
    f"t = show_text(bert, tok, {SENTENCE!r})\nt",
    "print(r.maps.shape, r.distance.shape, t.maps.shape)",
]


def run_notebook(tmp_path: Path) -> list[str]:
    """Execute the notebook with the venv's own python as the kernel; the text/html outputs."""
    import nbformat
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager
    from nbclient import NotebookClient

    kdir = tmp_path / "kernels" / "atlas-venv"
    kdir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (kdir / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "venv", "language": "python"})
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in NOTEBOOK_CELLS])
    km = KernelManager(
        kernel_name="atlas-venv", kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(kdir.parent)])
    )
    NotebookClient(nb, km=km, timeout=240, resources={"metadata": {"path": str(tmp_path)}}).execute()
    nbformat.write(nb, tmp_path / "executed.ipynb")
    assert "(3, 4, 17, 17) (3, 4) (2, 4, 16, 16)" in nb.cells[3].outputs[0]["text"]
    return [o["data"]["text/html"] for c in nb.cells for o in c.outputs if "text/html" in o.get("data", {})]


@pytest.mark.browser
@pytest.mark.slow
def test_executed_notebook_draws_in_chromium(tmp_path, page):
    outputs = run_notebook(tmp_path)
    assert len(outputs) == 2
    out = tmp_path / "notebook_outputs.html"
    out.write_text("<!doctype html><html><body>" + "".join(outputs) + "</body></html>", encoding="utf-8")
    assert all(o.isascii() for o in outputs)  # no charset declared above: the outputs must not need one
    page.goto(out.as_uri())
    poll(page, "() => [...document.querySelectorAll('.atlas-nb')].every((r) => r.dataset.state === 'ready')",
         "both outputs drawn")  # fmt: skip
    vis, txt = page.locator(".atlas-nb").nth(0), page.locator(".atlas-nb").nth(1)

    # vision: the model view grid and the overlay draw; clicking a thumbnail selects its layer and head
    grid = vis.locator("canvas.vz-grid-canvas")
    overlay = vis.locator("canvas.vz-overlay-canvas")
    assert overlay.get_attribute("data-layer") == "2" and overlay.get_attribute("data-state") == "ready"
    ds = grid.evaluate("(c) => ({...c.dataset})")
    x = float(ds["originX"]) + float(ds["pitchX"]) * 1 + 3
    y = float(ds["originY"]) + float(ds["pitchY"]) * 0 + 3
    grid.click(position={"x": x, "y": y})
    assert vis.get_attribute("data-layer") == "0" and vis.get_attribute("data-head") == "1"
    before = overlay.get_attribute("data-checksum")
    # patch probing: click a patch to pin it; the map changes; Esc returns to the [CLS] map
    box = overlay.bounding_box()
    overlay.click(position={"x": box["width"] * 0.6, "y": box["height"] * 0.1})
    assert vis.get_attribute("data-query") == "2"  # row 1, column 3 of the 4 x 4 grid
    assert overlay.get_attribute("data-checksum") != before
    page.keyboard.press("Escape")
    assert vis.get_attribute("data-query") == "cls" and overlay.get_attribute("data-checksum") == before
    # the same from the keyboard: the arrow keys move a query cursor (from the centre patch), Enter pins it
    page.keyboard.press("ArrowRight")
    assert vis.get_attribute("data-query") == "11"  # row 3, column 4: one right of the centre (2, 2)
    page.keyboard.press("ArrowUp")
    page.keyboard.press("Enter")
    assert vis.get_attribute("data-query") == "7" and overlay.get_attribute("data-checksum") != before
    page.keyboard.press("Escape")
    assert vis.get_attribute("data-query") == "cls"
    vis.get_by_role("button", name="Rollout").click()
    assert overlay.get_attribute("data-view") == "rollout"
    # the entropy view: models/vision/views.py patch_entropy, carried in the output, with its caption
    vis.get_by_role("button", name="Entropy").click()
    assert overlay.get_attribute("data-view") == "entropy" and vis.get_attribute("data-view") == "entropy"
    caption = vis.locator(".nb-caption").last.inner_text()
    assert "layer 1, head 2" in caption and "nats" in caption and "log(16) = 2.77 nats" in caption

    # text: head view lines; a head chip toggles; a table row opens the matrix (plotly); the model view
    assert txt.locator("canvas.tx-hv-canvas").count() == 1
    assert "\u2192special" in txt.locator("table.tx-table thead").inner_text()  # non-ASCII survives
    chip = txt.locator(".tx-chip").first
    assert chip.get_attribute("aria-pressed") == "true"
    chip.click()
    assert txt.locator(".tx-chip").first.get_attribute("aria-pressed") == "false"
    txt.locator("tr[data-layer='1'][data-head='2']").click()
    poll(page, "() => document.querySelectorAll('.atlas-nb .js-plotly-plot').length === 1", "matrix drawn")
    assert txt.get_attribute("data-view") == "matrix" and txt.get_attribute("data-layer") == "1"
    txt.get_by_role("tab", name="Model view").click()
    assert txt.locator("canvas.tx-mv-canvas").count() == 1
    page.screenshot(
        path=str(Path(__file__).parents[1] / "artifacts" / "notebook_outputs.png"), full_page=True
    )
    assert page.js_errors == []
