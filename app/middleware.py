"""ASGI middleware: who the client is, request ids, security headers, early quotas and request-body limits.

- :class:`ClientAddress` names the client: the socket's peer, unless that peer is one of the operator's
  ``trusted_proxies``; then ``X-Forwarded-For`` (the rightmost address that is not a trusted proxy) and
  ``X-Forwarded-Proto`` are believed. The name goes to :data:`app.context.client_id` (per-client quotas
  and executor shares key on it) and into ``scope["client"]``. See :func:`client_from` for a server
  (uvicorn's default) that rewrote the peer from a forged header before the app saw it.
- :class:`RequestContext` gives every request an id (``X-Request-ID``; logs and JSON 500s quote it) and
  adds a Content-Security-Policy (scripts, styles, images and connections from this origin only; no
  framing), ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy`` to every response.
- :class:`EarlyRefusal` answers 503 before a body is read when the client already holds its share: its
  dataset-job quota (``POST /api/distance/jobs``) or its share of the executors (any upload route).
- :class:`BodySizeLimit` enforces the body limit while the body streams in (Starlette sets none): the
  upload routes (those that take files, whatever the request's Content-Type says) get the upload limit,
  every other route ``max_json_bytes``. A declared
  Content-Length over the limit is refused before reading anything; a chunked or lying body is cut off
  as soon as the running total passes the limit. Both answer 413 with a JSON message.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
from collections.abc import Callable, Iterable

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.compute import Busy
from app.context import client_id, request_id

log = logging.getLogger("atlas.middleware")

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
        rid = secrets.token_hex(6)
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id.set(rid)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Request-ID", rid)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            request_id.reset(token)


class BodySizeLimit:
    """``is_upload(method, path)`` says whether a route takes files (see :func:`upload_route_matcher`)."""

    def __init__(
        self,
        app: ASGIApp,
        max_upload_bytes: int,
        max_json_bytes: int,
        upload_message: str,
        is_upload: Callable[[str, str], bool],
    ) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes
        self.max_json_bytes = max_json_bytes
        self.upload_message = upload_message
        self.is_upload = is_upload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if self.is_upload(scope["method"], scope["path"]):
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


def upload_route_matcher(openapi: Callable[[], dict]) -> Callable[[str, str], bool]:
    """``(method, path) -> bool``: whether the route takes files, i.e. its OpenAPI operation has a
    ``multipart/form-data`` request body. ``openapi`` (the app's ``app.openapi``) is read on the first call,
    after every router is included. The decision is the route's, never the request's Content-Type."""
    table: list[tuple[str, re.Pattern[str]]] = []
    built = False

    def build() -> None:
        for path, operations in openapi().get("paths", {}).items():
            pattern = re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$")
            for method, op in operations.items():
                content = (op.get("requestBody") or {}).get("content") or {}
                if "multipart/form-data" in content:
                    table.append((method.upper(), pattern))

    def is_upload(method: str, path: str) -> bool:
        nonlocal built
        if not built:
            build()
            built = True
        return any(method == m and regex.match(path) for m, regex in table)

    return is_upload


# ----------------------------------------------------------------------------------------------------------
# Who the client is


def _networks(entries: Iterable[str]) -> tuple[list[ipaddress.IPv4Network | ipaddress.IPv6Network], set[str]]:
    nets, names = [], set()
    for entry in entries:
        try:
            nets.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            names.add(entry.strip())  # a name, e.g. TestClient's "testclient"
    return nets, names


class TrustedProxies:
    """Membership test over IPs, CIDRs and plain names."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.nets, self.names = _networks(entries)

    def __bool__(self) -> bool:
        return bool(self.nets or self.names)

    def __contains__(self, host: object) -> bool:
        if not isinstance(host, str):
            return False
        if host in self.names:
            return True
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        return any(ip in net for net in self.nets)


def _forwarded_for(headers: list[tuple[bytes, bytes]]) -> list[str]:
    values = [v.decode("latin1") for k, v in headers if k == b"x-forwarded-for"]
    return [h.strip() for h in ",".join(values).split(",") if h.strip()]


def client_from(peer: str | None, forwarded: list[str], trusted: TrustedProxies) -> tuple[str | None, bool]:
    """(client name, whether the forwarded headers are believed) for one request.

    - no ``X-Forwarded-For``: the peer;
    - the peer is a trusted proxy: the rightmost forwarded address that is not a trusted proxy;
    - the peer is not trusted but appears in the header: a server in front of the app (uvicorn started
      with its defaults) already replaced the real peer, one of its own trusted addresses (loopback), by
      a forwarded value the app does not trust. The real peer was loopback: unless the operator trusts
      loopback, the client is named "127.0.0.1", so forged values all share one client's quota (a remote
      peer that puts its own address in the header lands there too: it only shares loopback's quota);
    - otherwise the header is the client's own invention: the peer.
    """
    if not forwarded or peer is None:
        return peer, False
    if peer in trusted:
        for host in reversed(forwarded):
            if host not in trusted:
                return host, True
        return forwarded[0], True
    if peer in forwarded:
        if "127.0.0.1" in trusted or "::1" in trusted:
            return peer, True
        return "127.0.0.1", False
    return peer, False


class ClientAddress:
    """Names the client of every HTTP request (see :func:`client_from`) and sets :data:`client_id`."""

    def __init__(self, app: ASGIApp, trusted_proxies: Iterable[str]) -> None:
        self.app = app
        self.trusted = TrustedProxies(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        peer = scope.get("client")
        headers = scope.get("headers") or []
        name, believed = client_from(peer[0] if peer else None, _forwarded_for(headers), self.trusted)
        if believed:
            proto = next((v.decode("latin1").strip() for k, v in headers if k == b"x-forwarded-proto"), "")
            if proto in ("http", "https"):
                scope["scheme"] = proto
        if name is not None and (peer is None or name != peer[0]):
            scope["client"] = (name, 0)
        token = client_id.set(name)
        try:
            await self.app(scope, receive, send)
        finally:
            client_id.reset(token)


# ----------------------------------------------------------------------------------------------------------
# Refusals that need no body


class EarlyRefusal:
    """503 before the body is read, for a client that holds its share already.

    ``check(method, path, client)`` raises :class:`app.compute.Busy` (or a subclass) to refuse; it runs
    after :class:`ClientAddress`, so ``client`` is the trusted name."""

    def __init__(self, app: ASGIApp, check: Callable[[Scope, str, str, str | None], None]) -> None:
        self.app = app
        self.check = check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                self.check(scope, scope["method"], scope["path"], client_id.get())
            except Busy as e:
                response = JSONResponse(
                    {"detail": f"{e}; try again in a few seconds.", "retry_after_s": e.retry_after_s},
                    status_code=503,
                    headers={"Retry-After": str(e.retry_after_s), "Connection": "close"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
