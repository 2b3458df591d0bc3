"""Every error leaves as JSON ``{"detail": "<human message>"}`` with a 4xx/5xx status.

An unexpected exception becomes a JSON 500 with a generic message and the request id (also in the
``X-Request-ID`` header); the traceback goes to the log under that id and never into the response.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.compute import Busy
from app.images import ImageError
from app.middleware import SECURITY_HEADERS
from app.services.errors import ServiceError
from app.state import InvalidOption, UnknownModel

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

    @app.exception_handler(ImageError)
    async def image_error(_request: Request, exc: ImageError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(ServiceError)
    async def service_error(_request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(UnknownModel)
    @app.exception_handler(InvalidOption)
    async def bad_option(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(Busy)
    async def busy(_request: Request, exc: Busy) -> JSONResponse:
        return JSONResponse(
            {"detail": f"{exc}; try again in a few seconds.", "retry_after_s": exc.retry_after_s},
            status_code=503,
            headers={"Retry-After": str(exc.retry_after_s)},
        )

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
