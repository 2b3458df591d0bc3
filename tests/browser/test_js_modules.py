"""Pure front-end helpers run in Node against independent numpy computations (no browser needed).

Covers the one screen/API numbering module (static/js/lib/numbering.js), the vision data module's head mean,
map slicing and captions (static/js/vision/data.js), the compare views' B - A arithmetic and query geometry
(static/js/{vision,text}/compare/). Skipped when ``node`` is not installed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

JS = Path(__file__).resolve().parents[2] / "static" / "js"
NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


def run_js(body: str, data: dict) -> dict:
    """Run an ES module body with ``data`` bound and ``out`` printed as JSON; modules import by file URL."""
    script = (
        f'const data = {json.dumps(data)};\nconst out = {{}};\nconst js = (p) => "{JS.as_uri()}/" + p;\n'
        + body
        + "\nconsole.log(JSON.stringify(out));"
    )
    done = subprocess.run(
        [NODE, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_numbering_round_trips():
    got = run_js(
        """
        const N = await import(js("lib/numbering.js"));
        out.from = [0, 4, "mean"].map(N.fromApi);
        out.to = [1, 5, "mean", 0, -3, "x", "3"].map(N.toApi);
        out.toOr = [N.toApiOr(0, null), N.toApiOr("", null), N.toApiOr(7, null)];
        out.rc = data.idx.map((i) => N.patchRowCol(i, data.cols));
        out.back = out.rc.map(({ row, col }) => N.patchIndex(row, col, data.cols));
        out.name = N.patchName(data.idx[1], data.cols);
        """,
        {"idx": [0, 13, 63], "cols": 8},
    )
    assert got["from"] == [1, 5, "mean"]
    assert got["to"] == [0, 4, "mean", 0, 0, 0, 2]  # below 1 or not a number -> the first
    assert got["toOr"] == [None, None, 6]
    rows, cols = np.divmod(np.array([0, 13, 63]), 8)
    assert got["rc"] == [{"row": int(r) + 1, "col": int(c) + 1} for r, c in zip(rows, cols, strict=True)]
    assert got["back"] == [0, 13, 63]
    assert got["name"] == "patch row 2, col 6"


def test_vision_head_means_maps_and_captions():
    rng = np.random.default_rng(0)
    L, H, rows, cols = 3, 4, 2, 5
    P = rows * cols
    cls = rng.random((L, H, P)).astype(np.float32)
    got = run_js(
        """
        const D = await import(js("vision/data.js"));
        const cls = Float32Array.from(data.cls), { L, H, P } = data;
        const A = { cls, means: D.headMeans(cls, L, H, P), L, H, P, clsQuery: "cls",
          grid: { rows: data.rows, cols: data.cols, num_prefix_tokens: 1 } };
        out.means = Array.from(A.means);
        out.head = Array.from(D.clsMap(A, 2, 1));
        out.mean = Array.from(D.clsMap(A, 1, null));
        out.cls = D.describeMap(A, { view: "head", layer: 2, head: 1, query: null });
        out.probe = D.describeMap(A, { view: "mean", layer: 0, head: 3, query: 7 });
        out.rollout = D.describeMap(A, { view: "rollout", layer: 0, head: 0, fusion: "max", discard: 0.25 });
        """,
        {"cls": cls.ravel().tolist(), "L": L, "H": H, "P": P, "rows": rows, "cols": cols},
    )
    means = cls.astype(np.float64).mean(axis=1)  # (L, P)
    np.testing.assert_allclose(np.array(got["means"]).reshape(L, P), means, rtol=1e-6)
    np.testing.assert_allclose(got["head"], cls[2, 1], rtol=1e-7)
    np.testing.assert_allclose(got["mean"], means[1], rtol=1e-6)
    assert got["cls"]["title"] == "Layer 3 \u00b7 head 2" and got["cls"]["what"] == "[CLS] attention"
    assert got["probe"]["title"] == "Layer 1 \u00b7 mean of 4 heads \u00b7 query patch row 2, col 3"
    assert "prefix tokens is not drawn" in got["probe"]["caption"]
    rollout = got["rollout"]["caption"]
    assert "fused by max, the weakest 25% of the patch-to-patch entries discarded" in rollout
    assert "never a prefix row or column" in rollout and "layers 1 to 3" in rollout
    assert "rollout's estimate of how much each patch feeds the final [CLS] token" in rollout
    assert "not a measured contribution" in rollout


def test_compare_differences_and_query_geometry():
    rng = np.random.default_rng(1)
    a, b = rng.random(12).astype(np.float32), rng.random(12).astype(np.float32)
    got = run_js(
        """
        globalThis.location = { search: "" };
        const V = await import(js("vision/compare/difference.js"));
        const T = await import(js("text/compare/difference.js"));
        const S = await import(js("vision/compare/state.js"));
        const a = Float32Array.from(data.a), b = Float32Array.from(data.b);
        const v = V.difference(a, b), t = T.difference(a, b);
        out.vision = { d: Array.from(v.d), m: v.m, arg: v.arg, l1: v.l1 };
        out.text = { d: Array.from(t.d), m: t.m, arg: t.arg };
        const small = { grid: { rows: 3, cols: 4 } }, big = { grid: { rows: 6, cols: 8 } };
        out.same = [...Array(12).keys()].map((i) => S.idxOf(small, S.rel(small, i)));
        out.onBig = [...Array(12).keys()].map((i) => S.idxOf(big, S.rel(small, i)));
        """,
        {"a": a.tolist(), "b": b.tolist()},
    )
    d = b - a  # float32, as in the browser
    for key in ("vision", "text"):
        np.testing.assert_allclose(got[key]["d"], d, rtol=0, atol=0)
        assert got[key]["m"] == pytest.approx(float(np.abs(d).max()), rel=1e-6)
        assert got[key]["arg"] == int(np.abs(d).argmax())
    assert got["vision"]["l1"] == pytest.approx(float(np.abs(d.astype(np.float64)).sum()), rel=1e-6)
    assert got["same"] == list(range(12))  # a patch maps back onto itself on its own grid
    r, c = np.divmod(
        np.arange(12), 4
    )  # on a grid twice as fine, a patch centre falls in its lower-right child
    assert got["onBig"] == ((2 * r + 1) * 8 + 2 * c + 1).tolist()


def test_renormalised_difference_and_cross_model_captions():
    """B-hat - A-hat: each map divided by its own patch sum (float64, summed in patch order), rounded to float32."""
    rng = np.random.default_rng(2)
    a = (rng.random(12) * 0.05).astype(np.float32)  # sums to ~0.3: the rest went to [CLS] / registers
    b = (rng.random(12) / 12).astype(np.float32)
    got = run_js(
        """
        globalThis.location = { search: "" };
        const V = await import(js("vision/compare/difference.js"));
        const K = await import(js("vision/compare/captions.js"));
        const r = V.renormalisedDifference(Float32Array.from(data.a), Float32Array.from(data.b));
        out.r = { d: Array.from(r.d), m: r.m, arg: r.arg, l1: r.l1, sa: r.sa, sb: r.sb };
        out.zero = Array.from(V.renormalisedDifference(new Float32Array(3), Float32Array.of(1, 1, 2)).d);
        const grid = (rows, cols, ps, res) => ({ rows, cols, patch_size: ps, resolution: res });
        const side = (id, label, g, view, head) => ({ A: { model: { id, label }, grid: g }, view, head });
        const a = side("m1", "Model one", grid(4, 4, 8, 32), "head", 2), b = side("m2", "Model two", grid(4, 4, 16, 64), "head", 0);
        out.heads = K.crossModelHeadCaption(a, b);
        out.oneHead = K.crossModelHeadCaption(a, { ...b, view: "mean" });
        out.renormCross = K.renormCaption(a, b, 0.5);
        out.renormSame = K.renormCaption(a, { ...b, A: { ...b.A, model: a.A.model } }, 0.5);
        out.geometry = K.geometryClause(a, b);
        out.sameGeometry = K.geometryClause(a, a);
        out.mismatch = K.gridMismatchCaption(a, side("m1", "Model one", grid(3, 3, 16, 48), "mean", 0));
        """,
        {"a": a.tolist(), "b": b.tolist()},
    )
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    sa = sb = 0.0
    for x, y in zip(a64, b64, strict=True):  # the page's order of summation
        sa += x
        sb += y
    expected = (b64 / sb - a64 / sa).astype(np.float32)
    np.testing.assert_array_equal(np.array(got["r"]["d"], dtype=np.float32), expected)
    assert abs(float(np.sum(np.array(got["r"]["d"], dtype=np.float64)))) < 1e-6
    assert got["r"]["sa"] == pytest.approx(float(a64.sum()), rel=1e-12)
    assert got["r"]["sb"] == pytest.approx(float(b64.sum()), rel=1e-12)
    assert got["r"]["m"] == pytest.approx(float(np.abs(expected).max()), rel=1e-7)
    assert got["r"]["arg"] == int(np.abs(expected).argmax())
    assert got["r"]["l1"] == pytest.approx(float(np.abs(expected.astype(np.float64)).sum()), rel=1e-7)
    assert got["zero"] == [0.25, 0.25, 0.5]  # a map that sums to 0 has no share anywhere
    assert "Head 3 of one model has nothing to do with head 1 of the other" in got["heads"]
    assert "only the head mean and rollout compare" in got["heads"] and "Model one" in got["heads"]
    assert "Head 3 of A has no counterpart" in got["oneHead"]
    assert "only the head mean and rollout compare" in got["oneHead"]
    assert got["renormCross"].startswith("A and B are different models (A: Model one, B: Model two)")
    assert "renormalised over its 4×4 patches" in got["renormCross"] and "= 0.5" in got["renormCross"]
    assert got["renormSame"].startswith("Shown: B̂ − Â")
    assert "A has 8 px patches at 32 px and B 16 px patches at 64 px" in got["geometry"]
    assert "grid cells, not image regions" in got["geometry"] and got["sameGeometry"] == ""
    assert "same grid of rows × columns" in got["mismatch"] and "patch size" not in got["mismatch"]
