"""Traces: the Azure CSV format, rate and time scaling, and the built-in shapes."""

from __future__ import annotations

import math

import pytest

from tgi_autoscaler.backtest.requests import (
    RequestTrace,
    TraceError,
    TraceShape,
    parse_azure_csv,
    scale_trace,
    shaped_trace,
)

pytestmark = pytest.mark.unit

AZURE = """TIMESTAMP,ContextTokens,GeneratedTokens
2023-11-16 18:15:46.6805900,374,44
2023-11-16 18:15:50.9951690,396,109
2023-11-16 18:15:45.5,879,0
2023-11-16 18:17:01,100,7

"""


def test_azure_rows_become_seconds_from_the_first_request_sorted() -> None:
    trace = parse_azure_csv(AZURE, source="t.csv")
    assert trace.arrival == pytest.approx((0.0, 1.18059, 5.495169, 75.5))
    assert trace.prompt_tokens == (879, 374, 396, 100)
    assert trace.output_tokens == (1, 44, 109, 7)  # zero generated tokens: still one (the first token)
    assert trace.duration == 120.0  # whole minutes: the last request is in the second one
    assert trace.rate_per_minute() == [3 / 60, 1 / 60]
    assert trace.mean_rate == pytest.approx(4 / 120)


def test_numeric_timestamps_are_seconds() -> None:
    trace = parse_azure_csv("TIMESTAMP,ContextTokens,GeneratedTokens\n10.5,1,1\n12,2,2\n", source="n")
    assert trace.arrival == (0.0, 1.5)
    assert trace.duration == 60.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "time,prompt,output\n0,1,1\n",
            "line 1: expected the header TIMESTAMP,ContextTokens,GeneratedTokens",
        ),
        ("", "line 1: expected the header"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n0,1\n", "line 2: expected 3 columns"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n0,1,1\n1,x,1\n", "line 3: token counts"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n0,-1,1\n", "line 2: token counts must be >= 0"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,1,1\n", "line 2: TIMESTAMP 'yesterday'"),
        ("TIMESTAMP,ContextTokens,GeneratedTokens\n\n", "no requests"),
    ],
)
def test_bad_csv_names_the_line(text: str, message: str) -> None:
    with pytest.raises(TraceError, match=f"^bad.csv[: ].*{message}"):
        parse_azure_csv(text, source="bad.csv")


def test_a_trace_must_be_sorted_and_non_empty() -> None:
    with pytest.raises(TraceError, match="sorted"):
        RequestTrace("t", (1.0, 0.5), (1, 1), (1, 1), 60.0)
    with pytest.raises(TraceError, match="no requests"):
        RequestTrace("t", (), (), (), 60.0)
    with pytest.raises(TraceError, match="duration"):
        RequestTrace("t", (0.0, 70.0), (1, 1), (1, 1), 60.0)


STEADY = TraceShape(base_rate=4.0, peak_rate=4.0, start=60.0, duration=60.0, end=600.0)


def test_rate_scale_repeats_requests_and_keeps_the_minute_shape() -> None:
    trace = shaped_trace("steady", STEADY, seed=3)
    doubled = scale_trace(trace, rate_scale=2.0, seed=1)
    assert len(doubled) == 2 * len(trace)
    assert doubled.duration == trace.duration
    assert sorted(doubled.prompt_tokens) == sorted(trace.prompt_tokens * 2)
    for a, b in zip(trace.rate_per_minute(), doubled.rate_per_minute(), strict=True):
        assert b == pytest.approx(2 * a, abs=8 / 60)  # copies shifted by < 1 s may cross a minute
    half = scale_trace(trace, rate_scale=1.5, seed=1)
    assert 1.4 * len(trace) < len(half) < 1.6 * len(trace)
    assert "x1.5" in half.name


def test_time_scale_compresses_every_time() -> None:
    trace = shaped_trace("steady", STEADY, seed=3)
    fast = scale_trace(trace, time_scale=4.0)
    assert fast.arrival == pytest.approx(tuple(t / 4 for t in trace.arrival))
    assert fast.duration == trace.duration / 4
    assert fast.output_tokens == trace.output_tokens


@pytest.mark.parametrize(
    ("rate_scale", "time_scale", "message"),
    [
        (0.0, 1.0, "rate scale must be > 0"),
        (-2.0, 1.0, "rate scale"),
        (1.0, math.nan, "time scale must be > 0"),
    ],
)
def test_bad_scales_are_refused(rate_scale: float, time_scale: float, message: str) -> None:
    with pytest.raises(TraceError, match=message):
        scale_trace(shaped_trace("steady", STEADY), rate_scale=rate_scale, time_scale=time_scale)


def test_a_steady_shape_is_poisson_at_its_rate_with_the_fitted_token_counts() -> None:
    trace = shaped_trace(
        "steady", TraceShape(base_rate=5.0, peak_rate=5.0, start=60.0, duration=60.0, end=1200.0)
    )
    expected = 5.0 * 1200
    assert abs(len(trace) - expected) < 4 * math.sqrt(expected)
    gaps = [b - a for a, b in zip(trace.arrival, trace.arrival[1:], strict=False)]
    mean = sum(gaps) / len(gaps)
    sd = math.sqrt(sum((g - mean) ** 2 for g in gaps) / len(gaps))
    assert sd == pytest.approx(mean, rel=0.1)  # exponential gaps: sd equals the mean
    assert 1000 < sorted(trace.prompt_tokens)[len(trace) // 2] < 1045  # median 1,020
    assert 120 < sorted(trace.output_tokens)[len(trace) // 2] < 140  # median 129
    assert trace.mean_output_tokens == pytest.approx(211, rel=0.08)
    assert max(trace.prompt_tokens) <= 4096
    assert min(trace.output_tokens) >= 1


def test_a_spike_runs_at_the_peak_only_during_the_peak() -> None:
    shape = TraceShape(base_rate=2.0, peak_rate=10.0, start=300.0, duration=300.0, end=1200.0)
    per_minute = shaped_trace("spike", shape, seed=5).rate_per_minute()
    before, during, after = per_minute[:5], per_minute[5:10], per_minute[10:]
    assert sum(during) / 5 == pytest.approx(10.0, rel=0.1)
    assert sum(before) / 5 == pytest.approx(2.0, rel=0.25)
    assert sum(after) / 10 == pytest.approx(2.0, rel=0.25)


def test_a_shape_is_deterministic_for_a_seed() -> None:
    assert shaped_trace("bursts", seed=11) == shaped_trace("bursts", seed=11)
    assert shaped_trace("bursts", seed=11) != shaped_trace("bursts", seed=12)


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(TraceError, match=r"unknown trace shape 'square' \(known: spike, bursts"):
        shaped_trace("square")
    with pytest.raises(TraceError, match="start"):
        TraceShape(start=700.0, duration=3000.0, end=3600.0)
    with pytest.raises(TraceError, match="no requests"):
        shaped_trace("steady", TraceShape(base_rate=0.0, peak_rate=0.0))
