"""Hardening: host check, security headers, request ids, JSON 500s without internals, body limits, ids."""

from __future__ import annotations

import json
import logging

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.factories import tiny_settings


def test_security_headers_on_pages_api_and_static(client) -> None:
    for url in ("/", "/vision", "/api/health", "/static/css/app.css", "/api/vision/samples"):
        r = client.get(url)
        assert r.status_code == 200, url
        csp = r.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and "default-src 'self'" in csp
        assert "unsafe-eval" not in csp
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert len(r.headers["X-Request-ID"]) == 12


def test_error_responses_carry_the_headers_too(client) -> None:
    r = client.get("/api/vision/analysis/nope/rollout")
    assert r.status_code == 404 and r.json()["detail"]
    assert r.headers["X-Content-Type-Options"] == "nosniff" and "X-Request-ID" in r.headers


def test_unknown_host_is_refused(client) -> None:
    r = client.get("/api/health", headers={"Host": "evil.example"})
    assert r.status_code == 400
    assert client.get("/api/health", headers={"Host": "localhost:8000"}).status_code == 200


def test_default_allowed_hosts_are_local_only() -> None:
    from app.settings import Settings

    assert set(Settings().server.allowed_hosts) <= {"localhost", "127.0.0.1", "[::1]"}


def test_unexpected_exception_is_a_json_500_with_a_request_id_and_no_internals(tmp_path, caplog) -> None:
    app = create_app(tiny_settings(tmp_path))

    @app.get("/api/test-boom")
    def boom() -> None:
        raise RuntimeError("secret internal detail /etc/passwd")

    with TestClient(app, raise_server_exceptions=False) as c, caplog.at_level(logging.ERROR):
        r = c.get("/api/test-boom")
        assert r.status_code == 500
        body = r.json()
        assert "secret" not in r.text and "RuntimeError" not in r.text and "Traceback" not in r.text
        assert body["request_id"] == r.headers["X-Request-ID"] and body["request_id"] in body["detail"]
        # the log has the details, under the same id
        assert any(body["request_id"] in rec.getMessage() for rec in caplog.records)
        assert "secret internal detail" in caplog.text
        assert c.get("/api/health").status_code == 200  # and the server keeps serving


def test_json_bodies_are_limited_to_64_kb(client) -> None:
    big = json.dumps({"text": "a " * 40_000, "model": "tiny-bert"})
    assert len(big) > 64 * 1024
    r = client.post("/api/text/analyze", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "64 KB" in r.json()["detail"]

    def chunks():  # no Content-Length: cut off while streaming
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192].encode()

    r = client.post("/api/text/analyze", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert client.get("/api/health").status_code == 200


def test_uploads_keep_the_upload_limit_not_the_json_one(client) -> None:
    from PIL import Image

    from tests.factories import image_bytes

    img = Image.effect_noise((300, 300), 64).convert("RGB")
    data = image_bytes(img)
    assert 64 * 1024 < len(data) < 1024 * 1024  # over the JSON limit, under the 1 MB test upload limit
    r = client.post("/api/vision/analyze", files={"image": ("noise.png", data, "image/png")})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("secret", ["one" * 11, "two" * 11])  # secrets have at least 32 bytes
def test_ids_are_keyed_by_the_server_secret(tmp_path, secret) -> None:
    from app.state import AppState

    a = AppState.create(tiny_settings(tmp_path, secret_key=secret))
    b = AppState.create(tiny_settings(tmp_path, secret_key=secret))
    c = AppState.create(tiny_settings(tmp_path, secret_key=secret + "x"))
    try:
        assert a.keyed_id("img", "model", "224") == b.keyed_id("img", "model", "224")  # stable: permalinks
        assert a.keyed_id("img", "model", "224") != c.keyed_id("img", "model", "224")  # unguessable offline
        assert a.keyed_id("img", "model", "224") != a.keyed_id("img", "model", "448")
        assert a.keyed_id("\ud800") != a.keyed_id("?")  # lone surrogates never raise here
    finally:
        for s in (a, b, c):
            s.shutdown()
