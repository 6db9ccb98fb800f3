"""Alerts and a dashboard for tgi-autoscaler itself: the metrics adapter and the controller.

When the adapter cannot answer, every HPA that scales on queue depth freezes; when the controller
stops reconciling, spec changes silently do nothing. Both fail quietly from the services' point of
view, so they get their own rules. Metric names follow ``adapter/own_metrics.py`` and
``controller/own_metrics.py`` (prometheus_client adds ``_total`` to counters). Expressions are
scoped to the namespace the two servers run in.

``manifests/monitoring`` holds these objects rendered for the default install namespace
(``manifest_files()``); a unit test keeps the files equal to it and rewrites them when run with
``TGI_UPDATE_MANIFESTS=1``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import dashboard as gdash
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as gmodel

from tgi_autoscaler.config.constants import GRAFANA_DASHBOARD_LABEL, GRAFANA_DASHBOARD_LABEL_VALUE
from tgi_autoscaler.render.alerts import (
    FIXED,
    INTEGER,
    PERCENT,
    PROMETHEUS_RULE_API_VERSION,
    AlertRule,
    ValueFormat,
)
from tgi_autoscaler.render.dashboard import (
    DATASOURCE,
    FOLDER_ANNOTATION,
    PanelDef,
    Query,
    SeriesSource,
    timeseries_panel,
)
from tgi_autoscaler.render.selectors import label_matchers

__all__ = [
    "DEFAULT_NAMESPACE",
    "SelfMonitoringThresholds",
    "manifest_files",
    "render_self_dashboard_configmap",
    "render_self_prometheus_rule",
    "self_alert_rules",
    "self_dashboard_json",
    "self_panel_defs",
    "self_rule_groups",
]

DEFAULT_NAMESPACE = "tgi-autoscaler"
ADAPTER = "tgi_autoscaler_adapter"
CONTROLLER = "tgi_autoscaler_controller"


@dataclass(frozen=True)
class SelfMonitoringThresholds:
    """Thresholds of the self-monitoring alerts (documented in docs/alerts-and-dashboards.md)."""

    window: str = "5m"
    absent_for: str = "5m"
    adapter_error_ratio: float = 0.05
    adapter_error_for: str = "5m"
    query_error_ratio: float = 0.1
    query_error_for: str = "5m"
    data_age_seconds: float = 60.0
    data_age_for: str = "5m"
    config_reload_for: str = "10m"
    no_leader_for: str = "5m"
    reconcile_errors_for: str = "15m"
    queue_depth: float = 50.0
    queue_depth_for: str = "15m"


def _rule(
    alert: str,
    *,
    expr: str,
    for_: str,
    severity: str,
    summary: str,
    description: str,
    value_format: ValueFormat,
) -> AlertRule:
    """A self-monitoring rule: keyed by its own name, labelled with its severity."""
    return AlertRule(
        alert=alert,
        spec_key=alert,
        expr=expr,
        for_=for_,
        severity=severity,
        summary=summary,
        description=description,
        value_format=value_format,
        labels={"severity": severity, "service": "tgi-autoscaler"},
    )


def self_alert_rules(
    namespace: str = DEFAULT_NAMESPACE, t: SelfMonitoringThresholds | None = None
) -> list[AlertRule]:
    """The adapter's and controller's alert rules, scoped to ``namespace``."""
    t = t or SelfMonitoringThresholds()
    sel = label_matchers(namespace=namespace)
    w = t.window

    def count(metric: str, extra: str = "") -> str:
        inner = sel if not extra else sel[:-1] + ", " + extra + "}"
        return f"sum by (namespace) (rate({metric}{inner}[{w}]))"

    requests = f"{ADAPTER}_request_duration_seconds_count"
    server_errors = count(requests, 'code=~"5.."')
    failed_reconciles = count(f"{CONTROLLER}_reconciles_total", 'result="error"')

    return [
        _rule(
            "TGIAutoscalerAdapterDown",
            expr=f"absent({ADAPTER}_metric_definitions{sel})",
            for_=t.absent_for,
            severity="critical",
            summary=f"The tgi-autoscaler metrics adapter in {namespace} is not scraped or not running",
            description=(
                f"No {ADAPTER}_* series from namespace {namespace} for {t.absent_for} (value {{value}}). "
                "Without the adapter every queue-depth HPA stops scaling. Check first: the adapter "
                f"pods (`kubectl -n {namespace} get pods`), their logs, and its PodMonitor/scrape target."
            ),
            value_format=INTEGER,
        ),
        _rule(
            "TGIAutoscalerAdapterErrors",
            expr=(f"{server_errors}\n  / ({count(requests)} > 0)\n> {t.adapter_error_ratio!r}"),
            for_=t.adapter_error_for,
            severity="critical",
            summary="The metrics adapter answers {value} of API requests with 5xx",
            description=(
                f"{{value}} of external.metrics.k8s.io requests to the adapter in {namespace} failed "
                f"with a server error over {w} (threshold {t.adapter_error_ratio:.4g}). HPAs get no "
                "metric and stop scaling. Check first: the adapter's logs (one JSON event per request "
                "names the metric and the error) and the Prometheus query error alert."
            ),
            value_format=PERCENT,
        ),
        _rule(
            "TGIAutoscalerAdapterPrometheusErrors",
            expr=(
                f"{count(f'{ADAPTER}_prometheus_query_errors_total')}\n"
                f"  / ({count(f'{ADAPTER}_prometheus_query_duration_seconds_count')} > 0)\n"
                f"> {t.query_error_ratio!r}"
            ),
            for_=t.query_error_for,
            severity="warning",
            summary="{value} of the adapter's Prometheus queries fail",
            description=(
                f"The adapter in {namespace} could not get {{value}} of its Prometheus queries answered "
                f"over {w} (threshold {t.query_error_ratio:.4g}). Check first: the `reason` label of "
                f"{ADAPTER}_prometheus_query_errors_total (connect/timeout = Prometheus down or "
                "overloaded; bad_data = a broken metric definition), and Prometheus' own health."
            ),
            value_format=PERCENT,
        ),
        _rule(
            "TGIAutoscalerAdapterStaleSamples",
            expr=(
                f"max by (namespace, metric_namespace, metric, selector) ({ADAPTER}_data_age_seconds{sel})\n"
                f"> {t.data_age_seconds!r}"
            ),
            for_=t.data_age_for,
            severity="warning",
            summary="The data behind an external metric the adapter serves is {value}s old",
            description=(
                "The newest samples behind the external metric, namespace and selector named by this "
                "alert's metric, metric_namespace and selector labels "
                f"(adapter in {namespace}) are {{value}}s old, above "
                f"{t.data_age_seconds:g}s (timestamp() of the samples, not the query's time): HPAs "
                "scale on old data, or get 503s past the adapter's dataAge bound. Check first: "
                "Prometheus' scrape interval and target health for the engine pods, exporters that "
                "set old timestamps, and remote-write or federation lag if Prometheus reads from "
                "another store."
            ),
            value_format=FIXED,
        ),
        _rule(
            "TGIAutoscalerAdapterConfigReloadFailed",
            expr=f"min by (namespace) ({ADAPTER}_config_last_reload_success{sel}) == 0",
            for_=t.config_reload_for,
            severity="warning",
            summary="The metrics adapter rejected its metric definitions; it serves the last good ones",
            description=(
                f"The last load of metric definitions by the adapter in {namespace} failed (value "
                "{value}); it keeps serving the previous definitions, so changes do not take effect. "
                "Check first: the adapter's log event for the failed load, which names the bad field."
            ),
            value_format=INTEGER,
        ),
        _rule(
            "TGIAutoscalerControllerDown",
            expr=f"absent({CONTROLLER}_leader{sel})",
            for_=t.absent_for,
            severity="critical",
            summary=f"The tgi-autoscaler controller in {namespace} is not scraped or not running",
            description=(
                f"No {CONTROLLER}_* series from namespace {namespace} for {t.absent_for} (value {{value}}). "
                "Service ConfigMaps are not reconciled. Check first: the controller pods, their logs, "
                "and its PodMonitor/scrape target."
            ),
            value_format=INTEGER,
        ),
        _rule(
            "TGIAutoscalerControllerNoLeader",
            expr=f"sum by (namespace) ({CONTROLLER}_leader{sel}) < 1",
            for_=t.no_leader_for,
            severity="critical",
            summary=f"No tgi-autoscaler controller replica in {namespace} holds the leader lease",
            description=(
                f"{{value}} controller replicas in {namespace} lead for {t.no_leader_for}: nothing "
                "reconciles. Check first: the Lease object and the controllers' logs for lease "
                "errors (RBAC on coordination.k8s.io leases, API server reachability)."
            ),
            value_format=INTEGER,
        ),
        _rule(
            "TGIAutoscalerReconcileErrors",
            expr=f"{failed_reconciles} > 0",
            for_=t.reconcile_errors_for,
            severity="warning",
            summary="The controller keeps failing to reconcile services ({value}/s)",
            description=(
                f"Reconciles in {namespace} have been failing at {{value}}/s for {t.reconcile_errors_for}. "
                "Check first: the controller's reconcile log events (result=error names the service "
                "and the API error) and the service ConfigMaps' `tgi-autoscaler.io/status` annotation."
            ),
            value_format=FIXED,
        ),
        _rule(
            "TGIAutoscalerReconcileBacklog",
            expr=f"max by (namespace) ({CONTROLLER}_queue_depth{sel}) > {t.queue_depth!r}",
            for_=t.queue_depth_for,
            severity="warning",
            summary="{value} services wait to be reconciled",
            description=(
                f"The controller's work queue in {namespace} has held {{value}} keys for "
                f"{t.queue_depth_for} (threshold {t.queue_depth:g}). Check first: reconcile durations "
                "on the tgi-autoscaler dashboard and API server latency or throttling."
            ),
            value_format=INTEGER,
        ),
    ]


def self_rule_groups(
    namespace: str = DEFAULT_NAMESPACE, t: SelfMonitoringThresholds | None = None
) -> list[dict[str, Any]]:
    return [
        {
            "name": "tgi-autoscaler.self",
            "rules": [rule.to_rule() for rule in self_alert_rules(namespace, t)],
        }
    ]


def render_self_prometheus_rule(
    namespace: str = DEFAULT_NAMESPACE, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": PROMETHEUS_RULE_API_VERSION,
        "kind": "PrometheusRule",
        "metadata": {
            "name": "tgi-autoscaler",
            "namespace": namespace,
            "labels": dict(labels or {"app.kubernetes.io/name": "tgi-autoscaler"}),
        },
        "spec": {"groups": self_rule_groups(namespace)},
    }


def self_panel_defs() -> list[PanelDef]:
    """Panels of the adapter/controller dashboard (``$namespace`` is the install namespace)."""
    sel = '{namespace="$namespace"}'
    rate = "$__rate_interval"
    a = SeriesSource.ADAPTER

    def r(metric: str) -> str:
        return f"rate({metric}{sel}[{rate}])"

    def q(expr: str, legend: str) -> Query:
        return Query(expr=expr, legend=legend, source=a)

    def c(expr: str, legend: str) -> Query:
        # Controller series are not in the integration environment; they count as their own source.
        return Query(expr=expr, legend=legend, source=SeriesSource.CONTROLLER)

    return [
        PanelDef(
            "Metrics adapter",
            "API requests",
            "external.metrics.k8s.io requests per second by HTTP status code.",
            "reqps",
            (q(f"sum by (code) (rate({ADAPTER}_request_duration_seconds_count{sel}[{rate}]))", "{{code}}"),),
        ),
        PanelDef(
            "Metrics adapter",
            "API latency",
            "Time to answer the API server, p50 and p99.",
            "s",
            tuple(
                q(
                    f"histogram_quantile({p}, sum by (le) "
                    f"(rate({ADAPTER}_request_duration_seconds_bucket{sel}[{rate}])))",
                    f"p{round(p * 100)}",
                )
                for p in (0.5, 0.99)
            ),
        ),
        PanelDef(
            "Metrics adapter",
            "Prometheus queries",
            "Queries sent to Prometheus by outcome, and failures by reason.",
            "reqps",
            (
                q(
                    f"sum by (outcome) ({r(f'{ADAPTER}_prometheus_query_duration_seconds_count')})",
                    "{{outcome}}",
                ),
                q(
                    f"sum by (reason) (rate({ADAPTER}_prometheus_query_errors_total{sel}[{rate}]))",
                    "error: {{reason}}",
                ),
            ),
        ),
        PanelDef(
            "Metrics adapter",
            "Sample age and cache",
            "p95 age of the samples served, and metric reads by cache result.",
            "short",
            (
                q(
                    f"histogram_quantile(0.95, sum by (le) ({r(f'{ADAPTER}_sample_age_seconds_bucket')}))",
                    "sample age p95 (s)",
                ),
                q(
                    f"sum by (result) (rate({ADAPTER}_cache_requests_total{sel}[{rate}]))",
                    "cache {{result}}/s",
                ),
            ),
        ),
        PanelDef(
            "Controller",
            "Reconciles",
            "Reconciles per second by result.",
            "ops",
            (c(f"sum by (result) (rate({CONTROLLER}_reconciles_total{sel}[{rate}]))", "{{result}}"),),
        ),
        PanelDef(
            "Controller",
            "Reconcile duration",
            "Time to reconcile one service, p50 and p99.",
            "s",
            tuple(
                c(
                    f"histogram_quantile({p}, sum by (le) "
                    f"(rate({CONTROLLER}_reconcile_duration_seconds_bucket{sel}[{rate}])))",
                    f"p{round(p * 100)}",
                )
                for p in (0.5, 0.99)
            ),
        ),
        PanelDef(
            "Controller",
            "Work queue and leadership",
            "Service keys waiting, and how many replicas hold the leader lease (should be 1).",
            "short",
            (
                c(f"max({CONTROLLER}_queue_depth{sel})", "queue depth"),
                c(f"sum({CONTROLLER}_leader{sel})", "leaders"),
            ),
        ),
        PanelDef(
            "Controller",
            "Applied objects",
            "Server-side applies per second by kind and whether they changed the object.",
            "ops",
            (
                c(
                    f"sum by (kind, change) (rate({CONTROLLER}_applied_objects_total{sel}[{rate}]))",
                    "{{kind}} {{change}}",
                ),
            ),
        ),
    ]


def self_dashboard_json(namespace: str = DEFAULT_NAMESPACE) -> dict[str, Any]:
    variables = [
        gdash.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        gdash.QueryVariable("namespace")
        .label("Namespace")
        .datasource(DATASOURCE)
        .query({"query": f"label_values({CONTROLLER}_leader, namespace)", "refId": "namespace"})
        .refresh(gmodel.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .current(gmodel.VariableOption(selected=True, text=namespace, value=namespace)),
    ]
    builder = (
        gdash.Dashboard("tgi-autoscaler: adapter and controller")
        .uid("tgi-autoscaler-self")
        .tags(["tgi-autoscaler"])
        .refresh("30s")
        .time("now-3h", "now")
        .timezone("browser")
        .variables(variables)
    )
    row: str | None = None
    panel_id = 1
    for panel in self_panel_defs():
        if panel.row != row:
            row = panel.row
            builder = builder.with_row(gdash.Row(row).id(panel_id))
            panel_id += 1
        builder = builder.with_panel(timeseries_panel(panel, panel_id))
        panel_id += 1
    model: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return model


def render_self_dashboard_configmap(
    namespace: str = DEFAULT_NAMESPACE, folder: str = "LLM serving"
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "tgi-autoscaler-dashboard",
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "tgi-autoscaler",
                GRAFANA_DASHBOARD_LABEL: GRAFANA_DASHBOARD_LABEL_VALUE,
            },
            "annotations": {FOLDER_ANNOTATION: folder},
        },
        "data": {"tgi-autoscaler.json": json.dumps(self_dashboard_json(namespace), indent=2, sort_keys=True)},
    }


def _yaml_document(obj: Mapping[str, Any]) -> str:
    import yaml  # local: only the manifest generator needs it

    class _Dumper(yaml.SafeDumper):
        pass

    def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, _str)
    text: str = yaml.dump(dict(obj), Dumper=_Dumper, sort_keys=False, width=120)
    return text


def manifest_files(namespace: str = DEFAULT_NAMESPACE) -> dict[str, str]:
    """The files of ``manifests/monitoring`` (name -> content), generated from this module."""
    header = "# Generated by tgi_autoscaler.render.self_monitoring.manifest_files(); do not edit.\n"
    return {
        "prometheusrule.yaml": header + _yaml_document(render_self_prometheus_rule(namespace)),
        "dashboard-configmap.yaml": header + _yaml_document(render_self_dashboard_configmap(namespace)),
        "kustomization.yaml": header
        + _yaml_document(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": ["prometheusrule.yaml", "dashboard-configmap.yaml"],
            }
        ),
    }
