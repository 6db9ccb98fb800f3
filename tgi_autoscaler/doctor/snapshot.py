"""What ``doctor`` read, as typed values: the input of the pure checks.

Kubernetes objects stay the JSON dicts the API server returns (the checks read a handful of fields
and must see exactly what ``kubectl get -o json`` shows); what could not be read is an
:class:`Unreadable` naming the source and the error, never an empty value, so a check can tell
"absent" (``None``) from "could not look" and report the latter as unknown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ClusterSnapshot",
    "ControllerView",
    "MetricRead",
    "Obj",
    "PrometheusSnapshot",
    "SeriesSample",
    "ServiceSnapshot",
    "Unreadable",
]

Obj = Mapping[str, Any]


@dataclass(frozen=True)
class Unreadable:
    """A read that got no usable answer: ``source`` (what was asked) and ``error`` (what happened)."""

    source: str
    error: str


@dataclass(frozen=True)
class MetricRead:
    """One read of an external metric through kube-apiserver's aggregation layer, as the HPA does it.

    ``status`` is the HTTP status (None when the API server itself did not answer), ``reason`` and
    ``message`` come from the ``metav1.Status`` of a failure, ``value`` from a success.
    """

    metric: str
    selector: str
    status: int | None
    reason: str = ""
    message: str = ""
    value: str | None = None


@dataclass(frozen=True)
class SeriesSample:
    """One series of an instant vector: its labels and the time of its newest sample."""

    labels: Mapping[str, str]
    timestamp: float


@dataclass(frozen=True)
class PrometheusSnapshot:
    """Prometheus' answers for one service: the queue series with and without the HPA's selector.

    ``selected``: series of the queue metric in the namespace matching the HPA's selector;
    ``in_namespace``: every series of the queue metric in the namespace (to name the missing label);
    ``rule_groups``: names of the rule groups Prometheus' rules API lists.
    """

    url: str
    queue_series: str
    matchers: str
    selected: Sequence[SeriesSample] | Unreadable
    in_namespace: Sequence[SeriesSample] | Unreadable
    rule_groups: frozenset[str] | Unreadable
    evaluated_at: float


@dataclass(frozen=True)
class ClusterSnapshot:
    """The cluster-wide links: who serves ``external.metrics.k8s.io``."""

    apiservice: Obj | Unreadable | None
    expected_service: tuple[str, str]  # (namespace, name) of our adapter's Service


@dataclass(frozen=True)
class ControllerView:
    """The controller's status annotation on the service ConfigMap, as ``tgi-autoscaler status`` reads it.

    ``phase`` is None when no controller has written a status yet; ``stale`` when the status
    describes an older spec than the ConfigMap holds; ``applied`` lists ``Kind/namespace/name``.
    """

    phase: str | None
    message: str
    stale: bool
    applied: tuple[str, ...]


@dataclass(frozen=True)
class ServiceSnapshot:
    """Everything read for one service."""

    namespace: str
    name: str
    configmap: Obj | Unreadable | None
    spec_error: str | None  # why data.service.yaml does not parse, if it does not
    controller: ControllerView | None
    engine: str
    hpa: Obj | Unreadable | None
    deployment: Obj | Unreadable | None
    pods: Sequence[Obj] | Unreadable
    events: Sequence[Obj] | Unreadable
    metric_reads: Sequence[MetricRead]
    prometheus: PrometheusSnapshot | Unreadable
    rule_expected: bool  # the service has alerts and the cluster runs the Prometheus Operator
    prometheus_rule: Obj | Unreadable | None
    dashboard: Obj | Unreadable | None
    dashboard_ref: tuple[str, str] | None  # (namespace, name) the controller applied, if any
    nodes: Sequence[Obj] | Unreadable
    now: float
