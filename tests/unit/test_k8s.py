"""Kubernetes text: the one set of rules for names and quantities that every part of the project uses."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tgi_autoscaler.k8s.names import (
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_env_var_name,
    is_extended_resource_name,
)
from tgi_autoscaler.k8s.quantity import Notation, QuantityError, format_quantity, parse_quantity
from tgi_autoscaler.render.autoscaling import format_quantity as format_target

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "value"),
    [("4", "4"), ("500m", "0.5"), ("16Gi", str(16 * 2**30)), ("1.5G", "1500000000"), ("100k", "100000")],
)
def test_quantities_parse_like_kubernetes(text: str, value: str) -> None:
    assert parse_quantity(text) == parse_quantity(value)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("100n", "0.0000001"),
        ("5u", "0.000005"),
        ("1e3", "1000"),
        ("1E-3", "0.001"),
        (".5", "0.5"),
        ("+2", "2"),
    ],
)
def test_the_rest_of_the_kubernetes_grammar_parses_too(text: str, value: str) -> None:
    assert parse_quantity(text) == Decimal(value)


@pytest.mark.parametrize("text", ["", "Gi", "4 Gi", "1.2.3", "16gi", "-", "1e", "1Ki5", "e3"])
def test_malformed_quantities_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="is not a Kubernetes quantity"):
        parse_quantity(text)


def test_a_bad_quantity_is_a_quantity_error_naming_the_text() -> None:
    with pytest.raises(QuantityError, match="'16gi'"):
        parse_quantity("16gi")


@given(st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**24), max_value=10**24, places=3))
@settings(max_examples=200, deadline=None)
def test_every_formatted_quantity_parses_back_to_its_value(value: Decimal) -> None:
    assert parse_quantity(format_quantity(value)) == value
    assert parse_quantity(format_quantity(value, notation=Notation.PLAIN)) == value


# The rendered HPA targets keep the form they always had: half-to-even rounding, no SI suffix.
# The canonical form (the adapter's) differs for values that are not whole milli-units, and for
# whole thousands; the spec allows both (any targetPerReplica > 0), so the difference is observable.
@pytest.mark.parametrize(
    ("value", "rendered", "canonical"),
    [
        (1.2345, "1234m", "1235m"),  # half to even vs away from zero
        (0.0104, "10m", "11m"),
        (1000, "1000", "1k"),
        (2000.0, "2000", "2k"),
        (1500, "1500", "1500"),
        (2.5, "2500m", "2500m"),
        (10, "10", "10"),
    ],
)
def test_rendered_targets_keep_their_form_where_the_canonical_one_differs(
    value: float, rendered: str, canonical: str
) -> None:
    assert format_target(value) == rendered
    assert format_quantity(value) == canonical


def _target_as_rendered_before(value: float) -> str:
    # The renderer's formatter before quantities had one home, kept as the reference.
    milli = (Decimal(str(value)) * 1000).quantize(Decimal(1))
    if milli % 1000 == 0:
        return str(int(milli // 1000))
    return f"{int(milli)}m"


@given(
    st.one_of(
        st.floats(min_value=0.0006, max_value=1e9, allow_nan=False, allow_infinity=False),
        st.integers(min_value=1, max_value=10**9),
        st.sampled_from([0.0015, 0.0025, 1.0005, 999.9995, 1000, 10**6]),
    )
)
@settings(max_examples=300, deadline=None)
def test_rendered_targets_are_the_strings_they_always_were(value: float) -> None:
    assert format_target(value) == _target_as_rendered_before(value)


@pytest.mark.parametrize("value", [0.0005, 0.0001])
def test_targets_that_round_to_zero_milli_units_are_still_refused(value: float) -> None:
    with pytest.raises(ValueError, match="rounds to zero"):
        format_target(value)


@pytest.mark.parametrize(
    ("name", "label", "label1035", "subdomain"),
    [
        ("llama", True, True, True),
        ("7b-chat", True, False, True),
        ("a.b", False, False, True),
        ("-a", False, False, False),
        ("a-", False, False, False),
        ("A", False, False, False),
        ("", False, False, False),
        ("a" * 63, True, True, True),
        ("a" * 64, False, False, True),
        ("a" * 253, False, False, True),
        ("a" * 254, False, False, False),
    ],
)
def test_dns_names_follow_kubernetes_with_its_length_caps(
    name: str, label: bool, label1035: bool, subdomain: bool
) -> None:
    assert is_dns1123_label(name) is label
    assert is_dns1035_label(name) is label1035
    assert is_dns1123_subdomain(name) is subdomain


def test_a_label_cap_can_be_lowered_but_not_raised() -> None:
    assert not is_dns1035_label("a" * 53, max_length=52)
    assert is_dns1035_label("a" * 52, max_length=52)
    assert not is_dns1123_label("a" * 64, max_length=100)


@pytest.mark.parametrize(
    ("name", "valid"), [("MODEL_ID", True), ("my.var-1", True), ("1X", False), ("A B", False)]
)
def test_env_var_names(name: str, valid: bool) -> None:
    assert is_env_var_name(name) is valid


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("nvidia.com/gpu", True),
        ("nvidia.com/mig-3g.40gb", True),
        ("amd.com/gpu", True),
        ("gpu", False),
        ("/gpu", False),
        ("nvidia.com/", False),
        ("Nvidia.com/gpu", False),
        ("nvidia.com/-gpu", False),
    ],
)
def test_extended_resource_names_need_a_dns_prefix(name: str, valid: bool) -> None:
    assert is_extended_resource_name(name) is valid
