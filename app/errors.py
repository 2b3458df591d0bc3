"""Every error leaves as JSON ``{"detail": "<human message>"}`` with a 4xx/5xx status.

The services' error family (:mod:`app.services.errors`: images, unknown models, invalid options, expired
analyses, busy executors, ...) is answered by ONE handler, each class with its own status. Request
validation answers 422 with the list of ``errors``; routers may still raise FastAPI's ``HTTPException``.

An unexpected exception becomes a JSON 500 with a generic message and the request id (also in the
``X-Request-ID`` header); the traceback goes to the log under that id and never into the response.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.middleware import SECURITY_HEADERS
from app.schemas.common import BusyResponse, ErrorResponse
from app.services.errors import ServiceError

log = logging.getLogger("atlas.errors")


def request_id_of(request: Request) -> str:
    """The id that :class:`app.middleware.RequestContext` gave this request."""
    return request.scope.get("state", {}).get("request_id") or "-"


def _describe(err: dict) -> str:
    loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "form"))
    msg = err.get("msg", "invalid value")
    if err.get("type") == "json_invalid":
        return "The request body is not valid JSON."
    return f"{loc}: {msg}" if loc else msg


def errors_doc(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for a route that may answer these error statuses (JSON ``{"detail"}``; a 503
    may carry ``retry_after_s``). The one description of error answers for every router."""
    return {
        status: {
            "model": BusyResponse if status == 503 else ErrorResponse,
            "description": HTTPStatus(status).phrase,
        }
        for status in statuses
    }


def service_error_response(exc: ServiceError) -> JSONResponse:
    """The answer to any error of the family (:mod:`app.services.errors`): its status, headers and JSON."""
    return JSONResponse(
        {"detail": exc.detail(), **exc.extra()}, status_code=exc.status, headers=exc.headers()
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        detail = "; ".join(_describe(e) for e in errors) or "Invalid request."
        clean = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in errors
        ]
        return JSONResponse({"detail": detail, "errors": clean}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(ServiceError)
    async def service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        return service_error_response(exc)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        request_id = request_id_of(request)
        log.error(
            "unhandled error in %s %s [request %s]",
            request.method,
            request.url.path,
            request_id,
            exc_info=exc,
        )
        return JSONResponse(
            {
                "detail": f"Internal server error (request {request_id}); it has been logged.",
                "request_id": request_id,
            },
            status_code=500,
            # Starlette answers unhandled errors outside the app's middleware: add its headers here
            headers={"X-Request-ID": request_id, **SECURITY_HEADERS},
        )
