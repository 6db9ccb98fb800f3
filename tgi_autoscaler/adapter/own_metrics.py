"""The adapter's own Prometheus metrics, registered on a registry the caller passes in.

Label values are bounded: the ``metric`` label only ever holds a configured metric name (anything
else is reported as ``<unknown>``), so a client probing random paths cannot grow the series count.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["UNKNOWN_METRIC", "AdapterMetrics", "DataAges"]

UNKNOWN_METRIC: Final = "<unknown>"
_PREFIX: Final = "tgi_autoscaler_adapter"
_LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_AGE_BUCKETS: Final = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
# Series of the per-selector data age: one per (metric, namespace, selector) read recently.
_MAX_AGE_SERIES: Final = 20_000
_AGE_IDLE_S: Final = 120.0


class DataAges(Collector):
    """``tgi_autoscaler_adapter_data_age_seconds{metric, metric_namespace, selector}``: the data's age
    at the last read of each selector, kept while it is read (the HPA reads every 15 s), bounded in
    count. ``metric_namespace`` is the request's namespace (``namespace`` is the adapter's own once
    Prometheus scrapes it)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._ages: dict[tuple[str, str, str], tuple[float, float]] = {}

    def record(self, metric: str, namespace: str, selector: str, age_s: float) -> None:
        key = (metric, namespace, selector)
        ages = self._ages
        if key not in ages and len(ages) >= _MAX_AGE_SERIES:
            self._expire()
            while len(ages) >= _MAX_AGE_SERIES:
                del ages[next(iter(ages))]
        ages[key] = (age_s, self._clock())

    def _expire(self) -> None:
        horizon = self._clock() - _AGE_IDLE_S
        for key in [key for key, (_, at) in self._ages.items() if at < horizon]:
            del self._ages[key]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        self._expire()
        family = GaugeMetricFamily(
            f"{_PREFIX}_data_age_seconds",
            "Age of the newest samples behind the value (timestamp() in PromQL, the oldest series "
            "counting) at the last read of each metric, namespace and label selector.",
            labels=("metric", "metric_namespace", "selector"),
        )
        for (metric, namespace, selector), (age, _) in list(self._ages.items()):
            family.add_metric((metric, namespace, selector), age)
        yield family


class AdapterMetrics:
    """Every metric the adapter exports; pass the same instance to the components that record."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.request_duration = Histogram(
            f"{_PREFIX}_request_duration_seconds",
            "Time to answer an API request, by endpoint, external metric and HTTP status code.",
            ("endpoint", "metric", "code"),
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.duration_children: dict[tuple[str, str, int], Any] = {}
        self.prometheus_query_duration = Histogram(
            f"{_PREFIX}_prometheus_query_duration_seconds",
            "Time of instant queries sent to Prometheus, by outcome.",
            ("outcome",),
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.prometheus_query_errors = Counter(
            f"{_PREFIX}_prometheus_query_errors",
            "Failed Prometheus queries, by reason (connect, timeout, http_5xx, bad_data, ...).",
            ("reason",),
            registry=registry,
        )
        self.cache_requests = Counter(
            f"{_PREFIX}_cache_requests",
            "Metric reads by cache result: hit (served from cache), miss (queried Prometheus), "
            "coalesced (waited for an identical query already in flight), prefetch (answered by "
            "a grouped prefetch query).",
            ("result",),
            registry=registry,
        )
        self.sample_age = Histogram(
            f"{_PREFIX}_sample_age_seconds",
            "Age of the data behind each value served (timestamp() of its samples), when served.",
            buckets=_AGE_BUCKETS,
            registry=registry,
        )
        self.config_reloads = Counter(
            f"{_PREFIX}_config_reload",
            "Metric definition loads, by result (success or failure; a failure keeps the last good).",
            ("result",),
            registry=registry,
        )
        self.config_last_reload_success = Gauge(
            f"{_PREFIX}_config_last_reload_success",
            "1 if the last attempt to load metric definitions succeeded, else 0.",
            registry=registry,
        )
        self.config_last_reload_success_timestamp = Gauge(
            f"{_PREFIX}_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful load of metric definitions.",
            registry=registry,
        )
        self.definitions = Gauge(
            f"{_PREFIX}_metric_definitions",
            "External metric definitions currently served.",
            registry=registry,
        )
        self.prefetch_queries = Counter(
            f"{_PREFIX}_prefetch_queries",
            "Grouped prefetch queries, by outcome (success, unavailable, rejected).",
            ("outcome",),
            registry=registry,
        )
        self.data_ages = DataAges()
        registry.register(self.data_ages)
        for result in ("hit", "miss", "coalesced", "prefetch"):
            self.cache_requests.labels(result=result)
        for outcome in ("success", "unavailable", "rejected"):
            self.prefetch_queries.labels(outcome=outcome)
        for result in ("success", "failure"):
            self.config_reloads.labels(result=result)

    def metric_label(self, name: str, known: Callable[[str], bool]) -> str:
        """``name`` if it is a configured metric, else ``<unknown>`` (bounded cardinality)."""
        return name if known(name) else UNKNOWN_METRIC
