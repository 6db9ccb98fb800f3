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
from typing import Any, Generic, TypeVar

from tgi_autoscaler.config.observability import AlertsSpec, ConditionAlert, ThresholdAlert
from tgi_autoscaler.config.service import TGIServiceSpec
from tgi_autoscaler.engines import Counted, EngineMetrics, engine_metrics
from tgi_autoscaler.promql.matchers import quote_string
from tgi_autoscaler.render.rollout import DEPLOYMENT_SUFFIX_PATTERN
from tgi_autoscaler.render.selectors import SERVICE_LABEL, counted_rate, label_matchers

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
        # Every server Deployment of the service: after a blue-green switch it has a model suffix.
        pattern = quote_string(self.workload + DEPLOYMENT_SUFFIX_PATTERN)
        return label_matchers(namespace=self.namespace)[:-1] + f", deployment=~{pattern}}}"

    @property
    def by(self) -> str:
        return f"namespace, {SERVICE_LABEL}"

    def rate(self, counter: str | Counted | None) -> str:
        if not isinstance(counter, Counted):
            counter = Counted(_present(counter))
        return counted_rate(counter, self.selector, self.window, self.by)

    def p95(self, histogram: str | None) -> str:
        return (
            f"histogram_quantile(0.95, sum by ({self.by}, le) "
            f"(rate({_present(histogram)}_bucket{self.selector}[{self.window}])))"
        )

    def hpa(self, series: str, extra: str = "") -> str:
        selector = self.hpa_selector if not extra else self.hpa_selector[:-1] + ", " + extra + "}"
        return f"max by (namespace, horizontalpodautoscaler) ({series}{selector})"

    def available(self) -> str:
        """Available replicas of the service's Deployment (kube-state-metrics)."""
        return f"max by (namespace) (kube_deployment_status_replicas_available{self.deployment_selector})"

    @property
    def who(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def hpa_name(self) -> str:
        """The HPA's (and Deployment's) ``namespace/name``."""
        return f"{self.namespace}/{self.workload}"


def _failure_hint(m: EngineMetrics) -> str:
    if m.failure_label is not None:
        return (
            f"Check first: the `{m.failure_label}` label of the failure counter (validation = client "
            "input, generation/overloaded = server side) and the pods' logs for OOM or CUDA errors."
        )
    return (
        "These are aborted requests: clients that gave up (timeouts, disconnects) or requests the "
        "engine aborted. Check first: the pods' logs for errors, and queue wait (clients time out "
        "while requests queue)."
    )


def _failures_text(m: EngineMetrics) -> str:
    failures = m.failures
    if failures is None:
        raise AssertionError("alert rendered for an engine that lacks its series")
    return failures.name + (f"{{{failures.matchers}}}" if failures.matchers else "")


def _present(series: str | None) -> str:
    # Only reached for engines that have the series: ``_ServiceAlert.needs`` filters the others.
    if series is None:
        raise AssertionError("alert rendered for an engine that lacks its series")
    return series


C = TypeVar("C", bound=ConditionAlert)
Text = Callable[[_Scope, C], str]


def _any_engine(_metrics: EngineMetrics) -> bool:
    return True


@dataclass(frozen=True)
class _ServiceAlert(Generic[C]):
    """One per-service alert: the ``AlertsSpec`` setting behind it and how its text is built.

    ``for``, severity and labels come from the setting; summary and description hold ``{value}``.
    """

    alert: str
    spec_key: str  # the AlertsSpec field (camelCase, as in YAML)
    setting: Callable[[AlertsSpec], C]
    expr: Text[C]
    summary: Text[C]
    description: Text[C]
    value_format: ValueFormat
    needs: Callable[[EngineMetrics], bool] = _any_engine  # False: the engine lacks a needed series

    def rule(self, scope: _Scope, spec: AlertsSpec) -> AlertRule | None:
        """The rule for ``scope``, or ``None`` when it is disabled or the engine cannot feed it."""
        cfg = self.setting(spec)
        if not cfg.enabled or not self.needs(scope.metrics):
            return None
        return AlertRule(
            alert=self.alert,
            spec_key=self.spec_key,
            expr=self.expr(scope, cfg),
            for_=cfg.for_,
            severity=cfg.severity,
            summary=self.summary(scope, cfg),
            description=self.description(scope, cfg),
            value_format=self.value_format,
            labels={**spec.labels, "severity": cfg.severity, "service": scope.name},
        )


def _at_max_expr(s: _Scope, _cfg: ConditionAlert) -> str:
    current = s.hpa("kube_horizontalpodautoscaler_status_current_replicas")
    desired = s.hpa("kube_horizontalpodautoscaler_status_desired_replicas")
    maximum = s.hpa("kube_horizontalpodautoscaler_spec_max_replicas")
    minimum = s.hpa("kube_horizontalpodautoscaler_spec_min_replicas")
    # An HPA with min == max is pinned on purpose; it is not "out of room".
    return f"({current} >= {maximum})\nand\n({desired} >= {maximum})\nand\n({maximum} > {minimum})"


_SERVICE_ALERTS: tuple[_ServiceAlert[Any], ...] = (
    _ServiceAlert[ThresholdAlert](
        alert="TGIRequestLatencyHigh",
        spec_key="latencyP95",
        setting=lambda a: a.latency_p95,
        needs=lambda m: m.request_duration is not None,
        expr=lambda s, c: f"{s.p95(s.metrics.request_duration)} > {_num(c.threshold)}",
        summary=lambda s, c: f"{s.who}: p95 request latency is {{value}}s (threshold {c.threshold:g}s)",
        description=lambda s, c: (
            f"The 95th percentile end-to-end request duration of {s.who}, over all replicas and "
            f"the last {s.window}, is {{value}}s, above {c.threshold:g}s for {c.for_}. "
            "Check first: is the queue wait high too (then capacity is short: see the replica "
            "panels and TGIAutoscalerAtMaxReplicas/TGIReplicasNotStarting), or only inference "
            "time (then requests got longer: look at generated tokens per request)."
        ),
        value_format=FIXED,
    ),
    _ServiceAlert[ThresholdAlert](
        alert="TGIQueueWaitHigh",
        spec_key="queueWaitP95",
        setting=lambda a: a.queue_wait_p95,
        needs=lambda m: m.queue_duration is not None,
        expr=lambda s, c: f"{s.p95(s.metrics.queue_duration)} > {_num(c.threshold)}",
        summary=lambda s, c: f"{s.who}: p95 queue wait is {{value}}s (threshold {c.threshold:g}s)",
        description=lambda s, c: (
            f"Requests to {s.who} wait {{value}}s (p95 over {s.window}) before their first "
            f"batch, above {c.threshold:g}s for {c.for_}. "
            "Check first: current vs desired replicas on the dashboard; if the HPA did not "
            "scale, check its events (kubectl describe hpa) and the adapter's sample age."
        ),
        value_format=FIXED,
    ),
    _ServiceAlert[ThresholdAlert](
        alert="TGIQueueBacklogHigh",
        spec_key="queueBacklogPerReplica",
        setting=lambda a: a.queue_backlog_per_replica,
        expr=lambda s, c: f"avg by ({s.by}) ({s.metrics.queue_size}{s.selector}) > {_num(c.threshold)}",
        summary=lambda s, c: f"{s.who}: {{value}} queued requests per replica (threshold {c.threshold:g})",
        description=lambda s, c: (
            f"The queue of {s.who} averages {{value}} requests per replica ({s.metrics.queue_size}), "
            f"above {c.threshold:g} for {c.for_}, although the HPA scales on this signal. "
            "Check first: is the HPA at maxReplicas, are new pods Pending (GPU capacity), or "
            "is the HPA's target per replica set too high for this model?"
        ),
        value_format=FIXED,
    ),
    _ServiceAlert[ThresholdAlert](
        alert="TGIErrorRatioHigh",
        spec_key="errorRatio",
        setting=lambda a: a.error_ratio,
        needs=lambda m: m.failures is not None and m.error_base is not None,
        # Requests with no traffic at all make the denominator 0: the "> 0" filter drops that
        # sample so the ratio is absent (no alert) instead of NaN or +Inf.
        expr=lambda s, c: (
            f"{s.rate(s.metrics.failures)}\n  / ({s.rate(s.metrics.error_base)} > 0)\n> {_num(c.threshold)}"
        ),
        summary=lambda s, c: f"{s.who}: {{value}} of requests fail (threshold {c.threshold:.4g})",
        description=lambda s, c: (
            f"{{value}} of the requests to {s.who} failed over the last {s.window} "
            f"({_failures_text(s.metrics)} / {s.metrics.error_base}), above {c.threshold:.4g} for "
            f"{c.for_}. {_failure_hint(s.metrics)}"
        ),
        value_format=PERCENT,
    ),
    _ServiceAlert[ThresholdAlert](
        alert="TGIThroughputLow",
        spec_key="throughputFloor",
        setting=lambda a: a.throughput_floor,
        needs=lambda m: m.successes is not None,
        # Engines create the success counter on the first success; "or 0 * queue" makes a running
        # service that never succeeded count as 0 req/s instead of no data.
        expr=lambda s, c: (
            f"(\n  {s.rate(s.metrics.successes)}\n  or\n"
            f"  0 * sum by ({s.by}) ({s.metrics.queue_size}{s.selector})\n)\n"
            f"< {_num(c.threshold)}"
        ),
        summary=lambda s, c: f"{s.who}: only {{value}} successful requests/s (floor {c.threshold:g})",
        description=lambda s, c: (
            f"{s.who} completed {{value}} requests per second over the last {s.window}, "
            f"below the floor of {c.threshold:g}/s for {c.for_}. "
            "Check first: is traffic reaching the service at all (ingress, clients), or are "
            "requests failing (error ratio) or stuck (queue wait)?"
        ),
        value_format=FIXED,
    ),
    _ServiceAlert[ConditionAlert](
        alert="TGIAutoscalerAtMaxReplicas",
        spec_key="hpaAtMax",
        setting=lambda a: a.hpa_at_max,
        expr=_at_max_expr,
        summary=lambda s, c: f"{s.who}: HPA {s.hpa_name} has been at maxReplicas ({{value}}) for {c.for_}",
        description=lambda s, c: (
            f"The HPA {s.hpa_name} runs {{value}} replicas, its maxReplicas, and still wants at least "
            f"that many; it has had no room to scale for {c.for_}. "
            "Check first: queue wait and backlog; if they are high, raise "
            "autoscaling.maxReplicas (and make sure the cluster has the GPUs for it)."
        ),
        value_format=INTEGER,
    ),
    _ServiceAlert[ConditionAlert](
        alert="TGIReplicasNotStarting",
        spec_key="replicasNotStarting",
        setting=lambda a: a.replicas_not_starting,
        expr=lambda s, c: (
            f"{s.hpa('kube_horizontalpodautoscaler_status_desired_replicas')}\n"
            f"> on (namespace) group_left\n{s.available()}"
        ),
        summary=lambda s, c: f"{s.who}: HPA wants {{value}} replicas but fewer are available",
        description=lambda s, c: (
            f"The HPA {s.hpa_name} wants {{value}} replicas but Deployment {s.hpa_name} has fewer "
            f"available for {c.for_}: new pods are not becoming ready. "
            f"Check first: `kubectl -n {s.namespace} get pods -l "
            f"app.kubernetes.io/instance={s.name}`: Pending means no node with a free GPU "
            "(cluster autoscaler, quotas, taints); CrashLoopBackOff or not Ready means the model "
            "fails to load (logs, memory, model download)."
        ),
        value_format=INTEGER,
    ),
    _ServiceAlert[ConditionAlert](
        alert="TGIScalingInactive",
        spec_key="scalingInactive",
        setting=lambda a: a.scaling_inactive,
        expr=lambda s, c: (
            s.hpa(
                "kube_horizontalpodautoscaler_status_condition",
                extra='condition="ScalingActive", status="false"',
            )
            + " == 1"
        ),
        summary=lambda s, c: f"{s.who}: HPA {s.hpa_name} cannot read its metric and stopped scaling",
        description=lambda s, c: (
            f"The HPA {s.hpa_name} reports ScalingActive=False for {c.for_} (value {{value}}): it "
            "cannot get its external metric, so the replica count is frozen. "
            f"Check first: `kubectl -n {s.namespace} describe hpa {s.workload}` "
            "(FailedGetExternalMetric), `kubectl get apiservice v1beta1.external.metrics.k8s.io` "
            "and the adapter's logs and TGIAutoscalerAdapter* alerts."
        ),
        value_format=INTEGER,
    ),
    _ServiceAlert[ConditionAlert](
        alert="TGIScalingMetricAbsent",
        spec_key="scalingMetricAbsent",
        setting=lambda a: a.scaling_metric_absent,
        # Matching on namespace alone is exact here: both sides are already restricted to this one
        # service (Deployment name on the left, instance label on the right).
        expr=lambda s, c: (
            f"({s.available()} > 0)\nunless on (namespace)\n"
            f"count by (namespace) ({s.metrics.queue_size}{s.selector})"
        ),
        summary=lambda s, c: f"{s.who}: {{value}} replicas available but no {s.metrics.queue_size} series",
        description=lambda s, c: (
            f"Deployment {s.hpa_name} has {{value}} available replicas, yet Prometheus has no "
            f"{s.metrics.queue_size}{s.selector} series for {c.for_}. The HPA scales on this "
            "metric, so autoscaling is blind. Check first: Prometheus' targets page for the "
            "pods (PodMonitor or scrape annotations), that the pods carry the label "
            f"app.kubernetes.io/instance={s.name}, and the metrics port."
        ),
        value_format=INTEGER,
    ),
)


def _resolve(spec: TGIServiceSpec | AlertsSpec, engine: str | None) -> tuple[AlertsSpec, EngineMetrics]:
    if isinstance(spec, AlertsSpec):
        return spec, engine_metrics(engine or "tgi")
    # The names of the release the spec's image runs (an engine may have renamed a series).
    kind = engine or spec.engine.kind.value
    image = spec.engine.effective_image if kind == spec.engine.kind.value else None
    return spec.alerts, engine_metrics(kind, image)


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
    return [rule for alert in _SERVICE_ALERTS if (rule := alert.rule(scope, alerts)) is not None]


def skipped_alerts(engine: str) -> list[str]:
    """``AlertsSpec`` keys that have no rule for ``engine`` because it lacks the needed series."""
    metrics = engine_metrics(engine)
    return [alert.spec_key for alert in _SERVICE_ALERTS if not alert.needs(metrics)]


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
