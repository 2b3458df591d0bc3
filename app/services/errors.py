"""The one error family for a request the server cannot serve, raised anywhere below the routers.

Every class has a default HTTP ``status``; an instance may override it (``ImageError(msg, status=413)``).
:func:`app.errors.install_error_handlers` answers the whole family with ONE handler: JSON
``{"detail": message}`` (plus :meth:`ServiceError.extra`, e.g. ``retry_after_s``) with ``status`` and
:meth:`ServiceError.headers`. Nothing below the routers raises FastAPI's ``HTTPException``.

================  ======  ===========================================================================
class             status  when
================  ======  ===========================================================================
ServiceError      400     the base: any request the server cannot serve (pass ``status`` to override)
ImageError        400     an upload or sample image it cannot take (413 too large, 404 no longer cached)
UnknownModel      400     a model that is not on the operator's allowlist
InvalidOption     400     an option the chosen model cannot take (a resolution, a layer)
TextError         422     a text the model cannot take (empty, too many tokens; 413 too long)
AnalysisExpired   404     an analysis id no longer in the server cache (vision and text alike)
ModelUnavailable  503     a model that could not be loaded (a Hub repo not reachable, a missing file)
Busy              503     a full queue or pool; adds ``retry_after_s`` and the ``Retry-After`` header
================  ======  ===========================================================================

The family pickles with its status and attributes whatever its constructor's signature, so a Ray replica
returns the exception itself and the ingress re-raises it unchanged (:mod:`app.cluster.deployments`).

This module imports nothing from the app, so any layer may raise these classes.
"""

from __future__ import annotations

from typing import Any


def _restore(cls: type[ServiceError], message: str, state: dict[str, Any]) -> ServiceError:
    """Unpickle without calling ``cls.__init__`` (subclasses take different arguments)."""
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(state)
    return error


class ServiceError(Exception):
    """A request the server cannot serve: answered with ``status`` and ``{"detail": str(self)}``.

    ``ServiceError(message, status=None)``: ``status`` defaults to the class's. The older order
    ``ServiceError(status, message)`` is still accepted (an ``int`` first), so code written against it
    keeps working."""

    status: int = 400

    def __init__(self, message: str | int, status: int | str | None = None) -> None:
        if isinstance(message, int) and isinstance(status, str):  # the older (status, message) order
            message, status = status, message
        super().__init__(str(message))
        if status is not None:
            self.status = int(status)

    def extra(self) -> dict[str, Any]:
        """Fields the JSON body carries besides ``detail``."""
        return {}

    def headers(self) -> dict[str, str] | None:
        """HTTP headers of the answer."""
        return None

    def detail(self) -> str:
        """The human message of the answer."""
        return str(self)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self), str(self), dict(self.__dict__)))


class ImageError(ServiceError, ValueError):
    """A user-facing problem with an image: 400, or the ``status`` given (413 too large, 404 expired).

    Takes ``(message, status=400)``."""


class UnknownModel(ServiceError, LookupError):
    """A request named a model that is not on the operator's allowlist."""


class InvalidOption(ServiceError, ValueError):
    """A request option the chosen model cannot take."""


class TextError(ServiceError):
    """A text the model cannot take: 422 (empty, too many tokens), or 413 when over the length limit."""

    status = 422


class AnalysisExpired(ServiceError, LookupError):
    """An analysis id that is no longer (or never was) in the server cache: 404, vision and text alike.

    ``AnalysisExpired("image")`` / ``AnalysisExpired("text")`` says what to analyse again."""

    status = 404

    def __init__(self, what: str = "input") -> None:
        super().__init__(f"This analysis has expired from the server cache; analyse the {what} again.")


class ModelUnavailable(ServiceError):
    """An allowlisted model that could not be loaded (a Hub repo not reachable, a missing checkpoint)."""

    status = 503


class Busy(ServiceError, RuntimeError):
    """The executor is full: 503 with ``Retry-After: retry_after_s`` and ``retry_after_s`` in the body."""

    status = 503

    def __init__(self, message: str, retry_after_s: int = 2) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def detail(self) -> str:
        return f"{self}; try again in a few seconds."

    def extra(self) -> dict[str, Any]:
        return {"retry_after_s": self.retry_after_s}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


__all__ = [
    "AnalysisExpired",
    "Busy",
    "ImageError",
    "InvalidOption",
    "ModelUnavailable",
    "ServiceError",
    "TextError",
    "UnknownModel",
]
