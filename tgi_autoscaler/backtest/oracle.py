"""The hindsight oracle: the cheapest replica schedule, minute by minute, that gives every request
its first token within the SLO, knowing the whole trace and the cold start.

For each window (60 s by default) it finds, by bisection, the fewest Ready replicas with which every
request arriving in the window meets the SLO, starting from the state the previous windows left
(queues and running batches carry over), then commits that count and moves on. Pods it adds were
asked for one median cold start earlier, and that loading time is charged as GPU time; pods it
removes drain. Where no count up to ``max_replicas`` meets the SLO (a request too long for any
replica), it takes the count with the most requests in time.

Greedy by window, so it is an achievable schedule, not a proven optimum; it is the yardstick for
"how much GPU time did this policy spend beyond what the traffic needed". A policy cannot reach it:
it does not know what comes next.
"""

from __future__ import annotations

import copy
import math
from bisect import bisect_left
from dataclasses import dataclass

from tgi_autoscaler.backtest.policies import HpaPolicy
from tgi_autoscaler.backtest.requests import RequestTrace
from tgi_autoscaler.backtest.run import RunConfig, RunResult, Tick
from tgi_autoscaler.servicemodel import RequestLog, Service
from tgi_autoscaler.signals import SignalKind

__all__ = ["ORACLE", "oracle"]

ORACLE = HpaPolicy(
    "oracle", "hindsight: fewest replicas per minute that meet the SLO", SignalKind.DEMAND, 1.0, None
)


@dataclass(frozen=True, slots=True)
class _Window:
    start: float
    end: float
    first: int  # index of the first request arriving in the window
    last: int  # one past the last


def _run_window(service: Service, trace: RequestTrace, window: _Window, until: float, index: int) -> int:
    """Route arrivals from ``index`` up to ``until``; return the next index."""
    arrivals = trace.arrival
    n = len(arrivals)
    while index < n and arrivals[index] < until:
        service.advance(arrivals[index])
        service.arrive(index, arrivals[index])
        index += 1
    service.advance(until)
    return index


def _met(log: RequestLog, window: _Window, slo_s: float) -> int:
    return sum(1 for rid in range(window.first, window.last) if log.ttft(rid) <= slo_s)


def _set_ready(service: Service, replicas: int, now: float, lead: float) -> None:
    current = service.replicas
    if replicas > current:
        service.add_ready(replicas - current, now, created=now - lead)
    elif replicas < current:
        service.scale_to(replicas, now)


def oracle(
    trace: RequestTrace,
    config: RunConfig,
    slo_s: float,
    *,
    window_s: float = 60.0,
    ceiling: int | None = None,
) -> RunResult:
    """The oracle's schedule for ``trace``; ``ceiling`` bounds the search (default 2 x maxReplicas)."""
    ceiling = ceiling or 2 * config.max_replicas
    log = RequestLog(list(trace.arrival), list(trace.prompt_tokens), list(trace.output_tokens))
    lead = config.cold_start.median_s
    service = Service(config.params, config.cold_start, log, initial_replicas=1, seed=config.seed)
    ticks: list[Tick] = []
    rescales = 0
    index = 0
    windows = math.ceil(trace.duration / window_s)
    for k in range(windows):
        start, end = k * window_s, min((k + 1) * window_s, trace.duration)
        window = _Window(start, end, bisect_left(trace.arrival, start), bisect_left(trace.arrival, end))
        horizon = end + slo_s

        def attempt(
            replicas: int, window: _Window = window, horizon: float = horizon, index: int = index
        ) -> int:
            # The trial shares the request log: the committed run below rewrites what it touched.
            trial = copy.deepcopy(service, {id(log): log})
            _set_ready(trial, replicas, window.start, lead)
            _run_window(trial, trace, window, horizon, index)
            return _met(log, window, slo_s)

        wanted = window.last - window.first
        low, high = config.min_replicas, ceiling
        best = high
        met_high = attempt(high)
        if met_high >= wanted:
            while low < high:
                mid = (low + high) // 2
                met = attempt(mid)
                if met >= wanted:
                    high = mid
                else:
                    low = mid + 1
            best = low
        if best != service.replicas:
            rescales += 1
        _set_ready(service, best, start, lead)
        index = _run_window(service, trace, window, end, index)
        ticks.append(Tick(start, None, best, service.replicas, service.ready, 0))
    gpu = service.gpu_seconds
    _run_window(
        service, trace, _Window(trace.duration, trace.duration, index, index), trace.duration + 600, index
    )
    return RunResult(ORACLE, trace, config, log, tuple(ticks), gpu, service.now, rescales)
