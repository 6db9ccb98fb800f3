"""Alerting and dashboard settings of one LLM service.

These models are the ``alerts`` and ``dashboard`` sections of a service spec. They hold only what an
operator tunes (thresholds, how long a condition must last, severity, where the dashboard goes); the
PromQL itself lives in :mod:`tgi_autoscaler.render.alerts` and :mod:`tgi_autoscaler.render.dashboard`
so that every expression is generated, and tested, in one place.

Defaults are chosen for chat-style generation on one GPU per replica: a request that waits more than a
few seconds in the queue, or a p95 end-to-end time above a minute, means users notice.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from tgi_autoscaler.config.base import ConfigModel
from tgi_autoscaler.k8s.names import is_dns1123_label
from tgi_autoscaler.promql.matchers import is_label_name

__all__ = [
    "AlertsSpec",
    "ConditionAlert",
    "DashboardSpec",
    "ErrorRatioAlert",
    "HpaAtMaxAlert",
    "LatencyP95Alert",
    "PromDuration",
    "QueueBacklogAlert",
    "QueueWaitP95Alert",
    "ReplicasNotStartingAlert",
    "ScalingInactiveAlert",
    "ScalingMetricAbsentAlert",
    "Severity",
    "ThresholdAlert",
    "ThroughputFloorAlert",
    "parse_duration_seconds",
]

Severity = Literal["info", "warning", "critical"]

# Prometheus' duration grammar: units in descending order, each at most once, at least one present.
_DURATION_RE = re.compile(
    r"^(?:(?P<y>\d+)y)?(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?"
    r"(?:(?P<s>\d+)s)?(?:(?P<ms>\d+)ms)?$"
)
_UNIT_SECONDS = {
    "y": 365 * 86400.0,
    "w": 7 * 86400.0,
    "d": 86400.0,
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 0.001,
}


def parse_duration_seconds(text: str) -> float:
    """Return the length of a Prometheus duration such as ``"1h30m"`` in seconds.

    Raises ``ValueError`` naming the value when it is not a Prometheus duration.
    """
    match = _DURATION_RE.match(text)
    if not text or match is None:
        raise ValueError(f"{text!r} is not a Prometheus duration (examples: 30s, 5m, 1h30m)")
    return sum(_UNIT_SECONDS[unit] * int(value) for unit, value in match.groupdict().items() if value)


def _check_duration(text: str) -> str:
    parse_duration_seconds(text)
    return text


def _check_nonzero_duration(text: str) -> str:
    if parse_duration_seconds(text) <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return text


PromDuration = Annotated[str, AfterValidator(_check_duration)]
"""A Prometheus duration string (``30s``, ``5m``, ``1h30m``); ``0s`` is allowed (fire at once)."""

_Window = Annotated[str, AfterValidator(_check_nonzero_duration)]


def _check_namespace(text: str) -> str:
    if not is_dns1123_label(text):
        raise ValueError(f"{text!r} is not a valid Kubernetes namespace name (RFC 1123 label)")
    return text


def _check_label_name(text: str) -> str:
    if not is_label_name(text):
        raise ValueError(f"{text!r} is not a valid Prometheus label name")
    return text


_Namespace = Annotated[str, AfterValidator(_check_namespace)]
_LabelName = Annotated[str, AfterValidator(_check_label_name)]


def _for(default: str) -> Any:
    return Field(
        default=default,
        alias="for",
        description="How long the condition must hold before the alert fires (Prometheus duration).",
    )


def _severity(default: Severity) -> Any:
    return Field(default=default, description="Value of the alert's `severity` label.")


class ConditionAlert(ConfigModel):
    """An alert without a tunable threshold: it fires when its condition has held for ``for``.

    Every field has a default, so a spec overrides only what it changes (``hpaAtMax: {for: 1h}``).
    """

    enabled: bool = Field(default=True, description="Emit this alert rule.")
    for_: PromDuration = _for("15m")
    severity: Severity = _severity("warning")


class ThresholdAlert(ConditionAlert):
    """An alert that fires when a measured value crosses ``threshold`` for ``for``."""

    threshold: float = Field(gt=0, description="Value the expression is compared against (unit per alert).")


class LatencyP95Alert(ThresholdAlert):
    """p95 end-to-end request duration, seconds."""

    threshold: float = Field(default=60.0, gt=0, description="Seconds (p95 end-to-end request duration).")
    for_: PromDuration = _for("10m")


class QueueWaitP95Alert(ThresholdAlert):
    """p95 time spent in the queue, seconds."""

    threshold: float = Field(default=10.0, gt=0, description="Seconds (p95 time in the queue).")
    for_: PromDuration = _for("10m")


class QueueBacklogAlert(ThresholdAlert):
    """Queued requests per replica."""

    threshold: float = Field(default=20.0, gt=0, description="Queued requests per replica.")
    for_: PromDuration = _for("10m")


class ErrorRatioAlert(ThresholdAlert):
    """Failed / all requests."""

    threshold: float = Field(default=0.05, gt=0, lt=1, description="Fraction of failed requests (0 < x < 1).")
    for_: PromDuration = _for("5m")
    severity: Severity = _severity("critical")


class ThroughputFloorAlert(ThresholdAlert):
    """Successful requests per second; off unless enabled."""

    enabled: bool = Field(default=False, description="Emit this alert rule (off by default).")
    threshold: float = Field(default=0.1, gt=0, description="Successful requests per second.")
    for_: PromDuration = _for("15m")


class HpaAtMaxAlert(ConditionAlert):
    """HPA at maxReplicas."""

    for_: PromDuration = _for("30m")


class ReplicasNotStartingAlert(ConditionAlert):
    """Desired replicas not available."""

    for_: PromDuration = _for("15m")
    severity: Severity = _severity("critical")


class ScalingInactiveAlert(ConditionAlert):
    """HPA ScalingActive=False."""

    for_: PromDuration = _for("10m")
    severity: Severity = _severity("critical")


class ScalingMetricAbsentAlert(ConditionAlert):
    """Queue metric missing while replicas run."""

    for_: PromDuration = _for("5m")
    severity: Severity = _severity("critical")


class AlertsSpec(ConfigModel):
    """Per-service alert rules rendered into a PrometheusRule.

    Request-level alerts read the serving engine's own metrics; the autoscaling alerts read
    kube-state-metrics (``kube_horizontalpodautoscaler_*``, ``kube_deployment_*``), which must be
    installed.
    """

    enabled: bool = Field(default=True, description="Render a PrometheusRule for this service at all.")
    rate_window: _Window = Field(
        default="5m",
        description="Range of every rate()/histogram window. Keep it at least 4x the scrape interval.",
    )
    evaluation_interval: PromDuration | None = Field(
        default=None,
        description="Rule group evaluation interval; unset uses Prometheus' global evaluation_interval.",
    )
    labels: dict[_LabelName, str] = Field(
        default_factory=dict,
        description="Extra labels added to every alert (for routing, e.g. `team: ml-platform`).",
    )
    runbook_url: str | None = Field(
        default=None,
        description="If set, every alert gets a `runbook_url` annotation `<runbookUrl>#<alertname>`.",
    )

    latency_p95: LatencyP95Alert = Field(
        default_factory=LatencyP95Alert,
        description="p95 end-to-end request duration in seconds (queue + inference), over all replicas.",
    )
    queue_wait_p95: QueueWaitP95Alert = Field(
        default_factory=QueueWaitP95Alert,
        description="p95 time a request waits in the queue before its first batch, in seconds.",
    )
    queue_backlog_per_replica: QueueBacklogAlert = Field(
        default_factory=QueueBacklogAlert,
        description=(
            "Queued requests per replica (average of the queue gauge over the replicas reporting it). "
            "Sustained backlog despite autoscaling means the HPA cannot add capacity fast enough."
        ),
    )
    error_ratio: ErrorRatioAlert = Field(
        default_factory=ErrorRatioAlert,
        description="Failed requests / all requests over the rate window (no traffic never fires).",
    )
    throughput_floor: ThroughputFloorAlert = Field(
        default_factory=ThroughputFloorAlert,
        description=(
            "Successful requests per second below this floor. Off by default: an idle service is normal "
            "for most workloads; enable it for services that always have traffic."
        ),
    )
    hpa_at_max: HpaAtMaxAlert = Field(
        default_factory=HpaAtMaxAlert,
        description="The HPA runs maxReplicas and still wants at least that many (min < max).",
    )
    replicas_not_starting: ReplicasNotStartingAlert = Field(
        default_factory=ReplicasNotStartingAlert,
        description=(
            "The HPA wants more replicas than the Deployment has available, e.g. pods Pending for lack "
            "of GPU capacity or crash-looping on model load."
        ),
    )
    scaling_inactive: ScalingInactiveAlert = Field(
        default_factory=ScalingInactiveAlert,
        description=(
            "The HPA reports `ScalingActive=False`: it cannot read its metric (external metrics API "
            "down or returning errors) and has stopped scaling."
        ),
    )
    scaling_metric_absent: ScalingMetricAbsentAlert = Field(
        default_factory=ScalingMetricAbsentAlert,
        description=(
            "The Deployment has available replicas but the queue metric the HPA scales on has no series "
            "(scraping or labels broken): the HPA is blind."
        ),
    )


class DashboardSpec(ConfigModel):
    """Where and how the per-service Grafana dashboard is published."""

    enabled: bool = Field(default=True, description="Render the dashboard ConfigMap for this service.")
    namespace: _Namespace | None = Field(
        default=None,
        description=(
            "Namespace of the dashboard ConfigMap (where the Grafana sidecar looks). Unset: the "
            "controller's --dashboard-namespace, else the service's own namespace."
        ),
    )
    folder: str = Field(
        default="LLM serving",
        min_length=1,
        max_length=128,
        description="Grafana folder, written as the `grafana_folder` annotation for the sidecar.",
    )
    title: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Dashboard title; unset: `<namespace>/<service> (<engine>)`.",
    )
    refresh: _Window = Field(default="30s", description="Auto-refresh interval.")
    time_from: str = Field(default="now-3h", min_length=1, description="Default time range start.")
    gpu_pod_label: _LabelName = Field(
        default="pod",
        description=(
            "Label of `DCGM_FI_DEV_GPU_UTIL` naming the workload pod. `pod` when dcgm-exporter is "
            "scraped with honorLabels; `exported_pod` otherwise."
        ),
    )
    gpu_namespace_label: _LabelName = Field(
        default="namespace",
        description=(
            "Label of `DCGM_FI_DEV_GPU_UTIL` naming the workload namespace "
            "(`exported_namespace` without honorLabels)."
        ),
    )
