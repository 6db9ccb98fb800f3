"""The adapter's own Prometheus metrics, registered on a registry the caller passes in.

Label values are bounded: the ``metric`` label only ever holds a configured metric name (anything
else is reported as ``<unknown>``), so a client probing random paths cannot grow the series count.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["UNKNOWN_METRIC", "AdapterMetrics"]

UNKNOWN_METRIC: Final = "<unknown>"
_PREFIX: Final = "tgi_autoscaler_adapter"
_LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_AGE_BUCKETS: Final = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)


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
            "coalesced (waited for an identical query already in flight).",
            ("result",),
            registry=registry,
        )
        self.sample_age = Histogram(
            f"{_PREFIX}_sample_age_seconds",
            "Age of the Prometheus sample served, at the time it was served.",
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
        for result in ("hit", "miss", "coalesced"):
            self.cache_requests.labels(result=result)
        for result in ("success", "failure"):
            self.config_reloads.labels(result=result)

    def metric_label(self, name: str, known: Callable[[str], bool]) -> str:
        """``name`` if it is a configured metric, else ``<unknown>`` (bounded cardinality)."""
        return name if known(name) else UNKNOWN_METRIC
