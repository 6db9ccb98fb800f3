"""The I/O edge of ``doctor``: read the cluster and Prometheus into snapshots.

Kubernetes is read through ``tgi_autoscaler.kube`` (the same client as the servers), the external
metric through kube-apiserver's aggregation layer exactly as the HPA controller reads it, and
Prometheus through its HTTP API (``/api/v1/query``, ``/api/v1/rules``). Every read that fails is
recorded as an ``Unreadable`` naming what was asked, so the checks report it as unknown rather than
as a healthy empty answer.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import aiohttp

from tgi_autoscaler.config.constants import (
    ANNOTATION_STATUS,
    LABEL_INSTANCE,
    SERVICE_CONFIGMAP_KEY,
)
from tgi_autoscaler.config.errors import ConfigError
from tgi_autoscaler.controller.manager import SERVICE_SELECTOR
from tgi_autoscaler.controller.status import parse_status, row_from_configmap
from tgi_autoscaler.doctor.checks import APISERVICE, hpa_external_metrics, selector_string
from tgi_autoscaler.doctor.snapshot import (
    ClusterSnapshot,
    ControllerView,
    MetricRead,
    Obj,
    PrometheusSnapshot,
    SeriesSample,
    ServiceSnapshot,
    Unreadable,
)
from tgi_autoscaler.engines import ENGINES, EngineKind
from tgi_autoscaler.kube.client import KubeClient
from tgi_autoscaler.kube.errors import ApiError, TransportError, describe
from tgi_autoscaler.kube.resources import (
    APISERVICE as APISERVICE_RT,
)
from tgi_autoscaler.kube.resources import (
    CONFIGMAP,
    DEPLOYMENT,
    EVENT,
    HPA,
    NODE,
    POD,
    PROMETHEUSRULE,
    ResourceType,
)
from tgi_autoscaler.promql import format_matchers, parse_selector, requirements_to_matchers
from tgi_autoscaler.promql.errors import PromQLError
from tgi_autoscaler.render import source_from_configmap
from tgi_autoscaler.render.dashboard import configmap_name

__all__ = [
    "collect_cluster",
    "collect_service",
    "prometheus_snapshot",
    "prometheus_url_of_adapter",
    "service_names",
]

T = TypeVar("T")
_KUBE_ERRORS = (ApiError, TransportError)
_PROM_TIMEOUT = aiohttp.ClientTimeout(total=10, sock_connect=5)


async def _read(what: str, read: Callable[[], Awaitable[T]]) -> T | Unreadable:
    try:
        return await read()
    except _KUBE_ERRORS as exc:
        return Unreadable(what, describe(exc))


async def collect_cluster(client: KubeClient, adapter_service: tuple[str, str]) -> ClusterSnapshot:
    apiservice = await _read(f"APIService {APISERVICE}", lambda: client.get(APISERVICE_RT, None, APISERVICE))
    return ClusterSnapshot(apiservice=apiservice, expected_service=adapter_service)


async def service_names(client: KubeClient, namespace: str) -> list[str]:
    """The services of a namespace: its service ConfigMaps (raises the API error if unreadable)."""
    listed = await client.list(CONFIGMAP, namespace=namespace, label_selector=SERVICE_SELECTOR)
    return sorted(str(cm["metadata"]["name"]) for cm in listed.items)


async def prometheus_url_of_adapter(client: KubeClient, adapter_service: tuple[str, str]) -> str | None:
    """The ``--prometheus-url`` the adapter's Deployment runs with, if it can be read."""
    try:
        deployment = await client.get(DEPLOYMENT, *adapter_service)
    except _KUBE_ERRORS:
        return None
    for container in ((deployment or {}).get("spec") or {}).get("template", {}).get("spec", {}).get(
        "containers"
    ) or ():
        for arg in container.get("args") or []:
            if str(arg).startswith("--prometheus-url="):
                return str(arg).split("=", 1)[1]
    return None


