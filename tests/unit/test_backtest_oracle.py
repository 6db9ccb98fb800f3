"""The hindsight oracle: meets the SLO where it can, and never costs more than a constant allocation
that meets it too."""

from __future__ import annotations

import pytest

from tgi_autoscaler.backtest.oracle import oracle
from tgi_autoscaler.backtest.policies import Slo, demand_policy, resolve
from tgi_autoscaler.backtest.requests import RequestTrace, TraceShape, shaped_trace
from tgi_autoscaler.backtest.run import RunConfig, replay
from tgi_autoscaler.backtest.summary import summarize
from tgi_autoscaler.servicemodel import ColdStart, ServerParams

pytestmark = pytest.mark.unit

PARAMS = ServerParams()
SLO = Slo()
CONFIG = RunConfig(PARAMS, ColdStart(median_s=60.0), max_replicas=8)


def spike() -> RequestTrace:
    shape = TraceShape(base_rate=2.0, peak_rate=9.0, start=120.0, duration=120.0, end=360.0)
    return shaped_trace("spike", shape, seed=2)


def constant(trace: RequestTrace, replicas: int) -> tuple[float, float]:
    """GPU-seconds and SLO attainment of ``replicas`` pods all along."""
    policy = resolve(
        demand_policy(),
        PARAMS,
        SLO,
        prompt_tokens=trace.mean_prompt_tokens,
        output_tokens=trace.mean_output_tokens,
    )
    fixed = RunConfig(
        PARAMS, CONFIG.cold_start, min_replicas=replicas, max_replicas=replicas, initial_replicas=replicas
    )
    result = replay(trace, policy, fixed)
    return result.gpu_seconds, summarize(result, SLO.ttft_s).slo_attainment


def test_the_oracle_meets_the_slo_for_every_request() -> None:
    trace = spike()
    result = oracle(trace, CONFIG, SLO.ttft_s)
    summary = summarize(result, SLO.ttft_s)
    assert summary.slo_attainment == 1.0
    assert summary.rejected == 0
    assert summary.ttft_p99 <= SLO.ttft_s
    # One decision per minute, within the bounds, and it follows the load up and down.
    assert [t.time for t in result.ticks] == [0.0, 60.0, 120.0, 180.0, 240.0, 300.0]
    replicas = [t.replicas for t in result.ticks]
    assert all(CONFIG.min_replicas <= r <= 2 * CONFIG.max_replicas for r in replicas)
    assert max(replicas[2:4]) > replicas[0]
    assert replicas[-1] < max(replicas)


def test_the_oracle_spends_no_more_than_a_constant_allocation_that_meets_the_slo() -> None:
    trace = spike()
    spent = oracle(trace, CONFIG, SLO.ttft_s).gpu_seconds
    generous = 6  # 9 req/s at about 4 req/s per replica, with room to spare
    budget, attainment = constant(trace, generous)
    assert attainment == 1.0
    assert budget == pytest.approx(generous * trace.duration)
    assert spent <= budget
    # And no more than the smallest constant count that meets the SLO for everyone (the peak's).
    smallest = next(n for n in range(1, generous + 1) if constant(trace, n)[1] == 1.0)
    assert smallest < generous
    assert spent <= constant(trace, smallest)[0]


def test_the_oracle_pays_for_loading_the_pods_it_adds() -> None:
    trace = spike()
    slow = RunConfig(PARAMS, ColdStart(median_s=120.0), max_replicas=8)
    fast = RunConfig(PARAMS, ColdStart(median_s=10.0), max_replicas=8)
    assert oracle(trace, slow, SLO.ttft_s).gpu_seconds > oracle(trace, fast, SLO.ttft_s).gpu_seconds
