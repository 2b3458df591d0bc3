"""Attention mass by relative offset (issue 8, section 6): the profile's definition on maps with a known
answer, its agreement with the statistics table's positional score, and the API for a bundled input set
(MiniLM-style sentences, generated dates with encoder, decoder and cross heads) and for one analysis."""

from __future__ import annotations

import numpy as np
import pytest

from app.serialization import decode_typed_array
from app.services import offsets as offsets_service
from models.text.offsets import ProfileMean, narrow, offset_profile, positional_score
from models.text.stats import STAT_NAMES, head_stats
from tests.factories import tiny_settings

TOL = 1e-12  # float64 sums of at most a few hundred float32 terms of exact values (0, 1, 1/n)


def previous_token(t: int) -> np.ndarray:
    a = np.zeros((t, t))  # (T, T)
    a[0, 0] = 1.0
    a[np.arange(1, t), np.arange(t - 1)] = 1.0
    return a


def test_previous_token_head_scores_near_one_at_minus_one() -> None:
    t, w = 10, 3
    p = offset_profile(previous_token(t)[None], w)[0]  # (2W + 3,)
    assert p.shape == (2 * w + 3,)
    # columns: d < -3, -3, -2, -1, 0, 1, 2, 3, d > 3
    np.testing.assert_allclose(p, [0, 0, 0, 0.9, 0.1, 0, 0, 0, 0], atol=TOL)
    score, best = positional_score(p)
    assert best == -1 and abs(score - 0.9) < TOL


def test_uniform_attention_scores_one_over_n_and_tails_hold_the_rest() -> None:
    t, w = 20, 4
    p = offset_profile(np.full((1, 1, t, t), 1 / t), w)[0, 0]  # (2W + 3,)
    np.testing.assert_allclose(p.sum(), 1.0, atol=TOL)
    d = np.arange(-w, w + 1)
    np.testing.assert_allclose(p[1:-1], (t - np.abs(d)) / t**2, atol=TOL)  # a diagonal of t - |d| cells
    np.testing.assert_allclose(p[0], p[-1], atol=TOL)  # symmetric tails
    score, best = positional_score(p)
    assert best == 0 and abs(score - 1 / t) < TOL


def test_cross_shapes_and_row_weighted_mean() -> None:
    rng = np.random.default_rng(0)
    a = rng.dirichlet(np.ones(7), size=(2, 3, 5))  # (L, H, Tq=5, Tk=7) rows sum to 1
    p = offset_profile(a, 2)  # (L, H, 7)
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-12)
    b = rng.dirichlet(np.ones(4), size=(2, 3, 2))  # (L, H, 2, 4)
    m = ProfileMean()
    m.add(a, 2)
    m.add(b, 2)
    np.testing.assert_allclose(m.mean(), (5 * p + 2 * offset_profile(b, 2)) / 7, atol=1e-12)
    with pytest.raises(ValueError):
        ProfileMean().mean()


def test_table_positional_score_matches_the_offset_profile() -> None:
    rng = np.random.default_rng(3)
    a = rng.dirichlet(np.ones(12), size=(4, 12)).astype(np.float32)  # (H, T, T)
    a[1] = previous_token(12)
    special = np.zeros(12, bool)
    s = head_stats(a, a, special, special, same_axis=True)  # (H, S)
    score, _ = positional_score(offset_profile(a, 8))
    col = STAT_NAMES.index("positional")
    np.testing.assert_allclose(s[:, col], score, rtol=1e-6)
    assert abs(s[1, col] - 11 / 12) < 1e-6
    cross = head_stats(a[:, :5], a[:, :5], special, special[:5], same_axis=False)
    assert np.isnan(cross[:, col]).all()  # needs queries and keys on one sequence


@pytest.fixture
def client(tmp_path, app_client):
    return app_client(tiny_settings(tmp_path, preload=False))


