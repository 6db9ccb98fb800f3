"""Kubernetes quantities for metric values, formatted exactly as ``resource.Quantity.String()``.

The HPA reads an external metric with ``Quantity.MilliValue()``, so milli-units are the precision
that matters. A value is rounded to an integer number of milli-units *away from zero*, which is what
``MilliValue`` itself does with a finer quantity (a queue of 0.0001 stays "some work", ``1m``, not 0).
That milli amount is then written in canonical ``DecimalSI`` form, as Go's ``NewMilliQuantity(v,
DecimalSI).String()``: trailing zeros move into an SI suffix whose exponent is a multiple of three
(``2500m``, ``1500``, ``1k``, ``1T``), beyond ``E`` (10^18) the decimal-exponent form (``1e21``).

Input should be the exact decimal text Prometheus sent (``"0.1"``); a float is converted through its
shortest representation, never its binary expansion (which would turn 0.1 into ``101m``).
"""

from __future__ import annotations

from decimal import ROUND_UP, Decimal, InvalidOperation
from typing import Final

from tgi_autoscaler.promql.errors import NonFiniteValueError

__all__ = ["format_quantity", "milli_value"]

_SUFFIXES: Final = {-3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}


def _to_decimal(value: Decimal | str | float | int) -> Decimal:
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise NonFiniteValueError(f"value {value!r} is not a number") from None
    elif isinstance(value, float):
        number = Decimal(repr(value))
    else:
        number = Decimal(value)
    if not number.is_finite():
        raise NonFiniteValueError(f"value {value!r} is not finite; a quantity must be a finite number")
    return number


def milli_value(value: Decimal | str | float | int) -> int:
    """``value`` in milli-units, rounded away from zero (``Quantity.MilliValue`` semantics)."""
    return int((_to_decimal(value) * 1000).to_integral_value(rounding=ROUND_UP))


def format_quantity(value: Decimal | str | float | int) -> str:
    """The canonical Kubernetes quantity string for ``value`` at milli precision."""
    milli = milli_value(value)
    if milli == 0:
        return "0"
    mantissa, exponent = abs(milli), -3
    while mantissa % 10 == 0:
        mantissa //= 10
        exponent += 1
    # Make the exponent a multiple of three by moving digits back into the mantissa.
    shift = exponent % 3
    mantissa *= 10**shift
    exponent -= shift
    suffix = _SUFFIXES.get(exponent, f"e{exponent}")
    sign = "-" if milli < 0 else ""
    return f"{sign}{mantissa}{suffix}"
