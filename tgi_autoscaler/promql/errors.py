"""Errors raised by the pure PromQL layer, each carrying the exact part of the input at fault.

The adapter turns these into Kubernetes ``Status`` bodies (400 for a selector, a load-time
configuration error for a template), so every error keeps the offending fragment in ``part`` and a
message a person can act on without reading the code.
"""

from __future__ import annotations

__all__ = [
    "NonFiniteValueError",
    "PromQLError",
    "SelectorError",
    "SelectorParseError",
    "SelectorUnsupportedError",
    "TemplateError",
]


class PromQLError(ValueError):
    """Base class of every error in ``tgi_autoscaler.promql``."""


class SelectorError(PromQLError):
    """A label selector that cannot be served; ``part`` is the requirement or token at fault."""

    def __init__(self, message: str, *, part: str) -> None:
        super().__init__(message)
        self.part = part


class SelectorParseError(SelectorError):
    """The selector is not valid Kubernetes label-selector syntax (what ``labels.Parse`` rejects)."""


class SelectorUnsupportedError(SelectorError):
    """Valid Kubernetes syntax that has no exact PromQL equivalent, or that would widen the query."""


class TemplateError(PromQLError):
    """A query template that is not safe or not well formed; ``offset`` points into the template."""

    def __init__(self, message: str, *, offset: int | None = None) -> None:
        super().__init__(message if offset is None else f"{message} (at offset {offset})")
        self.offset = offset


class NonFiniteValueError(PromQLError):
    """NaN or an infinity cannot be written as a Kubernetes quantity."""