def check_blocks(j: dict, kinds: list[str]) -> None:
    assert [b["kind"] for b in j["blocks"]] == kinds
    w = j["window"]
    assert j["offsets"] == list(range(-w, w + 1))
    for b in j["blocks"]:
        p = decode_typed_array(b["profile"])  # (L, H, 2W + 3)
        assert p.shape == (b["layers"], b["heads"], 2 * w + 3)
        np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-5)  # float32 of a distribution
        score, best = decode_typed_array(b["score"]), decode_typed_array(b["best_offset"])
        np.testing.assert_allclose(score, p[..., 1:-1].max(-1), atol=0)
        assert ((best >= -w) & (best <= w)).all()
        # the null (uniform attention over the allowed keys) and the excess over it, offset by offset
        null = decode_typed_array(b["null_profile"])  # (2W + 3,)
        np.testing.assert_allclose(null.sum(), 1.0, atol=1e-5)
        assert b["null_score"] == pytest.approx(float(null[1:-1].max()), abs=1e-6)
        excess = decode_typed_array(b["excess"])  # (L, H)
        np.testing.assert_allclose(excess, (p - null)[..., 1:-1].max(-1), atol=1e-6)
        share = decode_typed_array(b["offset_share"])  # (L, H)
        ok = np.isnan(share) | ((share >= -1e-6) & (share <= 1 + 1e-6))
        assert share.shape == excess.shape and ok.all()


def test_corpus_for_an_encoder_and_for_the_date_model(client) -> None:
    r = client.get("/api/text/offsets", params={"model": "tiny-bert"})
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["source"] == "corpus" and j["inputs"] == list(offsets_service.SENTENCES) and j["window"] == 8
    check_blocks(j, ["encoder_self"])
    again = client.get("/api/text/offsets", params={"model": "tiny-bert"})
    assert again.content == r.content  # cached

    d = client.get("/api/text/offsets", params={"model": "tiny-dates", "window": 4}).json()
    assert len(d["inputs"]) == offsets_service.N_DATES and any(c.isdigit() for c in d["inputs"][0])
    check_blocks(d, ["encoder_self", "decoder_self", "cross"])
    dec = next(b for b in d["blocks"] if b["kind"] == "decoder_self")
    p = decode_typed_array(dec["profile"])
    np.testing.assert_allclose(p[..., -1], 0.0, atol=0)  # causal: no key beyond +W ...
    np.testing.assert_allclose(p[..., 6:-1], 0.0, atol=0)  # ... nor any future key (d = 1..4)


def test_analysis_offsets_and_bad_requests(client) -> None:
    a = client.post("/api/text/analyze", json={"text": "The cat sat on the mat."}).json()
    r = client.get(f"/api/text/analysis/{a['analysis_id']}/offsets", params={"window": 3})
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["source"] == "analysis"
    check_blocks(j, ["encoder_self"])
    # the same numbers as the definition applied to the exact maps
    full = np.stack(
        [
            decode_typed_array(
                client.get(
                    f"/api/text/analysis/{a['analysis_id']}/layer",
                    params={"kind": "encoder_self", "layer": layer, "dtype": "f4"},
                ).json()["data"]
            )
            for layer in range(a["blocks"][0]["layers"])
        ]
    )  # (L, H, T, T)
    np.testing.assert_allclose(
        decode_typed_array(j["blocks"][0]["profile"]), offset_profile(full, 3), rtol=1e-5, atol=1e-7
    )
    assert client.get("/api/text/analysis/nope/offsets").status_code == 404
    assert client.get("/api/text/offsets", params={"window": 0}).status_code == 422
    assert client.get("/api/text/offsets", params={"window": 33}).status_code == 422
    assert client.get("/api/text/offsets", params={"model": "nope"}).status_code in (400, 404)


def test_a_narrower_window_is_derived_exactly_from_a_wider_one() -> None:
    a = np.random.default_rng(5).dirichlet(np.ones(15), size=(2, 15))  # (H, T, T)
    for w in (0, 1, 3, 8):
        np.testing.assert_allclose(narrow(offset_profile(a, 8), w), offset_profile(a, w), atol=1e-12)
    with pytest.raises(ValueError):
        narrow(offset_profile(a, 2), 3)


def test_openapi_lists_the_offsets_model_allowlist(client) -> None:
    """``GET /api/text/offsets``'s ``model`` carries the same allowlist enum as ``POST /api/text/analyze``."""
    schema = client.get("/openapi.json").json()
    params = {p["name"]: p["schema"] for p in schema["paths"]["/api/text/offsets"]["get"]["parameters"]}
    ids = sorted(client.app.state.atlas.settings.models.text_specs())
    assert params["model"]["type"] == "string" and params["model"]["enum"] == ids
    body = schema["components"]["schemas"]["TextAnalyzeRequest"]["properties"]["model"]
    assert [b for b in body.get("anyOf", [body]) if "enum" in b][0]["enum"] == ids
