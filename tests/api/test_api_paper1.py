"""Paper-1 figure API: positional encoding (Section 3.5), 1/sqrt(d_k) (Section 3.2.1), learned positions, pages."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from safetensors.numpy import save_file

from app.main import create_app
from app.serialization import decode_typed_array as decode
from models.figures.positional import dot_similarity_theory, relative_rotation, sinusoidal_encoding
from models.figures.scaling import single_row_example
from models.text.positions import learned_position_embeddings, mean_similarity_by_offset, minilm_weights_path
from tests.factories import tiny_settings

EPS = np.finfo(np.float64).eps  # float tolerances: this rounding level times a stated margin


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[TestClient]:
    settings = tiny_settings(tmp_path_factory.mktemp("paper1"), preload=False)
    with TestClient(create_app(settings)) as c:
        yield c


def get_ok(api: TestClient, url: str, **params) -> dict:
    r = api.get(url, params=params)
    assert r.status_code == 200, r.text
    return r.json()


# --- positional ----------------------------------------------------------------------------------------


def test_positional_shapes_values_and_linearity(api) -> None:
    body = get_ok(api, "/api/figures/positional", length=128, d_model=64, k=8)
    assert (body["length"], body["d_model"], body["k"], body["base"]) == (128, 64, 8, 10000.0)
    table = sinusoidal_encoding(128, 64)
    heat = body["heatmap"]
    assert (heat["position_stride"], heat["pair_stride"]) == (1, 1)
    assert np.array_equal(decode(heat["positions"]), np.arange(128))
    assert np.array_equal(decode(heat["dims"]), np.arange(64))
    np.testing.assert_allclose(decode(heat["values"]), table, atol=1e-7)
    assert body["dims"] == [0, 1, 16, 32]  # default: fastest sin/cos, then slower sines
    curves = decode(body["curves"])
    assert curves.shape == (4, 128)
    np.testing.assert_allclose(curves, table[:, body["dims"]].T, atol=1e-7)
    assert body["wavelengths"][0] == pytest.approx(2 * np.pi)

    sim = body["similarity"]
    theory = decode(sim["theory"])
    assert theory.shape == (128,) and theory[0] == pytest.approx(32.0)
    # d/2 = 32 cosines (or d = 64 products) per value, each known to eps * (pos + 1): margin 4
    dot_tol = 64 * 4 * EPS * (128 + 1)
    np.testing.assert_allclose(theory, dot_similarity_theory(np.arange(128), 64), atol=dot_tol, rtol=0)
    np.testing.assert_allclose(decode(sim["empirical"]), table @ table[0], atol=dot_tol, rtol=0)
    assert sim["starts"] == [0, 64, 127] and sim["max_deviation"] <= dot_tol

    lin = body["linearity"]
    residual = decode(lin["residual"])
    assert residual.shape == (128,) and residual.dtype == np.float64
    # two roundings of angles up to pos + k = 135, margin 2 (models/figures/positional.py LinearityResult)
    assert lin["max_residual"] <= 4 * EPS * (127 + 8 + 1) and lin["max_residual"] == pytest.approx(
        residual.max()
    )
    assert np.all(residual <= 8 * decode(lin["rounding_scale"]) + 1e-300)  # a few eps * (pos + k) at most
    assert lin["orthogonality_error"] <= 8 * EPS  # c^2 + s^2 - 1 within 4.5 eps; off-block entries exactly 0
    assert lin["m_k_size"] == 12
    np.testing.assert_array_equal(decode(lin["m_k"]), relative_rotation(8, 64)[:12, :12])
    assert decode(lin["phi"]).shape == (32,) and decode(lin["phi"])[0] == 8.0


def test_linearity_far_beyond_the_table_is_rounding_of_the_angle(api) -> None:
    lin = get_ok(api, "/api/figures/positional", length=64, d_model=128, k=-5, far=123_456_789)["linearity"]
    far = {f["pos"]: f for f in lin["far"]}
    assert sorted(far) == [10_000, 1_000_000, 123_456_789]
    for f in far.values():  # the residual is eps * pos within a small factor: rounding, not a failure
        assert 0 < f["residual"] < 10 * f["rounding_scale"]
        assert f["ratio"] == pytest.approx(f["residual"] / f["rounding_scale"])
    assert far[1_000_000]["residual"] <= 4 * EPS * (1_000_000 + 5 + 1)  # ~1e-9: rounding of the angle
    sweep_pos, sweep_res = decode(lin["sweep_positions"]), decode(lin["sweep_residual"])
    assert sweep_pos[0] == 1 and sweep_pos[-1] == pytest.approx(1e9) and sweep_res.shape == sweep_pos.shape
    big = sweep_pos > 1e3  # log-log slope of the residual ~ 1: it grows like eps * pos
    slope = np.polyfit(np.log(sweep_pos[big]), np.log(sweep_res[big]), 1)[0]
    assert 0.8 < slope < 1.2


def test_heatmap_is_strided_for_large_tables_but_curves_are_complete(api) -> None:
    body = get_ok(api, "/api/figures/positional", length=1100, d_model=600, k=3, dims="0,1,599")
    heat = body["heatmap"]
    assert (heat["position_stride"], heat["pair_stride"]) == (3, 2)
    positions, dims = decode(heat["positions"]), decode(heat["dims"])
    assert np.array_equal(positions, np.arange(0, 1100, 3))
    assert np.array_equal(dims[:6], [0, 1, 4, 5, 8, 9])  # sin and cos of a frequency stay together
    assert decode(heat["values"]).shape == (positions.size, dims.size)
    assert decode(body["curves"]).shape == (3, 1100)
    assert body["linearity"]["max_residual"] <= 4 * EPS * (1100 + 3 + 1)  # see test_positional_shapes...
    assert decode(body["linearity"]["residual"]).shape == (1100,)


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"d_model": 7}, "even"),
        ({"d_model": 2050}, "d_model"),
        ({"d_model": 0}, "d_model"),
        ({"length": 10_001}, "length"),
        ({"length": 1}, "length"),
        ({"k": 20_000}, "k"),
        ({"far": 0}, "far"),
        ({"dims": "0,200"}, "200 is not a dimension"),
        ({"dims": "1,2,3,4,5,6,7,8,9"}, "at most 8"),
        ({"dims": "a,b"}, "dims"),
        ({"length": "many"}, "length"),
    ],
)
def test_positional_bad_input_is_a_clear_422(api, params, needle) -> None:
    r = api.get("/api/figures/positional", params={"length": 64, "d_model": 128, **params})
    assert r.status_code == 422
    assert needle in r.json()["detail"]


def test_learned_positions_minilm(api) -> None:
    body = get_ok(api, "/api/figures/positional/learned")
    assert (body["n"], body["hidden"], body["max_positions"]) == (512, 384, 512)
    learned, sinus = decode(body["learned"]), decode(body["sinusoidal"])
    assert learned.shape == sinus.shape == (512, 512)
    np.testing.assert_allclose(np.diag(learned), 1.0, atol=1e-6)
    np.testing.assert_allclose(learned, learned.T, atol=1e-6)
    # sinusoidal cosine similarity depends on the offset only: its diagonal means are the closed form / (d/2)
    np.testing.assert_allclose(
        decode(body["offset_sinusoidal"]), dot_similarity_theory(np.arange(512), 384) / 192, atol=1e-6
    )
    off = decode(body["offset_learned"])
    assert off[0] == pytest.approx(1.0) and off[1] > off[100]  # neighbours are the most similar
    assert decode(body["norms"]).shape == (512,)
    small = get_ok(api, "/api/figures/positional/learned", n=16)
    assert decode(small["learned"]).shape == (16, 16)
    np.testing.assert_allclose(decode(small["learned"]), learned[:16, :16], atol=1e-6)
    assert api.get("/api/figures/positional/learned", params={"n": 513}).status_code == 422


def test_text_positions_reader(tmp_path) -> None:
    table = learned_position_embeddings()
    assert table.shape == (512, 384) and table.dtype == np.float32
    assert minilm_weights_path().name == "model.safetensors"
    path = tmp_path / "w.safetensors"
    save_file({"embeddings.position_embeddings.weight": np.eye(4, 3, dtype=np.float32)}, str(path))
    np.testing.assert_array_equal(learned_position_embeddings(path), np.eye(4, 3))
    with pytest.raises(KeyError):
        learned_position_embeddings(path, key="nope")
    toeplitz = np.array([[1.0, 0.5, 0.1], [0.5, 1.0, 0.5], [0.1, 0.5, 1.0]])
    np.testing.assert_allclose(mean_similarity_by_offset(toeplitz), [1.0, 0.5, 0.1])
    with pytest.raises(ValueError):
        mean_similarity_by_offset(np.ones((2, 3)))


# --- scaling -------------------------------------------------------------------------------------------


def test_scaling_shapes_and_saturation_evidence(api) -> None:
    body = get_ok(api, "/api/figures/scaling", d_k=1024, n_keys=64, n_samples=256)
    grid = decode(body["grid"])
    assert grid[0] == 1 and grid[-1] == 1024 and grid.dtype == np.int32
    for key in ("variance", "variance_theory", "variance_stderr", "scaled_variance"):
        assert decode(body[key]).shape == grid.shape
    np.testing.assert_array_equal(decode(body["variance_theory"]), grid)
    slope = np.polyfit(np.log(grid), np.log(decode(body["variance"])), 1)[0]
    assert slope == pytest.approx(1.0, abs=0.05)  # footnote 4: Var(q . k) = d_k

    un, sc = body["unscaled"], body["scaled"]
    assert set(un) == {"max_prob", "max_prob_median", "entropy", "entropy_median", "jacobian_fro",
                       "jacobian_fro_median", "logit_rms"}  # fmt: skip
    at = body["at"]
    assert at["d_k"] == 1024
    # The claim: saturation without scaling, none with it.
    assert at["unscaled"]["max_prob"] > 0.9 and at["scaled"]["max_prob"] < 0.2
    assert at["unscaled"]["entropy"] < 0.3 and at["scaled"]["entropy"] > 3.0
    assert at["unscaled"]["jacobian_fro_median"] < 1e-2 < 0.1 < at["scaled"]["jacobian_fro_median"]
    assert at["unscaled"]["jacobian_fro"] > at["unscaled"]["jacobian_fro_median"]  # the mean understates it
    # d_k = 1024 is on the grid and has its own random stream: the point equals the curve there
    assert at["unscaled"]["max_prob"] == pytest.approx(decode(un["max_prob"])[-1])
    assert at["variance"] == pytest.approx(decode(body["variance"])[-1])
    scaled_mp = decode(sc["max_prob"])
    assert scaled_mp.max() - scaled_mp.min() < 0.05  # flat in d_k with the scaling

    row = body["row"]
    ref = single_row_example(1024, 16, 0)
    np.testing.assert_allclose(decode(row["logits_unscaled"]), ref.logits_unscaled)
    np.testing.assert_allclose(decode(row["p_scaled"]), ref.p_scaled)
    assert decode(row["p_unscaled"]).sum() == pytest.approx(1.0)
    assert row["unscaled"]["max_prob"] > row["scaled"]["max_prob"]


def test_scaling_slider_changes_the_row(api) -> None:
    a = get_ok(api, "/api/figures/scaling", d_k=4, n_samples=64)
    b = get_ok(api, "/api/figures/scaling", d_k=512, n_samples=64)
    assert a["at"]["d_k"] == 4 and b["at"]["d_k"] == 512
    assert not np.allclose(decode(a["row"]["p_unscaled"]), decode(b["row"]["p_unscaled"]))
    np.testing.assert_array_equal(decode(a["unscaled"]["max_prob"]), decode(b["unscaled"]["max_prob"]))


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"d_k": 0}, "d_k"),
        ({"d_k": 1025}, "d_k"),
        ({"n_keys": 1}, "n_keys"),
        ({"n_keys": 1024, "n_samples": 4096}, "n_keys x n_samples"),
        ({"distribution": "cauchy"}, "distribution"),
        ({"row_keys": 65}, "row_keys"),
        ({"var_samples": 10}, "var_samples"),
    ],
)
def test_scaling_bad_input_is_a_clear_422(api, params, needle) -> None:
    r = api.get("/api/figures/scaling", params=params)
    assert r.status_code == 422
    assert needle in r.json()["detail"]


# --- pages ---------------------------------------------------------------------------------------------


def test_pages_render_with_their_scripts_and_links(api) -> None:
    for path, script in [("/positional", "positional.js"), ("/scaling", "scaling.js"), ("/tour", "tour.js")]:
        r = api.get(path)
        assert r.status_code == 200 and f"/static/js/figures/{script}" in r.text
        assert 'class="active" aria-current="page"' in r.text
    tour = api.get("/tour").text
    for link in ("kind=cross", "kind=decoder_self", "kind=encoder_self", "/vision?sample=astronaut&amp;view=rollout", "/vit-embeddings",
                 "/distance", "/scaling?d_k=1024", "/positional?"):  # fmt: skip
        assert link in tour, link