def _controller_view(configmap: Obj) -> ControllerView:
    row = row_from_configmap(configmap, annotation=ANNOTATION_STATUS, data_key=SERVICE_CONFIGMAP_KEY)
    status = parse_status(((configmap.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_STATUS))
    applied = status.applied.objects if status is not None and status.applied is not None else ()
    return ControllerView(
        phase=None if status is None else row.phase, message=row.message, stale=row.stale, applied=applied
    )


async def _metric_read(client: KubeClient, namespace: str, metric: str, selector: str) -> MetricRead:
    # The collection path of the external metrics API is /namespaces/<ns>/<metric>: a "resource"
    # named after the metric, listed with the HPA's selector.
    rt = ResourceType("external.metrics.k8s.io", "v1beta1", "ExternalMetricValueList", metric)
    try:
        listed = await client.list(rt, namespace=namespace, label_selector=selector or None)
    except ApiError as exc:
        return MetricRead(metric, selector, exc.status, exc.reason, exc.message)
    except TransportError as exc:
        return MetricRead(metric, selector, None, "", str(exc))
    values = [str(item.get("value")) for item in listed.items]
    return MetricRead(metric, selector, 200, value=", ".join(values) or None)


async def _prom_get(session: aiohttp.ClientSession, url: str, path: str, params: dict[str, str]) -> Any:
    async with session.get(f"{url.rstrip('/')}{path}", params=params, timeout=_PROM_TIMEOUT) as resp:
        body = await resp.json(content_type=None)
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else None
        raise ValueError(f"HTTP {resp.status}: {error or 'not a Prometheus API answer'}")
    return body["data"]


async def _series(
    session: aiohttp.ClientSession, url: str, query: str
) -> Sequence[SeriesSample] | Unreadable:
    # timestamp() keeps each series' labels and returns the time of its newest sample.
    try:
        data = await _prom_get(session, url, "/api/v1/query", {"query": f"timestamp({query})"})
        return [
            SeriesSample(labels=dict(item.get("metric") or {}), timestamp=float(item["value"][1]))
            for item in data.get("result") or ()
        ]
    except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
        return Unreadable(f"Prometheus query {query}", describe(exc))


async def prometheus_snapshot(
    url: str | None, namespace: str, series: str, selector: str
) -> PrometheusSnapshot | Unreadable:
    if url is None:
        return Unreadable(
            "Prometheus", "no --prometheus-url given and none found in the adapter's Deployment"
        )
    try:
        matchers = format_matchers(
            requirements_to_matchers(
                parse_selector(selector), namespace=namespace, namespace_label="namespace", label_map={}
            )
        )
    except PromQLError as exc:
        return Unreadable("the HPA's selector", str(exc))
    in_namespace = format_matchers(
        requirements_to_matchers((), namespace=namespace, namespace_label="namespace", label_map={})
    )
    async with aiohttp.ClientSession() as session:
        try:
            await _prom_get(session, url, "/api/v1/query", {"query": "vector(1)"})
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return Unreadable(f"Prometheus at {url}", describe(exc))
        selected = await _series(session, url, f"{series}{{{matchers}}}")
        others = await _series(session, url, f"{series}{{{in_namespace}}}")
        rule_groups: frozenset[str] | Unreadable
        try:
            data = await _prom_get(session, url, "/api/v1/rules", {})
            rule_groups = frozenset(str(g.get("name")) for g in data.get("groups") or ())
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            rule_groups = Unreadable(f"Prometheus rules API at {url}", describe(exc))
    return PrometheusSnapshot(
        url=url,
        queue_series=series,
        matchers=matchers,
        selected=selected,
        in_namespace=others,
        rule_groups=rule_groups,
        evaluated_at=time.time(),
    )


def _engine_of(hpa: Obj | Unreadable | None, spec_engine: str | None) -> str:
    if spec_engine is not None:
        return spec_engine
    if isinstance(hpa, dict):
        for metric, _ in hpa_external_metrics(hpa):
            for kind in EngineKind:
                if metric.startswith(f"{kind.value}_"):
                    return kind.value
    return EngineKind.TGI.value


def serving_deployment(name: str, hpa: Mapping[str, Any] | None) -> str:
    """The Deployment that serves: named after the service until a blue-green switch, then the one
    the HPA scales (``<service>-<model hash>``)."""
    target = (((hpa or {}).get("spec") or {}).get("scaleTargetRef") or {}).get("name")
    return str(target) if target else name


async def collect_service(
    client: KubeClient, namespace: str, name: str, *, prometheus_url: str | None
) -> ServiceSnapshot:
    configmap = await _read(f"ConfigMap {namespace}/{name}", lambda: client.get(CONFIGMAP, namespace, name))
    spec_error: str | None = None
    controller: ControllerView | None = None
    spec = None
    if isinstance(configmap, dict):
        controller = _controller_view(configmap)
        try:
            spec = source_from_configmap(configmap).spec
        except ConfigError as exc:
            spec_error = str(exc)
    hpa = await _read(f"HPA {namespace}/{name}", lambda: client.get(HPA, namespace, name))
    serving = serving_deployment(name, hpa if isinstance(hpa, dict) else None)
    deployment = await _read(
        f"Deployment {namespace}/{serving}", lambda: client.get(DEPLOYMENT, namespace, serving)
    )
    pod_selector = f"{LABEL_INSTANCE}={name}"
    if isinstance(deployment, dict):
        pod_selector = selector_string((deployment.get("spec") or {}).get("selector")) or pod_selector
    pods_listed = await _read(
        f"pods {pod_selector}", lambda: client.list(POD, namespace=namespace, label_selector=pod_selector)
    )
    pods = pods_listed if isinstance(pods_listed, Unreadable) else pods_listed.items
    events_listed = await _read(
        "events",
        lambda: client.list(EVENT, namespace=namespace, field_selector="involvedObject.kind=Pod"),
    )
    events = events_listed if isinstance(events_listed, Unreadable) else events_listed.items
    nodes_listed = await _read("nodes", lambda: client.list(NODE))
    nodes = nodes_listed if isinstance(nodes_listed, Unreadable) else nodes_listed.items

    engine = _engine_of(hpa, spec.engine.kind.value if spec is not None else None)
    queue_series = ENGINES[EngineKind(engine)].metrics.queue_size
    wanted = hpa_external_metrics(hpa) if isinstance(hpa, dict) else []
    if not wanted:
        metric = spec.scaling_metric[0] if spec is not None else ENGINES[EngineKind(engine)].demand_metric
        wanted = [(metric, pod_selector)]
    reads = [await _metric_read(client, namespace, metric, selector) for metric, selector in wanted]
    prometheus = await prometheus_snapshot(prometheus_url, namespace, queue_series, wanted[0][1])

    applied = controller.applied if controller is not None else ()
    rule_expected = f"PrometheusRule/{namespace}/{name}" in applied or (
        spec is not None and not applied and spec.alerts.enabled
    )
    prometheus_rule: Obj | Unreadable | None = None
    if rule_expected:
        prometheus_rule = await _read(
            f"PrometheusRule {namespace}/{name}", lambda: client.get(PROMETHEUSRULE, namespace, name)
        )
    dashboard_ref: tuple[str, str] | None = None
    dashboard: Obj | Unreadable | None = None
    if spec is not None and spec.dashboard.enabled:
        cm_name = configmap_name(name, namespace)
        cm_namespace = spec.dashboard.namespace or namespace
        for ref in applied:
            kind, _, rest = ref.partition("/")
            ref_ns, _, ref_name = rest.partition("/")
            if kind == "ConfigMap" and ref_name == cm_name:
                cm_namespace = ref_ns
        dashboard_ref = (cm_namespace, cm_name)
        dashboard = await _read(
            f"ConfigMap {cm_namespace}/{cm_name}", lambda: client.get(CONFIGMAP, cm_namespace, cm_name)
        )
    return ServiceSnapshot(
        namespace=namespace,
        name=name,
        configmap=configmap,
        spec_error=spec_error,
        controller=controller,
        engine=engine,
        hpa=hpa,
        deployment=deployment,
        pods=pods,
        events=events,
        metric_reads=reads,
        prometheus=prometheus,
        rule_expected=rule_expected,
        prometheus_rule=prometheus_rule,
        dashboard=dashboard,
        dashboard_ref=dashboard_ref,
        nodes=nodes,
        now=time.time(),
    )
