"""Request-scoped context: who is asking, and under which request id.

:class:`app.middleware.ClientAddress` sets both for every HTTP request; they follow the request into its
route, its services and the executors' admission (``owner`` defaults to :data:`client_id`), so a service
need not thread them through every call. Worker threads (dataset jobs) run outside any request: there both
are ``None``, and their work is never capped per client.
"""

from __future__ import annotations

from contextvars import ContextVar

client_id: ContextVar[str | None] = ContextVar("atlas_client_id", default=None)
request_id: ContextVar[str | None] = ContextVar("atlas_request_id", default=None)
