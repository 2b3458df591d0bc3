"""Request body limit, enforced while the body streams in (Starlette sets no limit on file parts).

A declared Content-Length over the limit is refused before reading anything; a chunked or lying body
is cut off as soon as the running total passes the limit. Both answer 413 with a JSON message.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int, message: str) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.message = message

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await JSONResponse({"detail": self.message}, status_code=413, headers={"Connection": "close"})(
                scope, receive, send
            )
            return
        total = 0

        async def limited_receive() -> Message:
            nonlocal total
            message = await receive()
            if message["type"] == "http.request":
                total += len(message.get("body", b""))
                if total > self.max_bytes:
                    raise HTTPException(
                        413, self.message
                    )  # FastAPI re-raises HTTPExceptions from body parsing
            return message

        await self.app(scope, limited_receive, send)
