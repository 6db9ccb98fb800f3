"""Quantities are Go's canonical Quantity.String() of the value's milli amount (MilliValue rounding)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tgi_autoscaler.promql import NonFiniteValueError, format_quantity, milli_value

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", "0"),
        (0.0, "0"),
        (-0.0, "0"),
        ("0.001", "1m"),
        (0.001, "1m"),
        ("1e-4", "1m"),  # rounded away from zero, like MilliValue: some work is not zero work
        ("0.0015", "2m"),
        ("2.5", "2500m"),
        ("1", "1"),
        ("7.000", "7"),
        ("999", "999"),
        ("1000", "1k"),
        ("1500", "1500"),
        ("1234.5", "1234500m"),
        ("0.1", "100m"),
        (0.1, "100m"),  # shortest representation, not the binary expansion (which would be 101m)
        ("123456789", "123456789"),
        ("1e12", "1T"),
        (1e12, "1T"),
        ("1e15", "1P"),
        ("1e18", "1E"),
        ("1e21", "1e21"),  # beyond E: decimal exponent, as current apimachinery does
        ("1e22", "10e21"),
        ("-2.5", "-2500m"),
        ("-1e-4", "-1m"),
        ("-3000", "-3k"),
        (Decimal("12.345678"), "12346m"),
        (42, "42"),
    ],
)
def test_quantity_matches_kubernetes_canonical_form(
    value: str | float | int | Decimal, expected: str
) -> None:
    assert format_quantity(value) == expected


@pytest.mark.parametrize("value", ["NaN", "+Inf", "-Inf", "inf", float("nan"), float("inf"), "x"])
def test_non_finite_values_are_errors_not_numbers(value: str | float) -> None:
    with pytest.raises(NonFiniteValueError):
        format_quantity(value)


@pytest.mark.parametrize(("value", "milli"), [("2.5", 2500), ("1e-4", 1), ("-1e-4", -1), ("0", 0)])
def test_milli_value_is_what_the_hpa_reads(value: str, milli: int) -> None:
    assert milli_value(value) == milli
