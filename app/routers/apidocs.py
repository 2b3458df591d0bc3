"""The API's interactive docs, /docs (Swagger UI) and /redoc (ReDoc), served from this origin.

FastAPI's own pages load both from a CDN and start them with an inline script; the app's
Content-Security-Policy (``script-src 'self'``, see app/middleware.py) blocks both, so they were blank. Here the
assets come from the ``fastapi-offline`` package (it ships Swagger UI's ``swagger-ui-bundle.js`` and
``swagger-ui.css`` and ReDoc's ``redoc.standalone.js``), served under ``/vendor/apidocs/``; the pages are our
templates (templates/apidocs/) and each is started by an external module (static/js/apidocs/), so nothing
needs a CDN, an inline script or a network beyond this server."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from app.routers.pages import templates

ASSETS = Path(fastapi_offline.__file__).parent / "static"
# file name -> media type: the only files served (no path from the request reaches the file system)
VENDOR = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
}

# ReDoc's sidebar credit shows a logo from its vendor's CDN: the only outside request either page makes. The
# CSP would refuse it (img-src), so ReDoc's copy is served with that URL replaced by an empty data: URL,
# which fails to decode; ReDoc then hides the <img> (its own onError) and keeps the text credit.
REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
CACHE = {"Cache-Control": "public, max-age=86400"}

router = APIRouter(include_in_schema=False)


@cache
def _redoc_js() -> bytes:
    return (ASSETS / "redoc.standalone.js").read_bytes().replace(REDOC_LOGO, b"data:,")


@router.get("/vendor/apidocs/{name}", response_model=None)
def apidocs_asset(name: str) -> FileResponse | Response:
    if name not in VENDOR:
        raise HTTPException(404, f"No such file: {name}")
    if name == "redoc.standalone.js":
        return Response(_redoc_js(), media_type=VENDOR[name], headers=CACHE)
    return FileResponse(ASSETS / name, media_type=VENDOR[name], headers=CACHE)


def _page(request: Request, template: str, title: str) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    return templates.TemplateResponse(
        request, template, {"title": title, "root": root, "openapi_url": f"{root}{request.app.openapi_url}"}
    )


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui(request: Request) -> HTMLResponse:
    """Swagger UI: every operation, its parameters and schemas, with "Try it out" against this server."""
    return _page(request, "apidocs/swagger.html", "API docs (Swagger UI)")


@router.get("/redoc", response_class=HTMLResponse)
def redoc(request: Request) -> HTMLResponse:
    """ReDoc: the same OpenAPI document as one long reference page."""
    return _page(request, "apidocs/redoc.html", "API reference (ReDoc)")
