"""static/js/lib/valueweight.js in Node against numpy: the browser's value weighting (rows × norms, renormalised)
and the model view's weighted thumbnails, pooled and quantised as the server pools α (models/text/stats.py)."""

from __future__ import annotations

import numpy as np
import pytest

from models.text.stats import pool_max, quantise_u8
from models.value_norms import value_weighted
from tests.browser.test_js_modules import NODE, run_js

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


def test_weighted_analysis_matches_numpy():
    rng = np.random.default_rng(0)
    L, H, T, thumb = 2, 3, 11, 4
    alpha = rng.random((L, H, T, T)).astype(np.float32)
    alpha /= alpha.sum(-1, keepdims=True)
    norms = rng.random((L, H, T)).astype(np.float32) + 0.1
    got = run_js(
        """
        const V = await import(js("lib/valueweight.js"));
        const { L, H, T, thumb } = data, n = T * T;
        const alpha = Float32Array.from(data.alpha), norms = Float32Array.from(data.norms);
        const block = { heads: H, n_query: T, n_key: T, thumbsT: { shape: [L, H + 1, thumb, thumb] } };
        const base = {
          resp: {}, id: "x", options: {}, block: () => block,
          layer: async (k, l) => ({ values: alpha.subarray(l * H * n, (l + 1) * H * n), factor: 1 }),
          head: async (k, l, h) => alpha.subarray((l * H + h) * n, (l * H + h + 1) * n),
        };
        const W = new V.WeightedAnalysis(base, { blocks: new Map([["enc", { norms }]]) });
        out.layer = Array.from((await W.layer("enc", 1)).values);
        out.head = Array.from(await W.head("enc", 0, 2));
        out.mean = Array.from(await W.head("enc", 1, "mean"));
        await W.prepare("enc");
        out.thumbs = Array.from(W.block("enc").thumbsT.data);
        out.scale = Array.from(W.block("enc").scaleT.data);
        """,
        {
            "L": L,
            "H": H,
            "T": T,
            "thumb": thumb,
            "alpha": alpha.ravel().tolist(),
            "norms": norms.ravel().tolist(),
        },
    )
    w = value_weighted(alpha, norms)  # (L, H, T, T)
    np.testing.assert_allclose(np.array(got["layer"]).reshape(H, T, T), w[1], atol=1e-6)
    np.testing.assert_allclose(got["head"], w[0, 2].ravel(), atol=1e-6)
    np.testing.assert_allclose(got["mean"], w[1].mean(0).ravel(), atol=1e-6)
    pooled = np.stack(
        [np.concatenate([pool_max(w[i], thumb), pool_max(w[i].mean(0), thumb)[None]]) for i in range(L)]
    )
    thumbs, scale = zip(*(quantise_u8(p, per_map=True) for p in pooled), strict=True)
    np.testing.assert_allclose(got["scale"], np.stack(scale).ravel(), rtol=1e-6)
    assert np.abs(np.array(got["thumbs"]) - np.stack(thumbs).ravel().astype(int)).max() <= 1  # rounding ties
