"""Run several policies and the oracle on one trace with the same servers: the backtest's core loop,
shared by the command line, the docs generator and the tests.

Every policy starts from the same state: the replicas the trace's first minute needs at the SLO
target (the service was running before the trace began), so no policy is charged for a cold start
the others do not pay.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from tgi_autoscaler.backtest.oracle import oracle
from tgi_autoscaler.backtest.policies import Policy, Slo, resolve
from tgi_autoscaler.backtest.requests import RequestTrace
from tgi_autoscaler.backtest.run import RunConfig, RunResult, replay
from tgi_autoscaler.backtest.summary import Summary, summarize
from tgi_autoscaler.servicemodel.capacity import slo_target_rps

__all__ = ["Study", "initial_replicas", "run_study"]

Progress = Callable[[str, int, int, float], None]


@dataclass(frozen=True)
class Study:
    trace: RequestTrace
    slo: Slo
    results: tuple[RunResult, ...]
    summaries: tuple[Summary, ...]
    oracle: RunResult | None
    oracle_summary: Summary | None


def initial_replicas(trace: RequestTrace, config: RunConfig, slo: Slo) -> int:
    """Replicas the first minute's rate needs at the SLO target, within the bounds."""
    target = slo_target_rps(
        config.params,
        prompt_tokens=trace.mean_prompt_tokens,
        output_tokens=trace.mean_output_tokens,
        ttft_slo_s=slo.ttft_s,
        attainment=slo.attainment,
    )
    first = trace.rate_per_minute()[0]
    return max(config.min_replicas, min(config.max_replicas, math.ceil(first / target) if target > 0 else 1))


def run_study(
    trace: RequestTrace,
    policies: Sequence[Policy],
    config: RunConfig,
    slo: Slo,
    *,
    with_oracle: bool = True,
    progress: Progress | None = None,
) -> Study:
    if config.initial_replicas is None:
        config = replace(config, initial_replicas=initial_replicas(trace, config, slo))
    total = len(policies) + (1 if with_oracle else 0)
    results: list[RunResult] = []
    summaries: list[Summary] = []
    for number, policy in enumerate(policies, start=1):
        began = time.perf_counter()
        resolved = resolve(
            policy,
            config.params,
            slo,
            prompt_tokens=trace.mean_prompt_tokens,
            output_tokens=trace.mean_output_tokens,
        )
        result = replay(trace, resolved, config)
        results.append(result)
        summaries.append(summarize(result, slo.ttft_s))
        if progress:
            progress(policy.name, number, total, time.perf_counter() - began)
    best: RunResult | None = None
    best_summary: Summary | None = None
    if with_oracle:
        began = time.perf_counter()
        best = oracle(trace, config, slo.ttft_s)
        best_summary = summarize(best, slo.ttft_s)
        if progress:
            progress("oracle", total, total, time.perf_counter() - began)
    return Study(trace, slo, tuple(results), tuple(summaries), best, best_summary)
