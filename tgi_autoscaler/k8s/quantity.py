"""Kubernetes resource quantities: parsed as ``resource.ParseQuantity`` reads them, written as
``resource.Quantity.String()`` writes them.

The HPA reads a quantity with ``Quantity.MilliValue()``, so milli-units are the precision that
matters. By default a value is rounded to an integer number of milli-units *away from zero*, which is
what ``MilliValue`` itself does with a finer quantity (a queue of 0.0001 stays "some work", ``1m``,
not 0). That milli amount is then written in canonical ``DecimalSI`` form, as Go's
``NewMilliQuantity(v, DecimalSI).String()``: trailing zeros move into an SI suffix whose exponent is
a multiple of three (``2500m``, ``1500``, ``1k``, ``1T``), beyond ``E`` (10^18) the decimal-exponent
form (``1e21``).

The rendered HPA targets have always been written differently, and rendered objects must not change
under a running service: half-to-even rounding and a whole number without suffix (``1000``, not
``1k``). Both forms are valid quantities of the same value when the value is a whole number of
milli-units; ``Notation.PLAIN`` with ``ROUND_HALF_EVEN`` keeps that output, from the same code.

Input should be the exact decimal text (``"0.1"``); a float is converted through its shortest
representation, never its binary expansion (which would turn 0.1 into ``101m``).
"""

from __future__ import annotations

import enum
import re
from decimal import ROUND_UP, Decimal, InvalidOperation
from typing import Final

__all__ = ["Notation", "QuantityError", "format_quantity", "milli_value", "parse_quantity"]


class QuantityError(ValueError):
    """A value that is not a finite number, or text that is not a quantity."""


class Notation(enum.Enum):
    """How ``format_quantity`` writes a milli amount."""

    CANONICAL = "canonical"  # Go's Quantity.String(): 1k, 2500m, 1e21
    PLAIN = "plain"  # a whole number as digits, else milli-units: 1000, 2500m


_QUANTITY_RE: Final = re.compile(
    r"(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+))(?:(?P<suffix>[KMGTPE]i|[numkMGTPE])|[eE](?P<exp>[+-]?\d+))?"
)
_BINARY: Final = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL: Final = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_SUFFIXES: Final = {exponent: suffix for suffix, exponent in _DECIMAL.items() if exponent >= -3}


def parse_quantity(text: str) -> Decimal:
    """The value of a Kubernetes quantity (``16Gi``, ``500m``, ``4``, ``1e3``).

    Raises ``QuantityError`` (a ``ValueError``) naming the text when it is not a quantity.
    """
    match = _QUANTITY_RE.fullmatch(text.strip())
    if match is None:
        raise QuantityError(
            f"{text!r} is not a Kubernetes quantity (examples: 4, 500m, 16Gi, 100G; suffixes n u m k M G T "
            "P E and Ki Mi Gi Ti Pi Ei, or an exponent such as 1e3)"
        )
    number = Decimal(match.group("num"))
    suffix, exponent = match.group("suffix") or "", match.group("exp")
    if exponent is not None:
        return number.scaleb(int(exponent))
    if suffix in _BINARY:
        return number * Decimal(2) ** _BINARY[suffix]
    return number.scaleb(_DECIMAL[suffix])


def _to_decimal(value: Decimal | str | float | int) -> Decimal:
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise QuantityError(f"value {value!r} is not a number") from None
    elif isinstance(value, float):
        number = Decimal(repr(value))
    else:
        number = Decimal(value)
    if not number.is_finite():
        raise QuantityError(f"value {value!r} is not finite; a quantity must be a finite number")
    return number


def milli_value(value: Decimal | str | float | int, *, rounding: str = ROUND_UP) -> int:
    """``value`` in milli-units; by default rounded away from zero (``Quantity.MilliValue``).

    ``rounding`` is one of the ``decimal`` module's rounding modes (``decimal.ROUND_HALF_EVEN``).
    """
    return int((_to_decimal(value) * 1000).to_integral_value(rounding=rounding))


def format_quantity(
    value: Decimal | str | float | int,
    *,
    rounding: str = ROUND_UP,
    notation: Notation = Notation.CANONICAL,
) -> str:
    """The Kubernetes quantity string for ``value`` at milli precision (see the module docstring)."""
    milli = milli_value(value, rounding=rounding)
    if milli == 0:
        return "0"
    sign = "-" if milli < 0 else ""
    if notation is Notation.PLAIN:
        whole, rest = divmod(abs(milli), 1000)
        return f"{sign}{whole}" if rest == 0 else f"{sign}{abs(milli)}m"
    mantissa, exponent = abs(milli), -3
    while mantissa % 10 == 0:
        mantissa //= 10
        exponent += 1
    # Make the exponent a multiple of three by moving digits back into the mantissa.
    shift = exponent % 3
    mantissa *= 10**shift
    exponent -= shift
    suffix = _SUFFIXES.get(exponent, f"e{exponent}")
    return f"{sign}{mantissa}{suffix}"
