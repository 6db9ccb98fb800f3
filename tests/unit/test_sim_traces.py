"""Load traces and the arrival times they produce."""

from __future__ import annotations

import itertools

import pytest

from tgi_autoscaler_dev.sim.traces import (
    Constant,
    Diurnal,
    Spike,
    Step,
    arrival_times,
    parse_trace,
    trace_from_dict,
    trace_to_dict,
)

pytestmark = pytest.mark.unit


def test_constant_rate_sends_rate_times_duration_evenly_spaced() -> None:
    times = arrival_times(Constant(10.0), duration_s=3.0, max_requests=1000)
    assert len(times) == 30
    gaps = {round(b - a, 6) for a, b in itertools.pairwise(times)}
    assert gaps == {0.1}
    assert 0.0 <= times[0] < 0.1
    assert times[-1] < 3.0


def test_arrivals_stop_at_max_requests() -> None:
    assert len(arrival_times(Constant(100.0), duration_s=10.0, max_requests=7)) == 7


def test_arrivals_stop_at_the_duration() -> None:
    times = arrival_times(Constant(5.0), duration_s=2.0, max_requests=10_000)
    assert len(times) == 10
    assert max(times) < 2.0


def test_step_changes_the_rate_at_the_given_time() -> None:
    trace = Step(before=2.0, after=20.0, at=5.0)
    times = arrival_times(trace, duration_s=10.0, max_requests=10_000)
    assert sum(1 for t in times if t < 5.0) == 10
    assert sum(1 for t in times if t >= 5.0) == 100
    assert trace.rate_at(4.99) == 2.0
    assert trace.rate_at(5.0) == 20.0


def test_spike_adds_peak_traffic_only_inside_its_window() -> None:
    trace = Spike(base=1.0, peak_rate=50.0, start=4.0, duration=2.0)
    times = arrival_times(trace, duration_s=10.0, max_requests=10_000)
    inside = [t for t in times if 4.0 <= t < 6.0]
    assert len(inside) == pytest.approx(100, abs=1)
    assert len(times) - len(inside) == pytest.approx(8, abs=1)


def test_diurnal_goes_from_min_to_max_and_back_over_a_period() -> None:
    trace = Diurnal(low=1.0, high=9.0, period=100.0)
    assert trace.rate_at(0.0) == pytest.approx(1.0)
    assert trace.rate_at(50.0) == pytest.approx(9.0)
    assert trace.rate_at(100.0) == pytest.approx(1.0)
    # The mean rate over a period is (min + max) / 2.
    assert trace.cumulative(100.0) == pytest.approx(500.0)
    times = arrival_times(trace, duration_s=100.0, max_requests=10_000)
    assert len(times) == 500
    assert sum(1 for t in times if 25 <= t < 75) > 3 * sum(1 for t in times if t < 25 or t >= 75)


def test_poisson_arrivals_are_reproducible_with_a_seed() -> None:
    a = arrival_times(Constant(20.0), duration_s=10.0, max_requests=10_000, poisson=True, seed=7)
    b = arrival_times(Constant(20.0), duration_s=10.0, max_requests=10_000, poisson=True, seed=7)
    c = arrival_times(Constant(20.0), duration_s=10.0, max_requests=10_000, poisson=True, seed=8)
    assert a == b
    assert a != c
    assert 150 < len(a) < 250
    assert a == sorted(a)


def test_a_zero_rate_sends_nothing() -> None:
    assert arrival_times(Constant(0.0), duration_s=10.0, max_requests=100) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("constant:rate=5", Constant(5.0)),
        ("step:from=2,to=20,at=30", Step(2.0, 20.0, 30.0)),
        ("spike:base=2,peak=30,start=10,duration=20", Spike(2.0, 30.0, 10.0, 20.0)),
        ("diurnal:min=1,max=20,period=120", Diurnal(1.0, 20.0, 120.0)),
    ],
)
def test_traces_parse_from_text_and_round_trip_through_dicts(text: str, expected: object) -> None:
    trace = parse_trace(text)
    assert trace == expected
    assert trace_from_dict(trace_to_dict(trace)) == trace


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sine:rate=1", "trace.kind"),
        ("step:from=2,to=20", "missing at"),
        ("constant:rate=5,burst=2", "unknown burst"),
        ("constant:rate=fast", "rate must be a number"),
        ("constant:rate=-1", "constant.rate"),
        ("spike:base=1,peak=5,start=1,duration=0", "spike.duration"),
        ("diurnal:min=5,max=1,period=10", "diurnal.max"),
    ],
)
def test_bad_traces_are_rejected_naming_the_problem(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_trace(text)
