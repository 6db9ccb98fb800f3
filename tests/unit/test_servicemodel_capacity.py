"""Erlang C against the textbook formula and known values, and the SLO target derived from it."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tgi_autoscaler.servicemodel import ServerParams
from tgi_autoscaler.servicemodel.capacity import erlang_c, slo_target_rps, wait_exceedance
from tgi_autoscaler.servicemodel.params import ParamsError

pytestmark = pytest.mark.unit


def textbook_erlang_c(c: int, a: Fraction) -> Fraction:
    """C(c, a) = (a^c / c!) * c / (c - a) / (sum_{k<c} a^k / k! + (a^c / c!) * c / (c - a))."""
    top = a**c / math.factorial(c) * Fraction(c) / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


@pytest.mark.parametrize(
    ("servers", "offered", "expected"),
    [
        (1, 0.5, 0.5),  # M/M/1: the probability of waiting is the utilisation
        (1, 0.9, 0.9),
        (2, 1.0, 1 / 3),
        (3, 2.0, 4 / 9),
        (5, 4.0, 0.5541),  # the usual table value, to four places
        (10, 8.0, 0.4092),
    ],
)
def test_erlang_c_known_values(servers: int, offered: float, expected: float) -> None:
    assert erlang_c(servers, offered) == pytest.approx(expected, abs=5e-5)


@given(c=st.integers(1, 40), load=st.fractions(Fraction(1, 100), Fraction(99, 100), max_denominator=100))
def test_erlang_c_equals_the_closed_form(c: int, load: Fraction) -> None:
    a = load * c
    assert erlang_c(c, float(a)) == pytest.approx(float(textbook_erlang_c(c, a)), rel=1e-9)


@pytest.mark.parametrize(("offered", "expected"), [(0.0, 0.0), (-1.0, 0.0), (4.0, 1.0), (9.0, 1.0)])
def test_erlang_c_outside_the_stable_range(offered: float, expected: float) -> None:
    assert erlang_c(4, offered) == expected


def test_erlang_c_needs_a_server() -> None:
    with pytest.raises(ParamsError, match="servers"):
        erlang_c(0, 0.5)


def test_wait_exceedance_of_mm1_is_rho_times_the_exponential_tail() -> None:
    # One server, holding 1 s (mu = 1), arrivals 0.5/s: P(W > w) = rho * exp(-(mu - lam) * w).
    assert wait_exceedance(1, 1.0, 0.5, 2.0) == pytest.approx(0.5 * math.exp(-0.5 * 2.0))
    assert wait_exceedance(1, 1.0, 1.0, 2.0) == 1.0
    assert wait_exceedance(1, 1.0, 0.5, -3.0) == pytest.approx(0.5)


PARAMS = ServerParams()


def target(ttft: float = 2.0, attainment: float = 0.99, params: ServerParams = PARAMS) -> float:
    return slo_target_rps(
        params, prompt_tokens=1155, output_tokens=211, ttft_slo_s=ttft, attainment=attainment
    )


def test_the_target_meets_the_slo_and_a_little_more_does_not() -> None:
    rps = target()
    capacity = PARAMS.capacity_rps(1155, 211)
    assert 0 < rps < capacity
    servers = PARAMS.max_batch_size
    holding = servers / capacity
    budget = 2.0 - PARAMS.prefill_time(1155)
    assert wait_exceedance(servers, holding, rps, budget) <= 0.01
    assert wait_exceedance(servers, holding, rps * 1.001, budget) > 0.01


@pytest.mark.parametrize(
    ("looser", "stricter"),
    [
        ({"ttft": 4.0}, {"ttft": 2.0}),
        ({"ttft": 2.0}, {"ttft": 0.5}),
        ({"attainment": 0.9}, {"attainment": 0.99}),
        ({"attainment": 0.99}, {"attainment": 0.999}),
        ({"params": ServerParams(max_batch_size=128)}, {"params": ServerParams(max_batch_size=32)}),
    ],
)
def test_a_stricter_slo_or_a_smaller_replica_lowers_the_target(
    looser: dict[str, object], stricter: dict[str, object]
) -> None:
    assert target(**stricter) < target(**looser)  # type: ignore[arg-type]


@given(
    ttft=st.floats(0.2, 30.0),
    more=st.floats(0.0, 10.0),
    attainment=st.floats(0.5, 0.9999),
)
def test_the_target_never_falls_as_the_slo_loosens(ttft: float, more: float, attainment: float) -> None:
    assert target(ttft, attainment) <= target(ttft + more, attainment) + 1e-9


@pytest.mark.parametrize("attainment", [0.0, 1.0, 1.5, -0.1])
def test_an_attainment_outside_0_1_names_the_field(attainment: float) -> None:
    with pytest.raises(ParamsError, match=r"slo\.attainment"):
        target(attainment=attainment)


def test_an_slo_shorter_than_the_prefill_names_the_field() -> None:
    with pytest.raises(ParamsError, match=r"slo\.timeToFirstTokenSeconds.*prefill"):
        target(ttft=0.05)


def test_capacity_rps_of_a_full_batch() -> None:
    params = ServerParams(
        max_batch_size=4,
        decode_step_s=0.25,
        batch_slowdown=0.0,
        prefill_s_per_token=0.0,
        prefill_overhead_s=0.5,
    )
    # A slot is held 3 decode steps (0.75 s); each request also pauses the batch for 0.5 s.
    assert params.capacity_rps(10, 4) == pytest.approx(4 / (0.75 + 4 * 0.5))
    assert params.capacity_rps(10, 1) == pytest.approx(1 / 0.5)
    with pytest.raises(ParamsError, match="capacity_rps"):
        params.capacity_rps(10, 0)
