"""ASGI middleware: request ids, security headers and request-body limits.

- :class:`RequestContext` gives every request an id (``X-Request-ID``; logs and JSON 500s quote it) and
  adds a Content-Security-Policy (scripts, styles, images and connections from this origin only; no
  framing), ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy`` to every response.
- :class:`BodySizeLimit` enforces the body limit while the body streams in (Starlette sets none): uploads
  (``multipart/form-data``) get the upload limit, every other body (JSON) ``max_json_bytes``. A declared
  Content-Length over the limit is refused before reading anything; a chunked or lying body is cut off
  as soon as the running total passes the limit. Both answer 413 with a JSON message.
"""

from __future__ import annotations

import secrets

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# plotly.js sets inline styles on its SVG; everything else is from this origin. Blob/data images are the
# PNG/SVG exports and canvas snapshots.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; object-src 'none'; "
    "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


class RequestContext:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(6)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Request-ID", request_id)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_upload_bytes: int, max_json_bytes: int, upload_message: str) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes
        self.max_json_bytes = max_json_bytes
        self.upload_message = upload_message

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if headers.get(b"content-type", b"").lower().startswith(b"multipart/form-data"):
            limit, message = self.max_upload_bytes, self.upload_message
        else:
            limit = self.max_json_bytes
            message = f"The request body is too large: the limit is {limit // 1024} KB."
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await JSONResponse({"detail": message}, status_code=413, headers={"Connection": "close"})(
                scope, receive, send
            )
            return
        total = 0

        async def limited_receive() -> Message:
            nonlocal total
            message_in = await receive()
            if message_in["type"] == "http.request":
                total += len(message_in.get("body", b""))
                if total > limit:
                    raise HTTPException(413, message)  # FastAPI re-raises HTTPExceptions from body parsing
            return message_in

        await self.app(scope, limited_receive, send)
