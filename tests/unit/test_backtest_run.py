"""Replays: trace -> service model -> scrapes -> HPA (or KPA), on short traces."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from tgi_autoscaler.backtest.policies import (
    BASELINES,
    HpaPolicy,
    KpaPolicy,
    Policy,
    Slo,
    demand_policy,
    policy_names,
    resolve,
    service_policy,
)
from tgi_autoscaler.backtest.requests import RequestTrace, TraceShape, shaped_trace
from tgi_autoscaler.backtest.run import RunConfig, RunResult, replay
from tgi_autoscaler.backtest.summary import percentile, summarize
from tgi_autoscaler.config.service import parse_service_yaml
from tgi_autoscaler.servicemodel import ColdStart, ServerParams
from tgi_autoscaler.signals import SignalKind

pytestmark = pytest.mark.unit

PARAMS = ServerParams()
SLO = Slo()
KUBERNETES_DEFAULTS = next(
    p for p in BASELINES if isinstance(p, HpaPolicy) and p.name == "kubernetes-defaults"
)
KPA = next(p for p in BASELINES if isinstance(p, KpaPolicy))


def resolved(policy: Policy, trace: RequestTrace) -> Policy:
    return resolve(
        policy, PARAMS, SLO, prompt_tokens=trace.mean_prompt_tokens, output_tokens=trace.mean_output_tokens
    )


def steady(rate: float, seconds: float = 900.0, seed: int = 1) -> RequestTrace:
    return shaped_trace(
        "steady",
        TraceShape(base_rate=rate, peak_rate=rate, start=60.0, duration=60.0, end=seconds),
        seed=seed,
    )


def config(**kwargs: object) -> RunConfig:
    return replace(RunConfig(PARAMS, ColdStart(median_s=60.0)), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("initial", "settled_by"), [(2, 150.0), (1, 700.0)])
def test_a_steady_load_under_the_demand_policy_holds_ceil_rate_over_target(
    initial: int, settled_by: float
) -> None:
    trace = steady(8.0, seconds=1200.0)
    policy = resolved(demand_policy(), trace)
    assert isinstance(policy, HpaPolicy)
    assert policy.target is not None
    needed = math.ceil(8.0 / policy.target)
    assert needed == 3  # the case is not on an edge: 8 / 3.27 = 2.45
    result = replay(trace, policy, config(initial_replicas=initial, max_replicas=10))
    late = [t.replicas for t in result.ticks if settled_by <= t.time <= trace.duration]
    assert set(late) == {needed}
    if initial == 2:
        assert result.rescales == 1
    # From one replica the backlog built during the first cold start asks for more (demand counts
    # the queue), and they are given back once it has drained. The requests of that first cold start
    # (60 s of 8 req/s at a third of the capacity) and of its drain (over 60 s) miss the SLO.
    assert summarize(result, SLO.ttft_s).slo_attainment > 0.85


def test_no_data_never_scales_down() -> None:
    # Scrapes far apart: the rate over 60 s never has two samples, so the adapter has no value.
    trace = steady(0.2, seconds=600.0)
    policy = resolved(demand_policy(), trace)
    starved = replay(trace, policy, config(initial_replicas=5, scrape_interval_s=10_000.0))
    assert starved.ticks
    assert all(t.signal is None for t in starved.ticks)
    assert {t.replicas for t in starved.ticks} == {5}
    # The same load with data scales down: the test above is not vacuous.
    scraped = replay(trace, policy, config(initial_replicas=5))
    assert scraped.ticks[-1].replicas == 1


def test_the_first_sync_before_any_rate_holds_the_replicas() -> None:
    trace = steady(4.0, seconds=300.0)
    policy = replace(demand_policy(), sync_period_s=5.0, target=1.0)
    result = replay(trace, policy, config(initial_replicas=3, scrape_interval_s=10.0))
    first = result.ticks[0]
    assert (first.time, first.signal, first.replicas) == (5.0, None, 3)  # one scrape only


def test_the_queue_policy_overshoots_a_spike_where_the_demand_policy_does_not() -> None:
    shape = TraceShape(base_rate=4.0, peak_rate=8.0, start=120.0, duration=300.0, end=720.0)
    trace = shaped_trace("spike", shape, seed=0)
    run = config(initial_replicas=2, max_replicas=20)
    demand = resolved(demand_policy(), trace)
    assert isinstance(demand, HpaPolicy)
    assert demand.target is not None
    demand_peak = summarize(replay(trace, demand, run), SLO.ttft_s).peak_replicas
    queue_peak = summarize(replay(trace, resolved(KUBERNETES_DEFAULTS, trace), run), SLO.ttft_s).peak_replicas
    needed = math.ceil(8.0 / demand.target)
    assert demand_peak <= needed + 1
    assert queue_peak >= 2 * demand_peak


@pytest.mark.parametrize("policy", [demand_policy(), KUBERNETES_DEFAULTS, KPA], ids=lambda p: p.name)
def test_a_replay_is_deterministic_for_a_seed(policy: Policy) -> None:
    trace = shaped_trace(
        "spike", TraceShape(base_rate=3.0, peak_rate=9.0, start=60.0, duration=120.0, end=300.0)
    )
    run = config(initial_replicas=1, cold_start=ColdStart(median_s=40.0, sigma=0.5), seed=4)
    first, second = (replay(trace, resolved(policy, trace), run) for _ in range(2))
    assert first.ticks == second.ticks
    assert first.log.first_token == second.log.first_token
    assert first.gpu_seconds == second.gpu_seconds
    other = replay(trace, resolved(policy, trace), replace(run, seed=5))
    if first.rescales:  # a new pod's cold start is drawn from the seed
        assert other.ticks != first.ticks


def test_every_request_is_answered_and_gpu_time_counts_the_trace_duration() -> None:
    trace = steady(3.0, seconds=300.0)
    result = replay(
        trace, resolved(demand_policy(), trace), config(initial_replicas=2, min_replicas=2, max_replicas=2)
    )
    assert result.gpu_seconds == pytest.approx(2 * trace.duration)
    assert not any(math.isnan(t) for t in result.log.finished)
    assert result.end >= trace.arrival[-1]


def test_the_kpa_policy_scales_with_concurrency_within_the_bounds() -> None:
    trace = shaped_trace(
        "spike", TraceShape(base_rate=2.0, peak_rate=12.0, start=60.0, duration=240.0, end=420.0)
    )
    kpa = resolved(KPA, trace)
    assert isinstance(kpa, KpaPolicy)
    assert kpa.target_concurrency == PARAMS.max_batch_size * 0.7
    result = replay(trace, kpa, config(initial_replicas=1, max_replicas=6))
    replicas = [t.replicas for t in result.ticks]
    assert max(replicas) > 1
    assert all(1 <= r <= 6 for r in replicas)


def test_resolve_fills_only_server_dependent_targets() -> None:
    trace = steady(2.0, seconds=300.0)
    fixed = resolved(KUBERNETES_DEFAULTS, trace)
    assert fixed == KUBERNETES_DEFAULTS
    with pytest.raises(ValueError, match="only the demand signal derives its target"):
        resolved(replace(KUBERNETES_DEFAULTS, target=None), trace)
    with pytest.raises(ValueError, match="resolve the target first"):
        replay(trace, demand_policy(), config())
    assert policy_names()[0] == "tgi-autoscaler"
    assert len(set(policy_names())) == len(policy_names())


def test_the_service_policy_is_what_the_spec_renders() -> None:
    spec = parse_service_yaml("model: {id: m}", source="spec.yaml")
    policy = service_policy(spec)
    assert (policy.name, policy.signal, policy.target) == (
        "service",
        SignalKind.DEMAND,
        spec.scaling_metric[1],
    )
    queue = service_policy(parse_service_yaml("model: {id: m}\nautoscaling: {signal: queue}", source="q"))
    assert queue.signal is SignalKind.QUEUE


def test_run_config_bounds() -> None:
    with pytest.raises(ValueError, match="minReplicas <= maxReplicas"):
        config(min_replicas=3, max_replicas=2)
    with pytest.raises(ValueError, match="scrape interval"):
        config(scrape_interval_s=0.0)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([1.0, 2.0, 3.0, 4.0], 50, 2.0), ([1.0, 2.0, 3.0, 4.0], 99, 4.0), ([5.0], 1, 5.0), ([], 50, math.nan)],
)
def test_nearest_rank_percentile(values: list[float], q: float, expected: float) -> None:
    got = percentile(values, q)
    assert got == expected or (math.isnan(got) and math.isnan(expected))


def test_summary_counts_refused_requests_as_misses() -> None:
    trace = steady(2.0, seconds=300.0)
    result: RunResult = replay(trace, resolved(demand_policy(), trace), config(initial_replicas=1))
    for rid in range(0, len(result.log), 2):
        result.log.rejected[rid] = True
    summary = summarize(result, SLO.ttft_s)
    assert summary.rejected == len(range(0, len(result.log), 2))
    assert summary.slo_attainment <= 0.5 + 1 / len(result.log)
