"""Issue 17, "nothing leaks between users": no ``cached`` flag, unambiguous keyed ids and a long secret,
generic job errors, labels without paths, body limits by route, security headers on 500s, ``[::1]``, and
loader keyword arguments that load pickles or remote code refused."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time

import pytest
from fastapi.testclient import TestClient

from app.cli import main
from app.jobs import JobRegistry
from app.main import create_app
from app.settings import Settings, TextModelEntry
from tests.conftest import TINY_SPECS, tiny_settings


def test_responses_do_not_tell_whether_someone_else_asked_first(client) -> None:
    first = client.post("/api/vision/analyze", data={"sample": "coffee"}).json()
    again = client.post("/api/vision/analyze", data={"sample": "coffee"}).json()
    assert "cached" not in first and "cached" not in again
    assert again["forward_ms"] == first["forward_ms"] > 0  # the first forward's time, not 0 for "cached"
    body = {"text": "The cat sat.", "model": "tiny-bert"}
    t1 = client.post("/api/text/analyze", json=body).json()
    t2 = client.post("/api/text/analyze", json=body).json()
    assert "cached" not in t1 and "cached" not in t2 and t1 == t2


def test_keyed_ids_length_prefix_their_parts(client) -> None:
    state = client.app.state.atlas
    assert state.keyed_id("12 March\x002021", "t") != state.keyed_id("12 March", "2021\x00t")
    assert state.keyed_id("ab", "c") != state.keyed_id("a", "bc")
    a = client.post(
        "/api/text/analyze", json={"text": "12 March\u00002021", "target": "t", "model": "tiny-dates"}
    )
    b = client.post(
        "/api/text/analyze", json={"text": "12 March", "target": "2021\u0000t", "model": "tiny-dates"}
    )
    if a.status_code == 200 and b.status_code == 200:
        assert a.json()["analysis_id"] != b.json()["analysis_id"]


def test_keyed_id_is_the_hmac_of_the_length_prefixed_parts(tmp_path) -> None:
    import hashlib
    import hmac

    from app.state import AppState

    secret = "s" * 32
    state = AppState.create(tiny_settings(tmp_path, secret_key=secret))
    try:
        message = b"5:image3:abc0:"  # "image", "abc", "": each part as <bytes>:<part>
        want = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:24]
        assert state.keyed_id("image", "abc", "") == want
        assert (
            state.keyed_id("é") == hmac.new(secret.encode(), "2:é".encode(), hashlib.sha256).hexdigest()[:24]
        )
    finally:
        state.shutdown()


def test_secret_key_must_be_at_least_32_bytes(tmp_path) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Settings(secret_key="too short")
    Settings(secret_key="x" * 32)
    Settings(secret_key=None)


def test_the_cli_refuses_a_short_secret_with_one_line(monkeypatch, capsys) -> None:
    monkeypatch.setenv("ATLAS_SECRET_KEY", "short")
    assert main(["serve", "--check"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "32 bytes" in err


def test_failed_jobs_show_a_generic_error_with_a_reference(caplog) -> None:
    reg = JobRegistry(max_active=2)

    def crash(job):
        raise RuntimeError("secret detail /home/alice/photos")

    with caplog.at_level(logging.ERROR):
        job = reg.submit(crash, "t", {})
        deadline = time.monotonic() + 5
        while job.status != "failed":
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert "secret" not in job.error and "RuntimeError" not in job.error
    ref = job.error.split("reference ")[1].split(")")[0]
    assert len(ref) >= 8 and ref in caplog.text and "secret detail" in caplog.text


def test_a_failed_job_quotes_the_request_id_of_its_start(client, monkeypatch, caplog) -> None:
    from app.services import distance as distance_service

    def crash(*a, **k):
        raise RuntimeError("secret detail /srv/models")

    monkeypatch.setattr(distance_service, "dataset_mean_attention_distance", crash)
    with caplog.at_level(logging.ERROR):
        r = client.post("/api/distance/jobs", data={"source": "samples"})
        job = r.json()
        while job["status"] not in ("done", "failed", "cancelled"):
            time.sleep(0.02)
            job = client.get(job["job_url"]).json()
    assert job["status"] == "failed" and "secret" not in job["error"]
    assert r.headers["X-Request-ID"] in job["error"] and r.headers["X-Request-ID"] in caplog.text


def test_labels_fall_back_to_the_id_never_a_path(tmp_path) -> None:
    vision = dataclasses.replace(TINY_SPECS[0], id="nolabel", label="")
    text = TextModelEntry(id="mine", kind="encoder", source="random", name="bert", label="")
    settings = tiny_settings(tmp_path, extra_vision_models=[vision], extra_text_models=[text], preload=False)
    with TestClient(create_app(settings)) as c:
        listed = {m["id"]: m["label"] for m in c.get("/api/models").json()["models"]}
        assert listed["nolabel"] == "nolabel"
        r = c.post("/api/vision/analyze", data={"sample": "coffee", "model": "nolabel"}).json()
        assert r["model"]["label"] == "nolabel"
        t = c.post("/api/text/analyze", json={"text": "a b", "model": "mine"}).json()
        assert t["model"]["label"] == "mine"


def test_a_local_folder_model_does_not_show_its_path(tmp_path) -> None:
    from app.schemas.vision_views import public_arch_tag

    assert public_arch_tag("local-dir:/home/alice/models/vit") == "local-dir:vit"
    assert public_arch_tag("vit_small_patch14_dinov2.lvd142m") == "vit_small_patch14_dinov2.lvd142m"


def test_body_limit_is_chosen_by_route_not_content_type(client) -> None:
    big = b"x" * (1024 * 1024)
    r = client.post(
        "/api/text/analyze", content=big, headers={"Content-Type": "multipart/form-data; boundary=x"}
    )
    assert r.status_code == 413 and "64 KB" in r.json()["detail"]
    chunked = client.post(
        "/api/text/analyze",
        content=iter([big[:40_000], big[:40_000]]),
        headers={"Content-Type": "multipart/form-data; boundary=x"},
    )
    assert chunked.status_code == 413


def test_500s_carry_the_security_headers(tmp_path) -> None:
    app = create_app(tiny_settings(tmp_path, preload=False))

    @app.get("/api/test-boom")
    def boom() -> None:
        raise RuntimeError("boom")

    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/api/test-boom")
    assert r.status_code == 500
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["X-Frame-Options"] == "DENY"


def test_ipv6_loopback_host_is_allowed(tmp_path) -> None:
    settings = tiny_settings(tmp_path, preload=False, allowed_hosts=["localhost", "127.0.0.1", "[::1]"])
    with TestClient(create_app(settings)) as c:
        assert c.get("/api/health", headers={"Host": "[::1]:8000"}).status_code == 200
        assert c.get("/api/health", headers={"Host": "[::1]"}).status_code == 200
        assert c.get("/api/health", headers={"Host": "[::2]:8000"}).status_code == 400
        assert c.get("/api/health", headers={"Host": "localhost:8000"}).status_code == 200
        assert c.get("/api/health", headers={"Host": "evil.example"}).status_code == 400


@pytest.mark.parametrize(
    "argv",
    [
        ["--vision-model", "vit_tiny_patch16_224,checkpoint_path=/tmp/evil.pth"],
        ["--vision-model", "vit_tiny_patch16_224,pretrained_cfg_overlay=x"],
        ["--text-model", "bert-base-uncased,trust_remote_code=true"],
    ],
    ids=["checkpoint_path", "pretrained_cfg_overlay", "trust_remote_code"],
)
def test_loader_kwargs_that_load_code_are_refused_from_flags(argv, capsys, monkeypatch) -> None:
    for key in ("ATLAS_SECRET_KEY", "ATLAS_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    assert main(["serve", "--check", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not allowed" in err, err


@pytest.mark.parametrize(
    "toml",
    [
        '[[extra_vision_models]]\nid = "x"\narch_tag = "vit_tiny_patch16_224"\n'
        'timm_kwargs = { pretrained_cfg_overlay = { file = "/tmp/evil.pth" } }\n',
        '[[extra_text_models]]\nid = "x"\nkind = "encoder"\nname = "bert-base-uncased"\n'
        "config = { trust_remote_code = true }\n",
        '[[extra_text_models]]\nid = "x"\nkind = "encoder"\nname = "bert-base-uncased"\n'
        'config = { code_revision = "main" }\n',
    ],
    ids=["timm", "from_pretrained", "code_revision"],
)
def test_loader_kwargs_that_load_code_are_refused_from_toml(toml, tmp_path, capsys, monkeypatch) -> None:
    for key in ("ATLAS_SECRET_KEY", "ATLAS_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    path = tmp_path / "atlas.toml"
    path.write_text(toml)
    assert main(["serve", "--check", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not allowed" in err, err


def test_cancel_of_an_unknown_or_foreign_subscription_is_404(client) -> None:
    assert client.post("/api/distance/jobs/nope/cancel").status_code == 404


def test_the_registry_counts_only_live_subscriptions() -> None:
    reg = JobRegistry(max_active=4, per_owner=2)
    gate = threading.Event()
    try:
        a = reg.submit(lambda j: gate.wait(5), "t", {}, key="k", owner="alice")
        b = reg.submit(lambda j: gate.wait(5), "t", {}, key="k", owner="bob")
        assert a.id != b.id and a.job is b.job
        assert reg.cancel(a.id, owner="bob") is None  # not Bob's
        assert reg.cancel(b.id, owner="bob").status == "cancelled"
        assert not a.job.cancel_event.is_set()
    finally:
        gate.set()


def test_upload_routes_are_the_ones_that_take_files(client) -> None:
    from app.middleware import upload_route_matcher

    is_upload = upload_route_matcher(client.app.openapi)
    assert is_upload("POST", "/api/vision/analyze") and is_upload("POST", "/api/distance/jobs")
    assert not is_upload("POST", "/api/text/analyze") and not is_upload("GET", "/api/distance/jobs/x")
    assert not is_upload("POST", "/api/distance/jobs/abc/cancel")
