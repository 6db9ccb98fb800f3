"""What went wrong talking to the API server, kept precise enough to act on.

Two kinds of failure matter to every caller: the API server answered with a non-2xx ``Status``
(:class:`ApiError`, keeping the HTTP status, the machine-readable ``reason``, the message, the
field causes and any Retry-After), or the request never got an answer (:class:`TransportError`).
A 403 from missing RBAC must read as ``403 Forbidden: ... cannot create resource
"subjectaccessreviews"``, not as a class name, so nothing here is reduced to the exception's type.

Pure: no I/O; the client in :mod:`.client` builds these from responses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ApiError", "FieldCause", "TransportError", "api_error_from_status", "describe"]


@dataclass(frozen=True)
class FieldCause:
    """One entry of a Status' ``details.causes``: which field the API server rejected and why."""

    field: str
    reason: str
    message: str


@dataclass(frozen=True)
class ApiError(Exception):
    """A non-2xx answer from the API server, with the parts a retry policy and a user need."""

    status: int
    reason: str
    message: str
    retry_after_s: float | None = None
    causes: tuple[FieldCause, ...] = field(default_factory=tuple)

    def __str__(self) -> str:
        return f"{self.status} {self.reason}: {self.message}"


class TransportError(Exception):
    """The request never got an HTTP answer (connection refused/reset, timeout, TLS failure)."""


def api_error_from_status(status: int, body: Mapping[str, Any], retry_after: str | None) -> ApiError:
    """Build an ``ApiError`` from an HTTP status, a decoded ``Status`` body and a Retry-After header."""
    details = body.get("details") if isinstance(body.get("details"), Mapping) else {}
    assert isinstance(details, Mapping)
    causes = tuple(
        FieldCause(
            field=str(c.get("field", "")), reason=str(c.get("reason", "")), message=str(c.get("message", ""))
        )
        for c in details.get("causes", ()) or ()
        if isinstance(c, Mapping)
    )
    retry_after_s: float | None = None
    if retry_after is not None:
        try:
            retry_after_s = max(0.0, float(retry_after))
        except ValueError:
            retry_after_s = None  # an HTTP-date; the API server never sends one
    if retry_after_s is None and isinstance(details.get("retryAfterSeconds"), int | float):
        retry_after_s = float(details["retryAfterSeconds"])
    return ApiError(
        status=status,
        reason=str(body.get("reason") or "Unknown"),
        message=str(body.get("message") or f"HTTP {status}"),
        retry_after_s=retry_after_s,
        causes=causes,
    )


def describe(exc: BaseException) -> str:
    """One line for logs and error messages that keeps what matters: for an API error its status,
    reason and message (``403 Forbidden: ...``), for anything else its type and message."""
    if isinstance(exc, ApiError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
