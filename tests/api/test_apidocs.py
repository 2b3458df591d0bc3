"""/docs and /redoc are served from this origin (app/routers/apidocs.py): our templates, an external start script
each, and the vendored Swagger UI / ReDoc files; no CDN address and no inline script in what the server sends."""

from __future__ import annotations

import re
from pathlib import Path

import fastapi_offline
import pytest

from app.routers.apidocs import ASSETS, REDOC_LOGO, VENDOR

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)


@pytest.mark.parametrize(
    ("path", "assets"),
    [
        (
            "/docs",
            [
                "/vendor/apidocs/swagger-ui-bundle.js",
                "/vendor/apidocs/swagger-ui.css",
                "/static/js/apidocs/swagger.js",
            ],
        ),
        ("/redoc", ["/vendor/apidocs/redoc.standalone.js", "/static/js/apidocs/redoc.js"]),
    ],
)
def test_docs_pages_use_local_assets_only(client, path, assets) -> None:
    r = client.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert 'data-openapi="/openapi.json"' in html
    assert "http://" not in html and "https://" not in html  # no CDN
    assert not INLINE_SCRIPT.search(html), INLINE_SCRIPT.findall(html)
    for asset in assets:
        assert f'"{asset}"' in html
        got = client.get(asset)
        assert got.status_code == 200 and len(got.content) > 200, asset


def test_vendor_files_come_from_the_package(client) -> None:
    assert Path(fastapi_offline.__file__).parent / "static" == ASSETS
    for name, media in VENDOR.items():
        r = client.get(f"/vendor/apidocs/{name}")
        assert r.headers["content-type"].startswith(media)
        if name != "redoc.standalone.js":
            assert r.content == (ASSETS / name).read_bytes()
    redoc = client.get("/vendor/apidocs/redoc.standalone.js").content
    assert REDOC_LOGO in (ASSETS / "redoc.standalone.js").read_bytes() and REDOC_LOGO not in redoc
    assert len(redoc) > 500_000


@pytest.mark.parametrize("name", ["favicon.png", "../consts.py", "..%2Fcore.py", "swagger-ui.js"])
def test_only_the_listed_vendor_files_are_served(client, name) -> None:
    assert client.get(f"/vendor/apidocs/{name}").status_code == 404


def test_docs_are_not_in_the_schema(client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not {"/docs", "/redoc"} & set(paths) and not any(p.startswith("/vendor") for p in paths)
