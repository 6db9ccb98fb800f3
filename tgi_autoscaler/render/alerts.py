"""Per-service alert rules: the PromQL, the PrometheusRule object and the plain rule file groups.

Every expression is scoped to one service (``namespace`` plus the sanitized instance label for the
engine's series; ``namespace`` plus the object name for kube-state-metrics series) and aggregated
before it is compared, so a service with many replicas raises one alert, not one per pod, and
another service's trouble never fires ours. Thresholds and durations come from ``AlertsSpec``.

The same rule list feeds three consumers: the PrometheusRule the controller applies, the rule file
``promtool check rules`` validates, and the promtool unit tests generated in
``tests/promtool`` (which need each alert's value format to predict its rendered annotations).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tgi_autoscaler.config.observability import AlertsSpec, ConditionAlert, ThresholdAlert
from tgi_autoscaler.config.service import TGIServiceSpec
from tgi_autoscaler.render.engine_metrics import SERVICE_LABEL, EngineMetrics, engine_metrics, label_matchers

__all__ = [
    "AlertRule",
    "ValueFormat",
    "alert_rules",
    "render_prometheus_rule",
    "rule_groups",
    "skipped_alerts",
]

PROMETHEUS_RULE_API_VERSION = "monitoring.coreos.com/v1"
VALUE = "{value}"  # placeholder for the alert's value in summary and description


@dataclass(frozen=True)
class ValueFormat:
    """How an annotation shows ``$value``: the Go template, and the same formatting in Python."""

    template: str
    python: Callable[[float], str]


FIXED = ValueFormat('{{ $value | printf "%.2f" }}', lambda v: f"{v:.2f}")
# Prometheus' humanizePercentage is fmt.Sprintf("%.4g%%", v*100).
PERCENT = ValueFormat("{{ $value | humanizePercentage }}", lambda v: f"{v * 100:.4g}%")
INTEGER = ValueFormat('{{ $value | printf "%.0f" }}', lambda v: f"{v:.0f}")


@dataclass(frozen=True)
class AlertRule:
    """One alerting rule of one service, before it is written as YAML.

    ``summary`` and ``description`` hold ``{value}`` where the alert's value goes; ``value_format``
    renders it (as a Go template for Prometheus, in Python for tests predicting the text).
    """

    alert: str
    spec_key: str  # the AlertsSpec field this rule comes from (camelCase, as in YAML)
    expr: str
    for_: str
    severity: str
    summary: str
    description: str
    value_format: ValueFormat
    labels: Mapping[str, str]

    def annotations(self, runbook_url: str | None = None) -> dict[str, str]:
        annotations = {
            "summary": self.summary.replace(VALUE, self.value_format.template),
            "description": self.description.replace(VALUE, self.value_format.template),
        }
        if runbook_url:
            annotations["runbook_url"] = f"{runbook_url}#{self.alert.lower()}"
        return annotations

    def expected_annotations(self, value: float, runbook_url: str | None = None) -> dict[str, str]:
        """The annotations Prometheus renders when the alert's value is ``value``."""
        shown = self.value_format.python(value)
        annotations = {
            "summary": self.summary.replace(VALUE, shown),
            "description": self.description.replace(VALUE, shown),
        }
        if runbook_url:
            annotations["runbook_url"] = f"{runbook_url}#{self.alert.lower()}"
        return annotations

    def to_rule(self, runbook_url: str | None = None) -> dict[str, Any]:
        return {
            "alert": self.alert,
            "expr": self.expr,
            "for": self.for_,
            "labels": dict(self.labels),
            "annotations": self.annotations(runbook_url),
        }


def _num(value: float) -> str:
    """A threshold as a PromQL number literal (shortest exact repr)."""
    return repr(float(value))


