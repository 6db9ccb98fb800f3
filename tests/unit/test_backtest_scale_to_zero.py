"""Backtest replays of scale to zero: the idle window, the wake-up delay, held and refused requests."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from tgi_autoscaler.backtest.policies import HpaPolicy, Slo, demand_policy, resolve
from tgi_autoscaler.backtest.requests import RequestTrace
from tgi_autoscaler.backtest.run import RunConfig, ScaleToZero, replay
from tgi_autoscaler.backtest.summary import summarize
from tgi_autoscaler.servicemodel import ColdStart, ServerParams

pytestmark = pytest.mark.unit

PARAMS = ServerParams()
COLD = ColdStart(median_s=60.0, sigma=0.0)


def trace(bursts: list[tuple[float, int]], duration: float) -> RequestTrace:
    """``count`` requests one second apart from each burst's start."""
    arrival = tuple(float(start + i) for start, count in bursts for i in range(count))
    n = len(arrival)
    return RequestTrace("bursts", arrival, (200,) * n, (50,) * n, duration)


def policy(t: RequestTrace) -> HpaPolicy:
    resolved = resolve(
        demand_policy(), PARAMS, Slo(), prompt_tokens=t.mean_prompt_tokens, output_tokens=t.mean_output_tokens
    )
    assert isinstance(resolved, HpaPolicy)
    return resolved


def test_min_replicas_zero_needs_the_activator() -> None:
    with pytest.raises(ValueError, match="minReplicas 0 needs scale_to_zero"):
        RunConfig(PARAMS, COLD, min_replicas=0)
    with pytest.raises(ValueError, match="max held requests"):
        ScaleToZero(max_held=0)


def test_idles_to_zero_after_the_window_then_a_burst_waits_one_cold_start_and_is_answered() -> None:
    t = trace([(10, 5), (1500, 20)], duration=2400)
    stz = ScaleToZero(idle_after_s=300, max_held=100, max_wait_s=300)
    result = replay(t, policy(t), RunConfig(PARAMS, COLD, min_replicas=0, max_replicas=4, scale_to_zero=stz))
    # Never at zero before the idle window has passed since the last request of the first burst.
    last_first = 14.0
    zero_at = next(tick.time for tick in result.ticks if tick.replicas == 0)
    assert zero_at >= last_first + stz.idle_after_s
    assert zero_at < 1500
    # The second burst finds zero replicas: held, woken, all answered after about one cold start.
    second = range(5, 25)
    assert not any(result.log.rejected[rid] for rid in second)
    ttfts = [result.log.ttft(rid) for rid in second]
    assert min(ttfts) >= 0  # answered
    assert max(ttfts) >= COLD.median_s - 20  # the first held request waited out the model load
    assert max(ttfts) < stz.max_wait_s
    assert max(tick.replicas for tick in result.ticks if tick.time > 1500) >= 1


def test_scale_to_zero_saves_gpu_time_on_an_idle_service_and_costs_the_slo_of_the_first_requests() -> None:
    t = trace([(10, 5), (3000, 10)], duration=3600)
    p = policy(t)
    one = replay(t, p, RunConfig(PARAMS, COLD, min_replicas=1, max_replicas=4))
    stz = RunConfig(PARAMS, COLD, min_replicas=0, max_replicas=4, scale_to_zero=ScaleToZero(idle_after_s=300))
    zero = replay(t, p, stz)
    assert zero.gpu_seconds < 0.5 * one.gpu_seconds
    slo = Slo().ttft_s
    assert summarize(zero, slo).slo_attainment < summarize(one, slo).slo_attainment
    assert summarize(zero, slo).rejected == 0


def test_requests_beyond_the_bound_or_the_wait_are_refused() -> None:
    t = trace([(10, 30)], duration=600)
    full = ScaleToZero(idle_after_s=300, max_held=5, max_wait_s=300)
    base = RunConfig(PARAMS, COLD, min_replicas=0, max_replicas=4, initial_replicas=0, scale_to_zero=full)
    held = replay(t, policy(t), base)
    # The first five arrivals are held; the next ones come within the cold start and are refused
    # until a replica is Ready (~70 s: a sync, then the 60 s load), after the last arrival (39 s).
    assert [held.log.rejected[rid] for rid in range(30)] == [False] * 5 + [True] * 25
    short = replace(base, scale_to_zero=replace(full, max_held=100, max_wait_s=20))
    waited = replay(t, policy(t), short)
    assert all(waited.log.rejected[rid] for rid in range(30))
    assert all(math.isnan(waited.log.first_token[rid]) for rid in range(30))
