"""The per-service Grafana dashboard, built with grafana-foundation-sdk and shipped as a ConfigMap.

The panels are first described as plain data (``PanelDef`` with its ``Query`` targets), then turned
into the SDK's builders. The data form is what tests and docs read: every target's PromQL is listed
with the kind of series it needs (the engine's, kube-state-metrics', DCGM's, the adapter's), so the
integration tests can evaluate each expression on a real Prometheus and know whether to expect data.

Queries use the dashboard's template variables: ``$namespace`` and ``$service`` (the sanitized
``app_kubernetes_io_instance`` label, which is also the Deployment and HPA name) and Grafana's
``$__rate_interval``. The variables default to this service, so the dashboard opens on it, yet can
be switched to another service of the same engine.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from grafana_foundation_sdk.builders import dashboard as gdash
from grafana_foundation_sdk.builders import prometheus as gprom
from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as gmodel

from tgi_autoscaler.config.constants import GRAFANA_DASHBOARD_LABEL, GRAFANA_DASHBOARD_LABEL_VALUE
from tgi_autoscaler.config.observability import DashboardSpec
from tgi_autoscaler.config.service import TGIServiceSpec
from tgi_autoscaler.engines import EngineMetrics, engine_metrics
from tgi_autoscaler.render.rollout import DEPLOYMENT_SUFFIX_PATTERN
from tgi_autoscaler.render.selectors import SERVICE_LABEL, counted_rate

__all__ = [
    "FOLDER_ANNOTATION",
    "PanelDef",
    "Query",
    "SeriesSource",
    "dashboard_json",
    "dashboard_uid",
    "panel_defs",
    "render_dashboard_configmap",
    "timeseries_panel",
]

FOLDER_ANNOTATION = "grafana_folder"
DATASOURCE = gmodel.DataSourceRef(type_val="prometheus", uid="${datasource}")
RATE = "$__rate_interval"
SEL = f'{{namespace="$namespace", {SERVICE_LABEL}="$service"}}'
HPA_SEL = '{namespace="$namespace", horizontalpodautoscaler="$service"}'
# Every server Deployment of the service: after a blue-green switch its name has a model suffix.
DEPLOY_SEL = f'{{namespace="$namespace", deployment=~"$service{DEPLOYMENT_SUFFIX_PATTERN}"}}'


class SeriesSource(StrEnum):
    """Who exports the series a query reads (decides whether a test environment has data for it)."""

    ENGINE = "engine"
    KUBE_STATE_METRICS = "kube-state-metrics"
    DCGM = "dcgm-exporter"
    ADAPTER = "adapter"
    CONTROLLER = "controller"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str
    source: SeriesSource


@dataclass(frozen=True)
class PanelDef:
    row: str
    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]


def _q(expr: str, legend: str, source: SeriesSource = SeriesSource.ENGINE) -> Query:
    return Query(expr=expr, legend=legend, source=source)


def _quantiles(histogram: str, quantiles: Sequence[float]) -> tuple[Query, ...]:
    return tuple(
        _q(
            f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket{SEL}[{RATE}])))",
            f"p{round(q * 100)}",
        )
        for q in quantiles
    )


def _traffic(m: EngineMetrics) -> list[PanelDef]:
    row = "Traffic"
    panels: list[PanelDef] = []
    requests: list[Query] = []
    if m.successes is not None:
        requests.append(_q(counted_rate(m.successes, SEL, RATE), "success"))
    if m.failures is not None:
        if m.failure_label is not None:
            label = m.failure_label
            failed = _q(counted_rate(m.failures, SEL, RATE, label), f"failed: {{{{{label}}}}}")
        else:
            failed = _q(counted_rate(m.failures, SEL, RATE), "aborted")
        requests.append(failed)
    if requests:
        panels.append(
            PanelDef(
                row,
                "Request rate",
                "Requests per second over all replicas: successful, and failed (by error kind where "
                "the engine tells it; vLLM and SGLang count aborted requests).",
                "reqps",
                tuple(requests),
            )
        )
    if m.request_duration is not None:
        panels.append(
            PanelDef(
                row,
                "Request latency",
                "End-to-end request duration percentiles over all replicas (queue + inference).",
                "s",
                _quantiles(m.request_duration, (0.5, 0.95, 0.99)),
            )
        )
    if m.generated_tokens is not None:
        panels.append(
            PanelDef(
                row,
                "Generated tokens/s",
                "Tokens generated per second over all replicas.",
                "short",
                (_q(f"sum(rate({m.generated_tokens}{SEL}[{RATE}]))", "tokens/s"),),
            )
        )
    if m.decode_latency is not None:
        panels.append(
            PanelDef(
                row,
                "Time per output token",
                "Inter-token latency percentiles: how fast each user sees tokens stream.",
                "s",
                _quantiles(m.decode_latency, (0.5, 0.95)),
            )
        )
    return panels


def _queue(m: EngineMetrics) -> list[PanelDef]:
    row = "Queue and batching"
    panels = [
        PanelDef(
            row,
            "Queue depth",
            f"Requests waiting for a batch slot ({m.queue_size}), the signal the HPA scales on.",
            "short",
            (
                _q(f"sum({m.queue_size}{SEL})", "total"),
                _q(f"sum by (pod) ({m.queue_size}{SEL})", "{{pod}}"),
            ),
        )
    ]
    if m.queue_duration is not None:
        panels.append(
            PanelDef(
                row,
                "Queue wait",
                "Time requests spend in the queue before their first batch.",
                "s",
                _quantiles(m.queue_duration, (0.5, 0.95)),
            )
        )
    if m.running is not None:
        panels.append(
            PanelDef(
                row,
                "Batch size",
                f"Requests in the running batch ({m.running}), per replica and on average.",
                "short",
                (
                    _q(f"avg({m.running}{SEL})", "average per replica"),
                    _q(f"sum by (pod) ({m.running}{SEL})", "{{pod}}"),
                ),
            )
        )
    return panels


def _autoscaling(m: EngineMetrics) -> list[PanelDef]:
    row = "Autoscaling"
    ksm = SeriesSource.KUBE_STATE_METRICS
    return [
        PanelDef(
            row,
            "Replicas",
            "Current, desired, min and max replicas of the HPA, and available replicas of the "
            "Deployment (kube-state-metrics). Desired above available for long: pods are not starting.",
            "short",
            (
                _q(f"max(kube_horizontalpodautoscaler_status_current_replicas{HPA_SEL})", "current", ksm),
                _q(f"max(kube_horizontalpodautoscaler_status_desired_replicas{HPA_SEL})", "desired", ksm),
                _q(f"max(kube_horizontalpodautoscaler_spec_max_replicas{HPA_SEL})", "max", ksm),
                _q(f"max(kube_horizontalpodautoscaler_spec_min_replicas{HPA_SEL})", "min", ksm),
                _q(f"max(kube_deployment_status_replicas_available{DEPLOY_SEL})", "available", ksm),
            ),
        ),
        PanelDef(
            row,
            "Queue per replica",
            "Queued requests divided by the replicas reporting: what the HPA compares to its target.",
            "short",
            (_q(f"sum({m.queue_size}{SEL}) / count({m.queue_size}{SEL})", "queue per replica"),),
        ),
        PanelDef(
            row,
            "Adapter sample age",
            "Age of the Prometheus samples the metrics adapter served to the HPA (all services): "
            "a growing age means the HPA decides on stale data.",
            "s",
            (
                _q(
                    f"histogram_quantile(0.5, sum by (le) "
                    f"(rate(tgi_autoscaler_adapter_sample_age_seconds_bucket[{RATE}])))",
                    "p50",
                    SeriesSource.ADAPTER,
                ),
                _q(
                    f"histogram_quantile(0.95, sum by (le) "
                    f"(rate(tgi_autoscaler_adapter_sample_age_seconds_bucket[{RATE}])))",
                    "p95",
                    SeriesSource.ADAPTER,
                ),
            ),
        ),
    ]


def _gpu(spec: DashboardSpec) -> list[PanelDef]:
    # Pods of a Deployment are named <deployment>-<replicaset hash>-<pod hash>, the Deployment
    # <service> or <service>-<model hash>; the anchored pattern keeps "llama" from matching
    # "llama-big"'s pods.
    pods = f"$service{DEPLOYMENT_SUFFIX_PATTERN}-[a-z0-9]+-[a-z0-9]+"
    selector = f'{{{spec.gpu_namespace_label}="$namespace", {spec.gpu_pod_label}=~"{pods}"}}'
    return [
        PanelDef(
            "GPU",
            "GPU utilisation",
            "DCGM_FI_DEV_GPU_UTIL of the service's pods (dcgm-exporter; empty when it is not installed).",
            "percent",
            (
                _q(
                    f"avg by ({spec.gpu_pod_label}) (DCGM_FI_DEV_GPU_UTIL{selector})",
                    f"{{{{{spec.gpu_pod_label}}}}}",
                    SeriesSource.DCGM,
                ),
            ),
        )
    ]


def panel_defs(engine: str, spec: DashboardSpec | None = None, image: str | None = None) -> list[PanelDef]:
    """Every panel of the service dashboard, in display order, with the series names of the
    release ``image`` runs (default: the engine's pinned image)."""
    m = engine_metrics(engine, image)
    return [*_traffic(m), *_queue(m), *_autoscaling(m), *_gpu(spec or DashboardSpec())]


def dashboard_uid(name: str, namespace: str) -> str:
    """A stable uid (Grafana allows 40 characters): readable when short, hashed when long."""
    readable = f"tgi-{namespace}-{name}"
    if len(readable) <= 40:
        return readable
    digest = hashlib.sha256(f"{namespace}/{name}".encode()).hexdigest()[:12]
    return f"{readable[:27]}-{digest}"


def _variables(name: str, namespace: str, queue_metric: str) -> list[Any]:
    datasource = gdash.DatasourceVariable("datasource").label("Data source").type("prometheus")
    ns = (
        gdash.QueryVariable("namespace")
        .label("Namespace")
        .datasource(DATASOURCE)
        .query({"query": f"label_values({queue_metric}, namespace)", "refId": "namespace"})
        .refresh(gmodel.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(gmodel.VariableSort.ALPHABETICAL_ASC)
        .current(gmodel.VariableOption(selected=True, text=namespace, value=namespace))
    )
    service = (
        gdash.QueryVariable("service")
        .label("Service")
        .datasource(DATASOURCE)
        .query(
            {
                "query": f'label_values({queue_metric}{{namespace="$namespace"}}, {SERVICE_LABEL})',
                "refId": "service",
            }
        )
        .refresh(gmodel.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(gmodel.VariableSort.ALPHABETICAL_ASC)
        .current(gmodel.VariableOption(selected=True, text=name, value=name))
    )
    return [datasource, ns, service]


def timeseries_panel(panel: PanelDef, panel_id: int) -> Any:
    """The Grafana time-series panel of ``panel`` (shared by the per-service and the self dashboards)."""
    builder = (
        timeseries.Panel()
        .id(panel_id)
        .title(panel.title)
        .description(panel.description)
        .datasource(DATASOURCE)
        .unit(panel.unit)
        .min(0)
        .height(8)
        .span(12)
    )
    for index, query in enumerate(panel.queries):
        builder = builder.with_target(
            gprom.Dataquery().expr(query.expr).legend_format(query.legend).ref_id(chr(ord("A") + index))
        )
    return builder


def _switches() -> gdash.AnnotationQuery:
    """A mark at each blue-green switch: where the newest switch time of any controller changes.

    The max over controller replicas, so that a new leader's series (absent until it switches
    something) neither marks nor hides a switch.
    """
    latest = (
        "max(tgi_autoscaler_controller_rollout_switch_timestamp_seconds"
        '{service_namespace="$namespace", service_name="$service"})'
    )
    return (
        gdash.AnnotationQuery()
        .name("Model switches")
        .datasource(DATASOURCE)
        .enable(True)
        .icon_color("purple")
        .expr(f"changes(({latest})[2m:15s]) > 0")
    )


def dashboard_json(
    name: str, namespace: str, engine: str, spec: DashboardSpec | None = None, image: str | None = None
) -> dict[str, Any]:
    """The dashboard's JSON model (what Grafana stores), as plain dicts."""
    spec = spec or DashboardSpec()
    metrics = engine_metrics(engine, image)
    title = spec.title or f"{namespace}/{name} ({engine})"
    builder = (
        gdash.Dashboard(title)
        .uid(dashboard_uid(name, namespace))
        .description(f"Queue-depth autoscaled {engine} service {namespace}/{name}.")
        .tags(["tgi-autoscaler", engine])
        .refresh(spec.refresh)
        .time(spec.time_from, "now")
        .timezone("browser")
        .tooltip(gmodel.DashboardCursorSync.CROSSHAIR)
        .variables(_variables(name, namespace, metrics.queue_size))
        .annotation(_switches())
    )
    row: str | None = None
    panel_id = 1
    for panel in panel_defs(engine, spec, image):
        if panel.row != row:
            row = panel.row
            builder = builder.with_row(gdash.Row(row).id(panel_id))
            panel_id += 1
        builder = builder.with_panel(timeseries_panel(panel, panel_id))
        panel_id += 1
    model: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return model


def configmap_name(name: str, namespace: str) -> str:
    # The ConfigMap may live in Grafana's namespace next to other services' dashboards.
    return f"tgi-dashboard-{namespace}-{name}"[:253]


def render_dashboard_configmap(
    name: str,
    namespace: str,
    spec: TGIServiceSpec | DashboardSpec,
    labels: Mapping[str, str],
    *,
    engine: str | None = None,
    dashboard_namespace: str | None = None,
) -> dict[str, Any] | None:
    """The dashboard as a ConfigMap for Grafana's sidecar, or ``None`` when the dashboard is off.

    Namespace: the spec's ``dashboard.namespace``, else ``dashboard_namespace`` (the controller's
    default), else the service's own namespace.
    """
    image = None
    if isinstance(spec, TGIServiceSpec):
        dash = spec.dashboard
        if engine is None or engine == spec.engine.kind.value:
            # The names of the release the spec's image runs (an engine may have renamed a series).
            image = spec.engine.effective_image
        engine = engine or spec.engine.kind.value
    else:
        dash = spec
    if not dash.enabled:
        return None
    model = dashboard_json(name, namespace, engine or "tgi", dash, image)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": configmap_name(name, namespace),
            "namespace": dash.namespace or dashboard_namespace or namespace,
            "labels": {**labels, GRAFANA_DASHBOARD_LABEL: GRAFANA_DASHBOARD_LABEL_VALUE},
            "annotations": {FOLDER_ANNOTATION: dash.folder},
        },
        "data": {f"{namespace}-{name}.json": json.dumps(model, indent=2, sort_keys=True)},
    }