@dataclass(frozen=True)
class _Scope:
    name: str
    namespace: str
    workload: str  # Deployment and HPA name
    metrics: EngineMetrics
    window: str

    @property
    def selector(self) -> str:
        return label_matchers(namespace=self.namespace, **{SERVICE_LABEL: self.name})

    @property
    def hpa_selector(self) -> str:
        return label_matchers(namespace=self.namespace, horizontalpodautoscaler=self.workload)

    @property
    def deployment_selector(self) -> str:
        return label_matchers(namespace=self.namespace, deployment=self.workload)

    @property
    def by(self) -> str:
        return f"namespace, {SERVICE_LABEL}"

    def rate(self, counter: str) -> str:
        return f"sum by ({self.by}) (rate({counter}{self.selector}[{self.window}]))"

    def p95(self, histogram: str) -> str:
        return (
            f"histogram_quantile(0.95, sum by ({self.by}, le) "
            f"(rate({histogram}_bucket{self.selector}[{self.window}])))"
        )

    def hpa(self, series: str, extra: str = "") -> str:
        selector = self.hpa_selector if not extra else self.hpa_selector[:-1] + ", " + extra + "}"
        return f"max by (namespace, horizontalpodautoscaler) ({series}{selector})"

    def who(self) -> str:
        return f"{self.namespace}/{self.name}"


def _labels(scope: _Scope, spec: AlertsSpec, cfg: ConditionAlert) -> dict[str, str]:
    labels = dict(spec.labels)
    labels["severity"] = cfg.severity
    labels["service"] = scope.name
    return labels


