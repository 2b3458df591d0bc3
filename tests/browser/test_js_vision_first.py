"""The first-look, side-by-side and /distance-unit helpers in Node (static/js/vision/firstlook.js,
static/js/vision/compare/state.js, static/js/figures/distance_units.js), against hand-written expectations."""

from __future__ import annotations

from tests.browser.test_js_modules import pytestmark, run_js  # noqa: F401  (skipped without node)


def test_compare_href_starts_b_different_at_a_resolution() -> None:
    got = run_js(
        """
        const St = await import(js("vision/compare/state.js"));
        const A = { model: { id: "m" }, grid: { resolution: 448 }, L: 12, H: 6 };
        const q = (s) => Object.fromEntries(new URLSearchParams(s.split("?")[1]));
        out.head = q(St.compareHref("?sample=chelsea&model=m&view=head&layer=3&head=2", data.models, A));
        out.wrap = q(St.compareHref("?sample=chelsea&model=m&view=head&layer=3&head=6", data.models, A));
        out.mean = q(St.compareHref("?sample=chelsea&model=m&view=mean&layer=8", data.models, A));
        out.last = q(St.compareHref("?sample=chelsea&model=m&view=mean&layer=12", data.models, A));
        out.rollout = q(St.compareHref("?sample=chelsea&model=m&view=rollout", data.models, A));
        """,
        {"models": [{"id": "m"}, {"id": "other"}]},
    )
    h = got["head"]
    assert (h["a.res"], h["b.res"], h["a.model"], h["b.model"], h["link"]) == ("448", "448", "m", "m", "0")
    assert (h["a.head"], h["b.head"], h["a.layer"], h["b.layer"]) == ("2", "3", "3", "3")
    assert got["wrap"]["b.head"] == "1"  # past the last of 6 heads
    assert (got["mean"]["b.view"], got["mean"]["b.layer"]) == ("mean", "12") and "renorm" not in got["mean"]
    assert got["last"]["b.view"] == "rollout" and got["last"]["renorm"] == "1"
    assert got["rollout"]["b.view"] == "mean" and "b.layer" not in got["rollout"]


def test_distance_unit_switches_only_for_mixed_geometry() -> None:
    got = run_js(
        """
        const U = await import(js("figures/distance_units.js"));
        const g = (resolution, rows, patch_size) => ({ geometry: { resolution, rows, cols: rows, patch_size } });
        const same = [g(224, 16, 14), g(224, 16, 14)], mixed = [g(448, 32, 14), g(224, 16, 14)];
        out.same = U.comparableUnit(same, "pixels", false);
        out.mixed = U.comparableUnit(mixed, "pixels", false);
        out.patches = U.comparableUnit(mixed, "patches", false);
        out.chosen = U.comparableUnit(mixed, "pixels", true);
        out.noteSame = U.unitNote(same, "pixels", false);
        out.noteDiag = U.unitNote(mixed, "diagonal", true);
        out.notePx = U.unitNote(mixed, "pixels", false);
        """,
        {},
    )
    assert (got["same"], got["mixed"], got["patches"], got["chosen"]) == (
        "pixels",
        "diagonal",
        "diagonal",
        "pixels",
    )
    assert got["noteSame"] == ""
    assert "448 px, 32×32 patches of 14 px vs 224 px, 16×16 patches of 14 px" in got["noteDiag"]
    assert "Switched from pixels automatically" in got["noteDiag"] and "do not compare" in got["notePx"]


def test_first_look_applies_only_what_the_url_leaves_open() -> None:
    got = run_js(
        """
        const F = await import(js("vision/firstlook.js"));
        const models = [{ id: "dinov2_vits14", resolutions: [224, 448] }, { id: "tiny", resolutions: [32] }];
        const look = F.firstLook(models, "tiny");
        const S0 = { model: "tiny", res: 0, layer: null, view: "head", sample: "" };
        const S1 = { ...S0 }; F.applyFirstLook(S1, look, "");
        const S2 = { ...S0 }; F.applyFirstLook(S2, look, "?view=head&layer=3");
        const S3 = { ...S0, model: "tiny" }; F.applyFirstLook(S3, look, "?model=tiny");
        out.look = look; out.S1 = S1; out.S2 = S2; out.S3 = S3;
        out.fallback = F.firstLook([{ id: "tiny", resolutions: [32] }], "tiny");
        """,
        {},
    )
    assert got["S1"] == {
        "model": "dinov2_vits14",
        "res": 448,
        "layer": 7,
        "view": "mean",
        "sample": "chelsea",
    }
    assert (
        got["S2"]["view"] == "head" and got["S2"]["layer"] is None and got["S2"]["model"] == "dinov2_vits14"
    )
    assert got["S3"] == {"model": "tiny", "res": 0, "layer": None, "view": "mean", "sample": "chelsea"}
    assert got["fallback"]["measured"] is False and got["fallback"]["layer"] is None
