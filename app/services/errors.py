"""The one error type services raise for a request they cannot serve: app/errors.py answers it as JSON
``{"detail": message}`` with ``status`` (4xx, or 503 when data it needs is missing)."""

from __future__ import annotations


class ServiceError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