def _engine_rules(scope: _Scope, spec: AlertsSpec) -> list[AlertRule]:
    m = scope.metrics
    who = scope.who()
    rules: list[AlertRule] = []
    if m.request_duration is not None and spec.latency_p95.enabled:
        cfg: ThresholdAlert = spec.latency_p95
        rules.append(
            AlertRule(
                alert="TGIRequestLatencyHigh",
                spec_key="latencyP95",
                expr=f"{scope.p95(m.request_duration)} > {_num(cfg.threshold)}",
                for_=cfg.for_,
                severity=cfg.severity,
                summary=f"{who}: p95 request latency is {{value}}s (threshold {cfg.threshold:g}s)",
                description=(
                    f"The 95th percentile end-to-end request duration of {who}, over all replicas and "
                    f"the last {scope.window}, is {{value}}s, above {cfg.threshold:g}s for {cfg.for_}. "
                    "Check first: is the queue wait high too (then capacity is short: see the replica "
                    "panels and TGIAutoscalerAtMaxReplicas/TGIReplicasNotStarting), or only inference "
                    "time (then requests got longer: look at generated tokens per request)."
                ),
                value_format=FIXED,
                labels=_labels(scope, spec, cfg),
            )
        )
    if m.queue_duration is not None and spec.queue_wait_p95.enabled:
        cfg = spec.queue_wait_p95
        rules.append(
            AlertRule(
                alert="TGIQueueWaitHigh",
                spec_key="queueWaitP95",
                expr=f"{scope.p95(m.queue_duration)} > {_num(cfg.threshold)}",
                for_=cfg.for_,
                severity=cfg.severity,
                summary=f"{who}: p95 queue wait is {{value}}s (threshold {cfg.threshold:g}s)",
                description=(
                    f"Requests to {who} wait {{value}}s (p95 over {scope.window}) before their first "
                    f"batch, above {cfg.threshold:g}s for {cfg.for_}. "
                    "Check first: current vs desired replicas on the dashboard; if the HPA did not "
                    "scale, check its events (kubectl describe hpa) and the adapter's sample age."
                ),
                value_format=FIXED,
                labels=_labels(scope, spec, cfg),
            )
        )
    if spec.queue_backlog_per_replica.enabled:
        cfg = spec.queue_backlog_per_replica
        rules.append(
            AlertRule(
                alert="TGIQueueBacklogHigh",
                spec_key="queueBacklogPerReplica",
                expr=f"avg by ({scope.by}) ({m.queue_size}{scope.selector}) > {_num(cfg.threshold)}",
                for_=cfg.for_,
                severity=cfg.severity,
                summary=f"{who}: {{value}} queued requests per replica (threshold {cfg.threshold:g})",
                description=(
                    f"The queue of {who} averages {{value}} requests per replica ({m.queue_size}), "
                    f"above {cfg.threshold:g} for {cfg.for_}, although the HPA scales on this signal. "
                    "Check first: is the HPA at maxReplicas, are new pods Pending (GPU capacity), or "
                    "is the HPA's target per replica set too high for this model?"
                ),
                value_format=FIXED,
                labels=_labels(scope, spec, cfg),
            )
        )
    if m.failures is not None and m.requests is not None and spec.error_ratio.enabled:
        ratio_cfg = spec.error_ratio
        rules.append(
            AlertRule(
                alert="TGIErrorRatioHigh",
                spec_key="errorRatio",
                # Requests with no traffic at all make the denominator 0: the "> 0" filter drops
                # that sample so the ratio is absent (no alert) instead of NaN or +Inf.
                expr=(
                    f"{scope.rate(m.failures)}\n  / ({scope.rate(m.requests)} > 0)\n"
                    f"> {_num(ratio_cfg.threshold)}"
                ),
                for_=ratio_cfg.for_,
                severity=ratio_cfg.severity,
                summary=f"{who}: {{value}} of requests fail (threshold {ratio_cfg.threshold:.4g})",
                description=(
                    f"{{value}} of the requests to {who} failed over the last {scope.window} "
                    f"({m.failures} / {m.requests}), above {ratio_cfg.threshold:.4g} for {ratio_cfg.for_}. "
                    "Check first: the `err` label of the failure counter (validation = client input, "
                    "generation/overloaded = server side) and the pods' logs for OOM or CUDA errors."
                ),
                value_format=PERCENT,
                labels=_labels(scope, spec, ratio_cfg),
            )
        )
    if m.successes is not None and spec.throughput_floor.enabled:
        cfg = spec.throughput_floor
        rules.append(
            AlertRule(
                alert="TGIThroughputLow",
                spec_key="throughputFloor",
                # Engines create the success counter on the first success; "or 0 * queue" makes a
                # running service that never succeeded count as 0 req/s instead of no data.
                expr=(
                    f"(\n  {scope.rate(m.successes)}\n  or\n"
                    f"  0 * sum by ({scope.by}) ({m.queue_size}{scope.selector})\n)\n"
                    f"< {_num(cfg.threshold)}"
                ),
                for_=cfg.for_,
                severity=cfg.severity,
                summary=f"{who}: only {{value}} successful requests/s (floor {cfg.threshold:g})",
                description=(
                    f"{who} completed {{value}} requests per second over the last {scope.window}, "
                    f"below the floor of {cfg.threshold:g}/s for {cfg.for_}. "
                    "Check first: is traffic reaching the service at all (ingress, clients), or are "
                    "requests failing (error ratio) or stuck (queue wait)?"
                ),
                value_format=FIXED,
                labels=_labels(scope, spec, cfg),
            )
        )
    return rules


