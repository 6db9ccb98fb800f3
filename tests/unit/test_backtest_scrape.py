"""The backtest's Prometheus: extrapolatedRate's rules, instant gauge sums from the latest scrape,
and "no data" as None, never zero."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tgi_autoscaler.backtest.scrape import Scrapes, extrapolated_rate
from tgi_autoscaler.backtest.signals import evaluate
from tgi_autoscaler.servicemodel import ServiceCounters
from tgi_autoscaler.signals import DemandSignal, SignalKind

pytestmark = pytest.mark.unit


def every(step: float, start: float, stop: float, value0: float, slope: float) -> list[tuple[float, float]]:
    """Samples of a counter growing at ``slope`` per second, every ``step`` s in [start, stop]."""
    out = []
    t = start
    while t <= stop + 1e-9:
        out.append((t, value0 + slope * (t - start)))
        t += step
    return out


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        # Samples exactly at both edges of [0, 60]: no extrapolation, increase / range.
        (every(10, 0, 60, 100, 1.0), 60 / 60),
        # Within 1.1 average intervals of both edges: extrapolated all the way (5 s each side).
        (every(10, 5, 55, 100, 1.0), 50 * (60 / 50) / 60),
        # 30 s gap before the first sample (> 1.1 * 10 s): only half an interval at the start.
        (every(10, 30, 60, 130, 1.0), 30 * (35 / 30) / 60),
        # The same gap at the end.
        (every(10, 0, 30, 100, 1.0), 30 * (35 / 30) / 60),
        # Average interval 49.5 / 5 = 9.9 s, threshold 10.89 s: a 10.5 s gap is extrapolated fully ...
        ([(10.5, 100.0), (20.5, 110.0), (30.5, 120.0), (40.5, 130.0), (50.5, 140.0), (60.0, 149.5)], 1.0),
        # ... but with an average of 9.7 s (threshold 10.67 s) an 11.5 s gap gets half an interval.
        (
            [(11.5, 100.0), (21.5, 110.0), (31.5, 120.0), (41.5, 130.0), (51.5, 140.0), (60.0, 148.5)],
            48.5 * ((48.5 + 9.7 / 2) / 48.5) / 60,
        ),
        # A counter reset (120 -> 5): the value after the reset counts from zero.
        ([(0, 100.0), (10, 110.0), (20, 120.0), (30, 5.0), (40, 15.0), (50, 25.0), (60, 35.0)], 55 / 60),
        # A counter that started just before its first sample: extrapolated only to where it was 0
        # (1 s before the first sample, not the 5 s to the window's start).
        (every(10, 5, 55, 1, 1.0), 50 * (56 / 50) / 60),
        # A counter at 0 at its first sample: no extrapolation before it at all.
        (every(10, 5, 55, 0, 1.0), 50 * (55 / 50) / 60),
        # A flat counter: zero, not "no data".
        (every(10, 0, 60, 7, 0.0), 0.0),
    ],
)
def test_extrapolated_rate_follows_prometheus(samples: list[tuple[float, float]], expected: float) -> None:
    assert extrapolated_rate(samples, 0.0, 60.0) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("samples", [[], [(30.0, 5.0)], [(30.0, 5.0), (30.0, 6.0)]])
def test_fewer_than_two_distinct_samples_have_no_rate(samples: list[tuple[float, float]]) -> None:
    assert extrapolated_rate(samples, 0.0, 60.0) is None


@given(
    step=st.floats(0.5, 15.0),
    offset=st.floats(0.0, 1.0),
    slope=st.floats(0.0, 50.0),
)
def test_a_steady_counter_sampled_regularly_gives_its_slope(step: float, offset: float, slope: float) -> None:
    # Far from zero (to-zero limit not binding), within an interval of both edges: exact.
    samples = every(step, offset * step, 60.0, 1e6, slope)
    samples = [s for s in samples if s[0] <= 60.0]
    if len(samples) < 2 or 60.0 - samples[-1][0] >= 1.1 * step:
        return
    # A counter near 1e6 is stored to about 1e-10 (one ulp), so a difference of two samples over
    # tens of seconds carries an absolute error near 1e-11/s: exact up to that, whatever the slope.
    assert extrapolated_rate(samples, 0.0, 60.0) == pytest.approx(slope, rel=1e-9, abs=1e-9)


def pod(uid: int, *, queue: int = 0, running: int = 0, arrivals: int = 0) -> ServiceCounters:
    return ServiceCounters(uid, queue, running, arrivals, 0)


def test_gauge_sum_reads_only_the_latest_scrape() -> None:
    scrapes = Scrapes()
    scrapes.record(0.0, [pod(0, queue=3), pod(1, queue=2)])
    scrapes.record(10.0, [pod(1, queue=4)])  # pod 0 is gone: stale from this scrape on
    queue = lambda c: c.queue  # noqa: E731
    assert scrapes.gauge_sum(queue, 5.0) == 5.0
    assert scrapes.gauge_sum(queue, 10.0) == 4.0
    assert scrapes.gauge_sum(queue, 99.0) == 4.0
    assert scrapes.gauge_sum(queue, -1.0) is None  # before the first scrape


def test_no_scrape_or_no_pod_is_no_data_not_zero() -> None:
    scrapes = Scrapes()
    queue = lambda c: c.queue  # noqa: E731
    assert scrapes.gauge_sum(queue, 10.0) is None
    assert scrapes.rate_sum(queue, 60.0, 10.0) is None
    scrapes.record(0.0, [])
    scrapes.record(10.0, [])
    assert scrapes.gauge_sum(queue, 10.0) is None
    assert scrapes.rate_sum(queue, 60.0, 10.0) is None


def test_rate_sum_sums_per_series_rates_and_skips_series_with_one_sample() -> None:
    scrapes = Scrapes()
    for t in range(0, 70, 10):
        pods = [pod(0, arrivals=100 + 2 * t)]
        if t == 60:
            pods.append(pod(1, arrivals=50))  # just Ready: one sample, no rate yet
        scrapes.record(float(t), pods)
    arrivals = lambda c: c.arrivals  # noqa: E731
    # Samples at 0..60 inclusive lie in [0, 60]: the window includes its start, as in Prometheus 2.
    assert scrapes.rate_sum(arrivals, 60.0, 60.0) == pytest.approx(2.0)
    only_young = Scrapes()
    only_young.record(0.0, [pod(5, arrivals=1)])
    assert only_young.rate_sum(arrivals, 60.0, 30.0) is None


def test_the_window_includes_a_sample_exactly_at_its_start() -> None:
    # Prometheus 2 selects [t - w, t]: with scrapes 60 s apart, a 60 s rate has both.
    scrapes = Scrapes()
    scrapes.record(0.0, [pod(0, arrivals=10)])
    scrapes.record(60.0, [pod(0, arrivals=70)])
    arrivals = lambda c: c.arrivals  # noqa: E731
    assert scrapes.rate_sum(arrivals, 60.0, 60.0) == pytest.approx(60 / 60)
    assert scrapes.rate_sum(arrivals, 60.0, 60.5) is None  # the first sample has left the window


def test_scrapes_are_recorded_in_time_order() -> None:
    scrapes = Scrapes()
    scrapes.record(10.0, [])
    with pytest.raises(ValueError, match="time order"):
        scrapes.record(5.0, [])


def test_signals_on_scrapes() -> None:
    scrapes = Scrapes()
    for t in range(0, 70, 10):
        scrapes.record(float(t), [pod(0, queue=6, running=4, arrivals=3 * t), pod(1, queue=3, running=2)])
    demand = DemandSignal(rate_window_s=60, drain_s=30)
    assert evaluate(SignalKind.QUEUE, scrapes, 60.0, demand) == 9.0
    assert evaluate(SignalKind.CONCURRENCY, scrapes, 60.0, demand) == 15.0
    assert evaluate(SignalKind.DEMAND, scrapes, 60.0, demand) == pytest.approx(3.0 + 9 / 30)
    first = Scrapes()
    first.record(0.0, [pod(0, queue=6, arrivals=0)])
    assert evaluate(SignalKind.DEMAND, first, 5.0, demand) is None  # a queue but no rate yet
    assert evaluate(SignalKind.QUEUE, Scrapes(), 5.0, demand) is None
