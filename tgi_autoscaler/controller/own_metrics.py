"""The controller's own Prometheus metrics (about reconciling, not about the services).

Registered on a registry passed in, never the global one, so tests and two controllers in one
process do not collide.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ControllerMetrics"]

_PREFIX = "tgi_autoscaler_controller"


@dataclass(frozen=True)
class ControllerMetrics:
    reconciles: Counter
    reconcile_duration: Histogram
    queue_depth: Gauge
    last_success: Gauge
    leader: Gauge
    applied_objects: Counter
    watch_relists: Counter
    rollout_switched: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ControllerMetrics:
        return cls(
            reconciles=Counter(
                f"{_PREFIX}_reconciles",
                "Reconciles by result (applied, unchanged, invalid, deleted, retry, error).",
                ["result"],
                registry=registry,
            ),
            reconcile_duration=Histogram(
                f"{_PREFIX}_reconcile_duration_seconds",
                "Time to reconcile one service ConfigMap.",
                buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                registry=registry,
            ),
            queue_depth=Gauge(
                f"{_PREFIX}_queue_depth", "Service keys waiting to be reconciled.", registry=registry
            ),
            last_success=Gauge(
                f"{_PREFIX}_last_success_timestamp_seconds",
                "Unix time of the last successful reconcile.",
                registry=registry,
            ),
            leader=Gauge(
                f"{_PREFIX}_leader", "1 while this replica holds the leader lease, else 0.", registry=registry
            ),
            applied_objects=Counter(
                f"{_PREFIX}_applied_objects",
                "Objects sent with server-side apply, by kind and whether the apply changed them.",
                ["kind", "change"],
                registry=registry,
            ),
            watch_relists=Counter(
                f"{_PREFIX}_watch_relists",
                "Full lists made by the watch caches (startup and after 410 Gone).",
                ["resource"],
                registry=registry,
            ),
            # Labels not named namespace/service: scrape target labels of those names would
            # rename them. The dashboards mark a switch where the latest value changes.
            rollout_switched=Gauge(
                f"{_PREFIX}_rollout_switch_timestamp_seconds",
                "Unix time this controller last switched a service's Service to a new model's Deployment.",
                ["service_namespace", "service_name"],
                registry=registry,
            ),
        )