def _scaling_rules(scope: _Scope, spec: AlertsSpec) -> list[AlertRule]:
    who = scope.who()
    hpa = f"{scope.namespace}/{scope.workload}"
    rules: list[AlertRule] = []
    if spec.hpa_at_max.enabled:
        cfg: ConditionAlert = spec.hpa_at_max
        current = scope.hpa("kube_horizontalpodautoscaler_status_current_replicas")
        desired = scope.hpa("kube_horizontalpodautoscaler_status_desired_replicas")
        maximum = scope.hpa("kube_horizontalpodautoscaler_spec_max_replicas")
        minimum = scope.hpa("kube_horizontalpodautoscaler_spec_min_replicas")
        rules.append(
            AlertRule(
                alert="TGIAutoscalerAtMaxReplicas",
                spec_key="hpaAtMax",
                # An HPA with min == max is pinned on purpose; it is not "out of room".
                expr=(
                    f"({current} >= {maximum})\nand\n({desired} >= {maximum})\nand\n({maximum} > {minimum})"
                ),
                for_=cfg.for_,
                severity=cfg.severity,
                summary=f"{who}: HPA {hpa} has been at maxReplicas ({{value}}) for {cfg.for_}",
                description=(
                    f"The HPA {hpa} runs {{value}} replicas, its maxReplicas, and still wants at least "
                    f"that many; it has had no room to scale for {cfg.for_}. "
                    "Check first: queue wait and backlog; if they are high, raise "
                    "autoscaling.maxReplicas (and make sure the cluster has the GPUs for it)."
                ),
                value_format=INTEGER,
                labels=_labels(scope, spec, cfg),
            )
        )
    if spec.replicas_not_starting.enabled:
        cfg = spec.replicas_not_starting
        desired = scope.hpa("kube_horizontalpodautoscaler_status_desired_replicas")
        available = (
            f"max by (namespace) (kube_deployment_status_replicas_available{scope.deployment_selector})"
        )
        rules.append(
            AlertRule(
                alert="TGIReplicasNotStarting",
                spec_key="replicasNotStarting",
                expr=f"{desired}\n> on (namespace) group_left\n{available}",
                for_=cfg.for_,
                severity=cfg.severity,
                summary=f"{who}: HPA wants {{value}} replicas but fewer are available",
                description=(
                    f"The HPA {hpa} wants {{value}} replicas but Deployment {hpa} has fewer available "
                    f"for {cfg.for_}: new pods are not becoming ready. "
                    f"Check first: `kubectl -n {scope.namespace} get pods -l "
                    f"app.kubernetes.io/instance={scope.name}`: Pending means no node with a free GPU "
                    "(cluster autoscaler, quotas, taints); CrashLoopBackOff or not Ready means the model "
                    "fails to load (logs, memory, model download)."
                ),
                value_format=INTEGER,
                labels=_labels(scope, spec, cfg),
            )
        )
    if spec.scaling_inactive.enabled:
        cfg = spec.scaling_inactive
        condition = scope.hpa(
            "kube_horizontalpodautoscaler_status_condition",
            extra='condition="ScalingActive", status="false"',
        )
        rules.append(
            AlertRule(
                alert="TGIScalingInactive",
                spec_key="scalingInactive",
                expr=f"{condition} == 1",
                for_=cfg.for_,
                severity=cfg.severity,
                summary=f"{who}: HPA {hpa} cannot read its metric and stopped scaling",
                description=(
                    f"The HPA {hpa} reports ScalingActive=False for {cfg.for_} (value {{value}}): it "
                    "cannot get its external metric, so the replica count is frozen. "
                    f"Check first: `kubectl -n {scope.namespace} describe hpa {scope.workload}` "
                    "(FailedGetExternalMetric), `kubectl get apiservice v1beta1.external.metrics.k8s.io` "
                    "and the adapter's logs and TGIAutoscalerAdapter* alerts."
                ),
                value_format=INTEGER,
                labels=_labels(scope, spec, cfg),
            )
        )
    if spec.scaling_metric_absent.enabled:
        cfg = spec.scaling_metric_absent
        m = scope.metrics
        available = (
            f"max by (namespace) (kube_deployment_status_replicas_available{scope.deployment_selector})"
        )
        rules.append(
            AlertRule(
                alert="TGIScalingMetricAbsent",
                spec_key="scalingMetricAbsent",
                # Matching on namespace alone is exact here: both sides are already restricted to
                # this one service (Deployment name on the left, instance label on the right).
                expr=(
                    f"({available} > 0)\nunless on (namespace)\n"
                    f"count by (namespace) ({m.queue_size}{scope.selector})"
                ),
                for_=cfg.for_,
                severity=cfg.severity,
                summary=f"{who}: {{value}} replicas available but no {m.queue_size} series",
                description=(
                    f"Deployment {hpa} has {{value}} available replicas, yet Prometheus has no "
                    f"{m.queue_size}{scope.selector} series for {cfg.for_}. The HPA scales on this "
                    "metric, so autoscaling is blind. Check first: Prometheus' targets page for the "
                    "pods (PodMonitor or scrape annotations), that the pods carry the label "
                    f"app.kubernetes.io/instance={scope.name}, and the metrics port."
                ),
                value_format=INTEGER,
                labels=_labels(scope, spec, cfg),
            )
        )
    return rules


