"""Metric values as the quantities the external metrics API returns, with PromQL's error type.

The formatting itself is ``tgi_autoscaler.k8s.quantity`` (Go's ``Quantity.String()`` of the
``MilliValue``); this module only reports a value that cannot be a quantity (``NaN``, ``+Inf``, text)
as ``NonFiniteValueError``, the error the adapter turns into "no value" instead of a number.
"""

from __future__ import annotations

from decimal import Decimal

from tgi_autoscaler.k8s import quantity
from tgi_autoscaler.promql.errors import NonFiniteValueError

__all__ = ["format_quantity", "milli_value"]


def format_quantity(value: Decimal | str | float | int) -> str:
    """The canonical Kubernetes quantity string for ``value`` at milli precision."""
    try:
        return quantity.format_quantity(value)
    except quantity.QuantityError as exc:
        raise NonFiniteValueError(str(exc)) from None


def milli_value(value: Decimal | str | float | int) -> int:
    """``value`` in milli-units, rounded away from zero (``Quantity.MilliValue`` semantics)."""
    try:
        return quantity.milli_value(value)
    except quantity.QuantityError as exc:
        raise NonFiniteValueError(str(exc)) from None
