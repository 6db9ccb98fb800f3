"""Metric accumulators of one simulated replica, kept free of any Prometheus client.

The queueing model records what a real TGI router would record (counters, histogram observations)
into these plain objects; ``sim.metrics`` turns them into Prometheus metric families at scrape time.
Keeping them pure lets the unit tests check the bookkeeping (count = success + failure) with a
fake clock and no HTTP. Bucket layouts are the router's own (``router/src/server.rs``): a geometric
sequence for every ``*_duration`` histogram and 100 linear buckets for the token-count ones.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "BATCH_SIZE_BUCKETS",
    "DURATION_BUCKETS",
    "TGI_METRICS",
    "Histogram",
    "LabelSet",
    "MetricKind",
    "MetricSpec",
    "ReplicaStats",
    "linear_buckets",
    "percentile",
]

MetricKind = Literal["counter", "gauge", "histogram"]
LabelSet = tuple[tuple[str, str], ...]


def _geometric(start: float, factor: float, n: int) -> tuple[float, ...]:
    values: list[float] = []
    value = start
    for _ in range(n):
        value *= factor
        values.append(value)
    return tuple(values)


# TGI: 35 buckets, 0.0001 * 1.5^k for k = 1..35 (0.15 ms .. ~143 min).
DURATION_BUCKETS: tuple[float, ...] = _geometric(0.0001, 1.5, 35)
# TGI: tgi_batch_next_size buckets are 1..1024.
BATCH_SIZE_BUCKETS: tuple[float, ...] = tuple(float(x + 1) for x in range(1024))


def linear_buckets(limit: int) -> tuple[float, ...]:
    """TGI's token-count buckets: ``limit / 100 * (x + 1)`` for x in 0..99."""
    return tuple(limit / 100.0 * (x + 1) for x in range(100))


@dataclass(frozen=True, slots=True)
class MetricSpec:
    kind: MetricKind
    help: str


# The families a TGI router exports that the simulator reproduces (docs/source/reference/metrics.md).
TGI_METRICS: Mapping[str, MetricSpec] = {
    "tgi_request_count": MetricSpec("counter", "Total number of requests"),
    "tgi_request_success": MetricSpec("counter", "Number of successful requests"),
    "tgi_request_failure": MetricSpec("counter", "Number of failed requests per error type"),
    "tgi_request_duration": MetricSpec("histogram", "Total time spent processing the request"),
    "tgi_request_validation_duration": MetricSpec("histogram", "Time spent validating the request"),
    "tgi_request_queue_duration": MetricSpec("histogram", "Time spent in the queue per request"),
    "tgi_request_inference_duration": MetricSpec("histogram", "Request inference duration"),
    "tgi_request_mean_time_per_token_duration": MetricSpec("histogram", "Mean time per token per request"),
    "tgi_request_generated_tokens": MetricSpec("histogram", "Generated tokens per request"),
    "tgi_request_input_length": MetricSpec("histogram", "Input token length per request"),
    "tgi_request_max_new_tokens": MetricSpec("histogram", "Maximum new tokens per request"),
    "tgi_batch_inference_count": MetricSpec("counter", "Inference calls per method (prefill or decode)"),
    "tgi_batch_inference_success": MetricSpec(
        "counter", "Number of successful inference calls per method (prefill or decode)"
    ),
    "tgi_batch_inference_duration": MetricSpec("histogram", "Batch inference duration"),
    "tgi_batch_forward_duration": MetricSpec(
        "histogram", "Batch forward duration per method (prefill or decode)"
    ),
    "tgi_batch_next_size": MetricSpec("histogram", "Batch size of the next batch"),
    "tgi_queue_size": MetricSpec("gauge", "Current queue size"),
    "tgi_batch_current_size": MetricSpec("gauge", "Current batch size"),
    "tgi_batch_current_max_tokens": MetricSpec("gauge", "Maximum tokens for the current batch"),
}


@dataclass(slots=True)
class Histogram:
    """Cumulative-bucket histogram with the same semantics as a Prometheus one (``le`` inclusive)."""

    buckets: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    sum: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        if list(self.buckets) != sorted(self.buckets) or not self.buckets:
            raise ValueError("histogram buckets must be a non-empty increasing sequence")
        if not self.counts:
            self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        if math.isnan(value):
            raise ValueError("cannot observe NaN")
        index = bisect.bisect_left(self.buckets, value)
        if index < len(self.counts):
            self.counts[index] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, cumulative count)`` pairs, ending with ``(+Inf, count)``."""
        out: list[tuple[float, int]] = []
        running = 0
        for bound, n in zip(self.buckets, self.counts, strict=True):
            running += n
            out.append((bound, running))
        out.append((math.inf, self.count))
        return out


def _labels(labels: Mapping[str, str] | None) -> LabelSet:
    return tuple(sorted((labels or {}).items()))


@dataclass(slots=True)
class ReplicaStats:
    """Counters and histograms of one replica, keyed by (metric name, sorted label pairs)."""

    bucket_layout: Mapping[str, tuple[float, ...]]
    counters: dict[tuple[str, LabelSet], float] = field(default_factory=dict)
    histograms: dict[tuple[str, LabelSet], Histogram] = field(default_factory=dict)

    @classmethod
    def for_limits(cls, *, max_input_tokens: int, max_total_tokens: int) -> ReplicaStats:
        """Bucket layout exactly as the router derives it from its token limits."""
        layout: dict[str, tuple[float, ...]] = {
            name: DURATION_BUCKETS for name in TGI_METRICS if name.endswith("duration")
        }
        layout["tgi_request_input_length"] = linear_buckets(max_input_tokens)
        layout["tgi_request_generated_tokens"] = linear_buckets(max_total_tokens)
        layout["tgi_request_max_new_tokens"] = linear_buckets(max_total_tokens)
        layout["tgi_batch_next_size"] = BATCH_SIZE_BUCKETS
        return cls(bucket_layout=layout)

    def inc(self, name: str, labels: Mapping[str, str] | None = None, amount: float = 1.0) -> None:
        if TGI_METRICS[name].kind != "counter":
            raise ValueError(f"{name} is not a counter")
        key = (name, _labels(labels))
        self.counters[key] = self.counters.get(key, 0.0) + amount

    def observe(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        if TGI_METRICS[name].kind != "histogram":
            raise ValueError(f"{name} is not a histogram")
        key = (name, _labels(labels))
        hist = self.histograms.get(key)
        if hist is None:
            hist = self.histograms[key] = Histogram(self.bucket_layout[name])
        hist.observe(value)

    def counter(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        return self.counters.get((name, _labels(labels)), 0.0)

    def counter_total(self, name: str) -> float:
        """Sum of a counter over all its label sets (e.g. every ``err`` of tgi_request_failure)."""
        return sum(v for (n, _), v in self.counters.items() if n == name)

    def histogram(self, name: str, labels: Mapping[str, str] | None = None) -> Histogram | None:
        return self.histograms.get((name, _labels(labels)))

    def iter_counters(self) -> Iterator[tuple[str, LabelSet, float]]:
        for (name, labels), value in sorted(self.counters.items()):
            yield name, labels, value

    def iter_histograms(self) -> Iterator[tuple[str, LabelSet, Histogram]]:
        for (name, labels), hist in sorted(self.histograms.items(), key=lambda kv: kv[0]):
            yield name, labels, hist


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]); NaN for an empty sequence."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q must be within [0, 100], got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]