def _resolve(spec: TGIServiceSpec | AlertsSpec, engine: str | None) -> tuple[AlertsSpec, EngineMetrics]:
    if isinstance(spec, AlertsSpec):
        return spec, engine_metrics(engine or "tgi")
    return spec.alerts, engine_metrics(engine or spec.engine.kind.value)


def alert_rules(
    name: str,
    namespace: str,
    spec: TGIServiceSpec | AlertsSpec,
    *,
    engine: str | None = None,
    workload_name: str | None = None,
) -> list[AlertRule]:
    """Every enabled alert rule of one service, in a stable order.

    ``spec`` is the service spec (its ``alerts`` and ``engine`` are used) or an ``AlertsSpec`` plus
    ``engine``. ``workload_name`` is the Deployment and HPA name (default: the service name).
    """
    alerts, metrics = _resolve(spec, engine)
    if not alerts.enabled:
        return []
    scope = _Scope(
        name=name,
        namespace=namespace,
        workload=workload_name or name,
        metrics=metrics,
        window=alerts.rate_window,
    )
    return _engine_rules(scope, alerts) + _scaling_rules(scope, alerts)


def skipped_alerts(engine: str) -> list[str]:
    """``AlertsSpec`` keys that have no rule for ``engine`` because it lacks the needed series."""
    m = engine_metrics(engine)
    skipped = []
    if m.request_duration is None:
        skipped.append("latencyP95")
    if m.queue_duration is None:
        skipped.append("queueWaitP95")
    if m.failures is None or m.requests is None:
        skipped.append("errorRatio")
    if m.successes is None:
        skipped.append("throughputFloor")
    return skipped


def group_name(name: str, namespace: str) -> str:
    return f"tgi-autoscaler.{namespace}.{name}"


def rule_groups(
    name: str,
    namespace: str,
    spec: TGIServiceSpec | AlertsSpec,
    *,
    engine: str | None = None,
    workload_name: str | None = None,
) -> list[dict[str, Any]]:
    """The service's rules as Prometheus rule groups (a rule file's ``groups``; promtool reads it).

    Empty when alerts are disabled.
    """
    alerts, _ = _resolve(spec, engine)
    rules = alert_rules(name, namespace, spec, engine=engine, workload_name=workload_name)
    if not rules:
        return []
    group: dict[str, Any] = {"name": group_name(name, namespace)}
    if alerts.evaluation_interval is not None:
        group["interval"] = alerts.evaluation_interval
    group["rules"] = [rule.to_rule(alerts.runbook_url) for rule in rules]
    return [group]


def render_prometheus_rule(
    name: str,
    namespace: str,
    spec: TGIServiceSpec | AlertsSpec,
    labels: Mapping[str, str],
    owner_refs: Sequence[Mapping[str, Any]] = (),
    *,
    engine: str | None = None,
    workload_name: str | None = None,
) -> dict[str, Any] | None:
    """The service's ``monitoring.coreos.com/v1`` PrometheusRule, or ``None`` when alerts are off."""
    groups = rule_groups(name, namespace, spec, engine=engine, workload_name=workload_name)
    if not groups:
        return None
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "labels": dict(labels)}
    if owner_refs:
        metadata["ownerReferences"] = [dict(ref) for ref in owner_refs]
    return {
        "apiVersion": PROMETHEUS_RULE_API_VERSION,
        "kind": "PrometheusRule",
        "metadata": metadata,
        "spec": {"groups": groups},
    }
