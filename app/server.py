"""How the web server listens: the loopback check and the limits on slow clients (issue 17 §2, §5).

- :func:`is_loopback` / :func:`warn_if_exposed`: ``python -m app serve`` and ``python -m app.cluster`` log a
  warning when they bind anything but loopback (the app has no login; see docs/deploy.md).
- :class:`SlowClientGuard`: uvicorn's httptools protocol with the time limits uvicorn lacks. uvicorn 0.54
  has a keep-alive timeout (``timeout_keep_alive``) and a request-count cap (``limit_concurrency``, answered
  in plain text), but no limit on how long a client may take to send its headers or its body, and a
  connection that never sends a byte is held forever. The guard adds:

  * a header deadline (``header_timeout_s``): from the connection's first moment, or from the first byte
    of the next request on a kept-alive connection, until the headers are complete; past it: 408, closed;
  * a header size cap (``max_header_kb``): 431, closed;
  * a body deadline (``body_timeout_s``): from the end of the headers until the whole body has arrived
    (time spent while the app itself is not reading, i.e. uvicorn paused reading, does not count);
    past it the connection is closed and the app sees a disconnect;
  * a connection cap (``max_connections``): the connection past it gets the app's JSON 503 with
    ``Retry-After`` and is closed, before any byte of its request is read.

:func:`uvicorn_options` gathers these for ``uvicorn.run``, with one worker process whatever
``WEB_CONCURRENCY`` says (several workers would each have their own secret, caches, job registry and
budget); a reverse proxy in front (docs/deploy/nginx.conf)
does the same at the edge.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from asyncio import TimerHandle
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.settings import Settings

log = logging.getLogger("atlas.server")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address to bind or a listener's address) is on loopback only.

    ``localhost``, 127.0.0.0/8, ``::1`` and IPv4-mapped ``::ffff:127.x`` are; ``0.0.0.0``, ``::``, ``""``
    (every interface), any other address and any other name are not."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def warn_if_exposed(host: str, what: str, logger: logging.Logger = log) -> bool:
    """Log a warning when ``host`` is not loopback; True if it warned."""
    if is_loopback(host):
        return False
    logger.warning(
        "%s binds %r, beyond loopback: anyone who can reach this machine can use it (no login). "
        "Put it behind a reverse proxy on 127.0.0.1 or publish a container's port on 127.0.0.1 only "
        "(docs/deploy.md).",
        what,
        host,
    )
    return True


def _plain(status: bytes, body: dict[str, Any], extra: bytes = b"") -> bytes:
    data = json.dumps(body).encode()
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"content-length: " + str(len(data)).encode() + b"\r\n" + extra + b"\r\n" + data
    )


class SlowClientGuard(HttpToolsProtocol):
    """uvicorn's httptools protocol with header/body deadlines, a header size cap and a connection cap.

    The limits come from :meth:`configure` (class attributes, one subclass per server)."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    max_header_bytes: int = 64 * 1024
    max_connections: int = 1000
    retry_after_s: int = 2

    @classmethod
    def configure(cls, settings: Settings) -> type[SlowClientGuard]:
        """A subclass carrying ``settings``' limits (uvicorn takes a protocol class, not an instance)."""
        return type(
            "SlowClientGuard",
            (cls,),
            dict(
                header_timeout_s=settings.server.header_timeout_s,
                body_timeout_s=settings.server.body_timeout_s,
                max_header_bytes=settings.server.max_header_kb * 1024,
                max_connections=settings.server.max_connections,
                retry_after_s=settings.limits.retry_after_s,
            ),
        )

    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        self._deadline: TimerHandle | None = None
        self._in_headers, self._header_bytes, self._refused = True, 0, False
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            after = self.retry_after_s
            body = {"detail": "Too many connections; try again in a few seconds.", "retry_after_s": after}
            self._refuse(b"503 Service Unavailable", body, b"retry-after: %d\r\n" % after)
            return
        self._arm(self.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_headers and self._deadline is None:  # the next request on a kept-alive connection
            self._arm(self.header_timeout_s)
        super().data_received(data)

    # parser callbacks: count the request line and headers; after a refusal the rest is ignored

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._in_headers = False
        self._arm(self.body_timeout_s)  # disarmed at once by on_message_complete when there is no body
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._disarm()  # answered (perhaps before reading the whole body): the next request starts the clock
        self._in_headers, self._header_bytes = True, 0
        super().on_response_complete()

    def _count(self, n: int) -> None:
        self._header_bytes += n
        if self._header_bytes > self.max_header_bytes and not self._refused:
            self._refuse(b"431 Request Header Fields Too Large", {"detail": "Request headers too large."})

    # -- timers

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if getattr(self, "_deadline", None) is not None:
            self._deadline.cancel()  # type: ignore[union-attr]
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._in_headers:
            self._refuse(b"408 Request Timeout", {"detail": "The request headers took too long."})
        elif self.flow.read_paused:  # the app has not read what came: not the client's fault
            self._arm(self.body_timeout_s)
        else:  # mid-body: the app is reading it; closing makes its receive() a disconnect
            log.info("closing %s: the request body took longer than %.0f s", self.client, self.body_timeout_s)
            self.transport.close()

    def _refuse(self, status: bytes, body: dict[str, Any], extra: bytes = b"") -> None:
        self._refused = True
        self._disarm()
        self.transport.write(_plain(status, body, extra))
        self.transport.close()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config``: the guard and uvicorn's own limits."""
    return dict(
        workers=1,  # one process: one secret, one job registry, one budget (WEB_CONCURRENCY is ignored)
        # the app reads X-Forwarded-* itself, from ATLAS_TRUSTED_PROXIES only (app/middleware.py)
        proxy_headers=False,
        http=SlowClientGuard.configure(settings),
        timeout_keep_alive=settings.server.keep_alive_s,
        h11_max_incomplete_event_size=settings.server.max_header_kb * 1024,  # only if h11 is chosen instead
    )
