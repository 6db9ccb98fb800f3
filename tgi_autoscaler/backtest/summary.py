"""The numbers a policy is judged by: GPU-hours and how many users got their first token in time.

SLO attainment is the share of requests whose time to first token (queue wait plus prefill) is
within the SLO; a refused request (no Ready pod, or the server's concurrency limit) is a miss.
GPU-hours count every pod from the moment it is asked for (it holds its GPU while it loads the
model) until it is gone, over the trace's duration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tgi_autoscaler.backtest.run import RunResult

__all__ = ["Summary", "percentile", "summarize"]


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (``q`` in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass(frozen=True, slots=True)
class Summary:
    policy: str
    requests: int
    gpu_hours: float
    slo_attainment: float
    ttft_p50: float
    ttft_p95: float
    ttft_p99: float
    wait_p50: float
    wait_p95: float
    wait_p99: float
    mean_replicas: float
    peak_replicas: int
    rescales: int
    seconds_at_max: float
    rejected: int


def summarize(result: RunResult, slo_s: float, *, name: str | None = None) -> Summary:
    log = result.log
    n = len(log)
    ttfts: list[float] = []
    waits: list[float] = []
    met = 0
    for rid in range(n):
        ttft = log.ttft(rid)
        if math.isnan(ttft):
            ttft = math.inf  # never answered within the replay
        ttfts.append(ttft)
        wait = log.admitted[rid] - log.arrival[rid]
        waits.append(math.inf if math.isnan(wait) else wait)
        if ttft <= slo_s:
            met += 1
    ttfts.sort()
    waits.sort()
    duration = result.trace.duration
    ticks = [t for t in result.ticks if t.time <= duration]
    peak = max((t.replicas for t in ticks), default=result.config.min_replicas)
    period = ticks[1].time - ticks[0].time if len(ticks) > 1 else 0.0
    at_max = sum(period for t in ticks if t.replicas >= result.config.max_replicas)
    return Summary(
        policy=name or result.policy.name,
        requests=n,
        gpu_hours=result.gpu_seconds / 3600,
        slo_attainment=met / n if n else math.nan,
        ttft_p50=percentile(ttfts, 50),
        ttft_p95=percentile(ttfts, 95),
        ttft_p99=percentile(ttfts, 99),
        wait_p50=percentile(waits, 50),
        wait_p95=percentile(waits, 95),
        wait_p99=percentile(waits, 99),
        mean_replicas=result.gpu_seconds / duration if duration else math.nan,
        peak_replicas=peak,
        rescales=result.rescales,
        seconds_at_max=at_max,
        rejected=sum(log.rejected),
    )
