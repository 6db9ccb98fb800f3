"""The doctor's checks, table-driven: one healthy snapshot, then each link broken the way it breaks
in a cluster (objects and Status bodies shaped as kube-apiserver, the aggregator and the adapter
return them)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import pytest

from tgi_autoscaler.doctor.checks import (
    LINKS,
    Finding,
    check_service,
    first_broken,
)
from tgi_autoscaler.doctor.report import exit_code, format_json, format_table
from tgi_autoscaler.doctor.snapshot import (
    ClusterSnapshot,
    ControllerView,
    MetricRead,
    PrometheusSnapshot,
    SeriesSample,
    ServiceSnapshot,
    Unreadable,
)

pytestmark = pytest.mark.unit

NOW = 1_800_000_000.0
NS, SVC = "llm", "llama"
POD = "llama-7d9f8b6c5d-x2x4z"
SELECTOR = "app.kubernetes.io/instance=llama"
MATCHERS = 'namespace="llm",app_kubernetes_io_instance="llama"'


def apiservice(
    service: dict[str, Any] | None = None,
    available: tuple[str, str, str] = ("True", "Passed", "all checks passed"),
) -> dict[str, Any]:
    status, reason, message = available
    return {
        "metadata": {"name": "v1beta1.external.metrics.k8s.io"},
        "spec": {
            "group": "external.metrics.k8s.io",
            "version": "v1beta1",
            "service": service
            or {"namespace": "tgi-autoscaler", "name": "tgi-autoscaler-adapter", "port": 443},
        },
        "status": {
            "conditions": [{"type": "Available", "status": status, "reason": reason, "message": message}]
        },
    }


_HEALTHY: Any = object()


def cluster(api: Any = _HEALTHY) -> ClusterSnapshot:
    """The cluster-wide snapshot; ``api`` replaces the healthy APIService (None: it does not exist)."""
    return ClusterSnapshot(
        apiservice=apiservice() if api is _HEALTHY else api,
        expected_service=("tgi-autoscaler", "tgi-autoscaler-adapter"),
    )


def running_pod(name: str = POD) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": NS},
        "spec": {"nodeName": "gpu-0"},
        "status": {
            "phase": "Running",
            "conditions": [{"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}],
        },
    }


def hpa(metric: str = "tgi_request_demand", conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": SVC, "namespace": NS},
        "spec": {
            "metrics": [
                {
                    "type": "External",
                    "external": {
                        "metric": {
                            "name": metric,
                            "selector": {"matchLabels": {"app.kubernetes.io/instance": SVC}},
                        },
                        "target": {"type": "AverageValue", "averageValue": "2019m"},
                    },
                }
            ]
        },
        "status": {
            "currentReplicas": 2,
            "desiredReplicas": 2,
            "lastScaleTime": "2026-12-02T02:58:00Z",
            "conditions": conditions
            if conditions is not None
            else [
                {"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"},
                {"type": "ScalingActive", "status": "True", "reason": "ValidMetricFound"},
            ],
        },
    }


SERIES = [SeriesSample({"namespace": NS, "app_kubernetes_io_instance": SVC, "pod": POD}, NOW - 3)]
UNLABELLED = [SeriesSample({"namespace": NS, "pod": POD, "instance": "127.0.0.1:4001"}, NOW - 3)]


def prometheus(**changes: Any) -> PrometheusSnapshot:
    base = PrometheusSnapshot(
        url="http://prometheus:9090",
        queue_series="tgi_queue_size",
        matchers=MATCHERS,
        selected=SERIES,
        in_namespace=SERIES,
        rule_groups=frozenset({"llama.slo", "llama.health"}),
        evaluated_at=NOW,
    )
    return dataclasses.replace(base, **changes)


RULE = {
    "metadata": {"name": SVC, "namespace": NS, "labels": {"app.kubernetes.io/instance": SVC}},
    "spec": {"groups": [{"name": "llama.slo", "rules": []}, {"name": "llama.health", "rules": []}]},
}
DASHBOARD = {
    "metadata": {
        "name": "llm-llama-dashboard",
        "namespace": "monitoring",
        "labels": {"grafana_dashboard": "1"},
    }
}


def healthy() -> ServiceSnapshot:
    return ServiceSnapshot(
        namespace=NS,
        name=SVC,
        configmap={"metadata": {"name": SVC, "namespace": NS}, "data": {"service.yaml": "model: {id: x}\n"}},
        spec_error=None,
        controller=ControllerView(phase="Ready", message="applied 7 objects", stale=False, applied=()),
        engine="tgi",
        hpa=hpa(),
        deployment={"metadata": {"name": SVC}, "spec": {"replicas": 1}},
        pods=[running_pod()],
        events=[],
        metric_reads=[MetricRead("tgi_request_demand", SELECTOR, 200, value="1500m")],
        prometheus=prometheus(),
        rule_expected=True,
        prometheus_rule=RULE,
        dashboard=DASHBOARD,
        dashboard_ref=("monitoring", "llm-llama-dashboard"),
        nodes=[],
        now=NOW,
    )


def test_a_healthy_service_has_every_link_ok_and_exits_0() -> None:
    findings = check_service(cluster(), healthy())
    assert [f.link for f in findings] == list(LINKS)
    assert {f.status for f in findings} == {"ok"}, [f for f in findings if f.status != "ok"]
    assert first_broken(findings) is None
    assert exit_code(findings) == 0
    assert "healthy" in format_table(findings)
    series = next(f for f in findings if f.link == "series")
    assert "from 1 pods (1 pods Ready), newest sample 3s old" in series.seen


Change = Callable[[ServiceSnapshot], ServiceSnapshot]


def svc(**changes: Any) -> Change:
    return lambda s: dataclasses.replace(s, **changes)


KEDA = {"namespace": "keda", "name": "keda-operator-metrics-apiserver", "port": 443}
PROM_ADAPTER = {"namespace": "monitoring", "name": "prometheus-adapter", "port": 443}
REFUSED = (
    "False",
    "FailedDiscoveryCheck",
    "failing or missing response from https://127.0.0.1:41235/apis/external.metrics.k8s.io/v1beta1: Get "
    '"https://127.0.0.1:41235/apis/external.metrics.k8s.io/v1beta1": dial tcp 127.0.0.1:41235: connect: '
    "connection refused",
)
X509 = (
    "False",
    "FailedDiscoveryCheck",
    'failing or missing response from https://10.0.0.12:443/apis/external.metrics.k8s.io/v1beta1: Get "...": '
    "tls: failed to verify certificate: x509: certificate signed by unknown authority",
)
AGGREGATOR_503 = MetricRead("tgi_request_demand", SELECTOR, 503, "ServiceUnavailable", "service unavailable")
PROMETHEUS_DOWN = MetricRead(
    "tgi_request_demand",
    SELECTOR,
    503,
    "ServiceUnavailable",
    "cannot connect to Prometheus (Connection refused)",
)
UNKNOWN_METRIC = MetricRead(
    "tgi_queue_sizee",
    SELECTOR,
    404,
    "NotFound",
    'externalmetricvaluelist.external.metrics.k8s.io "tgi_queue_sizee" not found',
)
FAILED_GET = [
    {"type": "AbleToScale", "status": "True", "reason": "SucceededGetScale"},
    {
        "type": "ScalingActive",
        "status": "False",
        "reason": "FailedGetExternalMetric",
        "message": "the HPA was unable to compute the replica count: unable to get external metric "
        "llm/tgi_request_demand/&LabelSelector{...}: unable to fetch metrics from external metrics API: "
        "the server is currently unable to handle the request "
        "(get tgi_request_demand.external.metrics.k8s.io)",
    },
]
PENDING_GPU = {
    "metadata": {"name": "llama-7d9f8b6c5d-b7k2q", "namespace": NS},
    "spec": {},
    "status": {
        "phase": "Pending",
        "conditions": [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu. preemption: 0/2 nodes "
                "are available: 2 No preemption victims found for incoming pod.",
            }
        ],
    },
}
GPU_NODES = [
    {"metadata": {"name": f"gpu-{i}"}, "spec": {}, "status": {"allocatable": {"nvidia.com/gpu": "1"}}}
    for i in range(2)
]


@pytest.mark.parametrize(
    ("case", "api", "change", "link", "seen_has", "fix_has"),
    [
        (
            "APIService deleted",
            None,
            None,
            "apiservice",
            "does not exist",
            "kubectl apply -k manifests/adapter",
        ),
        (
            "APIService owned by KEDA",
            apiservice(KEDA),
            None,
            "apiservice",
            "KEDA's metrics server (keda/",
            "ScaledObject",
        ),
        (
            "APIService owned by prometheus-adapter",
            apiservice(PROM_ADAPTER),
            None,
            "apiservice",
            "prometheus-adapter (monitoring/",
            "one-owner",
        ),
        (
            "APIService untrusted certificate",
            apiservice(available=X509),
            None,
            "apiservice",
            "x509",
            "caBundle",
        ),
        (
            "adapter stopped (APIService)",
            apiservice(available=REFUSED),
            None,
            "adapter",
            "connection refused",
            "get pods,endpoints",
        ),
        (
            "adapter stopped (read)",
            _HEALTHY,
            svc(metric_reads=[AGGREGATOR_503]),
            "adapter",
            "service unavailable",
            "cannot reach the adapter",
        ),
        (
            "Prometheus stopped",
            _HEALTHY,
            svc(
                metric_reads=[PROMETHEUS_DOWN],
                prometheus=Unreadable("Prometheus at http://p", "ClientConnectorError"),
            ),
            "prometheus",
            "cannot connect to Prometheus",
            "prometheus.url",
        ),
        (
            "series without the instance label",
            _HEALTHY,
            svc(prometheus=prometheus(selected=[], in_namespace=UNLABELLED)),
            "series",
            'pod="llama-7d9f8b6c5d-x2x4z"',
            "labelmap",
        ),
        (
            "series not scraped",
            _HEALTHY,
            svc(prometheus=prometheus(selected=[], in_namespace=[])),
            "series",
            "does not scrape",
            "targets",
        ),
        (
            "a Running pod not scraped",
            _HEALTHY,
            svc(pods=[running_pod(), running_pod("llama-7d9f8b6c5d-zzzzz")]),
            "series",
            "llama-7d9f8b6c5d-zzzzz",
            "not scraped",
        ),
        (
            "HPA on a metric that does not exist",
            _HEALTHY,
            svc(hpa=hpa("tgi_queue_sizee", FAILED_GET), metric_reads=[UNKNOWN_METRIC]),
            "hpa",
            "'tgi_queue_sizee', which the adapter does not serve",
            "metrics ConfigMap",
        ),
        ("HPA missing", _HEALTHY, svc(hpa=None), "hpa", "no HorizontalPodAutoscaler llm/llama", "controller"),
        (
            "HPA failing to read the metric",
            _HEALTHY,
            svc(hpa=hpa(conditions=FAILED_GET)),
            "hpa",
            "ScalingActive=False FailedGetExternalMetric",
            "links above",
        ),
        (
            "no GPU free",
            _HEALTHY,
            svc(pods=[running_pod(), PENDING_GPU], nodes=GPU_NODES),
            "pods",
            "Insufficient nvidia.com/gpu",
            "resources.gpus",
        ),
        ("no pod at all", _HEALTHY, svc(pods=[]), "pods", "wants 1 replicas but has no pods", "describe rs"),
        (
            "rule file not loaded",
            _HEALTHY,
            svc(prometheus=prometheus(rule_groups=frozenset({"other"}))),
            "rules",
            "does not evaluate llama.health, llama.slo",
            "ruleSelector",
        ),
        (
            "PrometheusRule missing",
            _HEALTHY,
            svc(prometheus_rule=None),
            "rules",
            "no PrometheusRule llm/llama",
            "CRDs",
        ),
        (
            "dashboard without the sidecar label",
            _HEALTHY,
            svc(dashboard={"metadata": {"labels": {}}}),
            "dashboard",
            "lacks the label grafana_dashboard=1",
            "sidecar",
        ),
        (
            "dashboard missing",
            _HEALTHY,
            svc(dashboard=None),
            "dashboard",
            "no dashboard ConfigMap monitoring/llm-llama-dashboard",
            "controller",
        ),
        (
            "spec invalid",
            _HEALTHY,
            svc(
                controller=ControllerView(
                    "Invalid", "autoscaling.maxReplicas: must be >= minReplicas", False, ()
                )
            ),
            "controller",
            "phase Invalid: autoscaling.maxReplicas",
            "describe configmap",
        ),
        (
            "no controller",
            _HEALTHY,
            svc(controller=ControllerView(None, "not processed by a controller yet", False, ())),
            "controller",
            "no controller has processed",
            "logs",
        ),
        (
            "no service ConfigMap",
            _HEALTHY,
            svc(configmap=None, controller=None),
            "controller",
            "not managed by tgi-autoscaler",
            "tgi-autoscaler.io/service=true",
        ),
    ],
)
def test_each_broken_link_is_named_first_with_its_fix(
    case: str, api: Any, change: Change | None, link: str, seen_has: str, fix_has: str
) -> None:
    snapshot = change(healthy()) if change else healthy()
    findings = check_service(cluster(api), snapshot)
    first = first_broken(findings)
    assert first is not None, case
    assert first.link == link, (case, first)
    assert seen_has in first.seen, (case, first.seen)
    assert fix_has in first.fix, (case, first.fix)
    assert first.service == "llm/llama"
    assert exit_code(findings) == 1
    assert f"first broken link: {link}:" in format_table(findings)


@pytest.mark.parametrize(
    ("case", "api", "change", "unknown"),
    [
        (
            "APIService unreadable",
            Unreadable("APIService", "403 Forbidden: cannot get apiservices"),
            None,
            "apiservice",
        ),
        (
            "API server down for the read",
            _HEALTHY,
            svc(metric_reads=[MetricRead("tgi_request_demand", SELECTOR, None, "", "TransportError")]),
            "adapter",
        ),
        (
            "doctor cannot reach Prometheus, the adapter can",
            _HEALTHY,
            svc(prometheus=Unreadable("Prometheus at http://p", "timeout")),
            "prometheus",
        ),
        ("HPA not synced yet", _HEALTHY, svc(hpa=hpa(conditions=[])), "hpa"),
        (
            "status for an older spec",
            _HEALTHY,
            svc(controller=ControllerView("Ready", "ok", True, ())),
            "controller",
        ),
    ],
)
def test_what_cannot_be_checked_is_unknown_and_exits_2(
    case: str, api: Any, change: Change | None, unknown: str
) -> None:
    findings = check_service(cluster(api), change(healthy()) if change else healthy())
    statuses: dict[str, str] = {f.link: f.status for f in findings}
    assert statuses[unknown] == "unknown", (case, findings)
    assert "broken" not in statuses.values(), (case, [f for f in findings if f.status == "broken"])
    assert exit_code(findings) == 2


def test_pods_that_cannot_run_come_before_the_series_they_do_not_export() -> None:
    snapshot = dataclasses.replace(
        healthy(), pods=[PENDING_GPU], nodes=GPU_NODES, prometheus=prometheus(selected=[], in_namespace=[])
    )
    findings = check_service(cluster(), snapshot)
    first = first_broken(findings)
    assert first is not None
    assert first.link == "pods"
    assert "2 nodes, 2 with nvidia.com/gpu, 2 allocatable in all" in first.seen
    series = next(f for f in findings if f.link == "series")
    assert (series.status, "no pod of the service is Ready" in series.seen) == ("broken", True)


def test_a_pod_still_loading_next_to_a_ready_one_is_not_a_failure() -> None:
    loading = running_pod("llama-7d9f8b6c5d-new00")
    loading["status"]["conditions"] = [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}]
    findings = check_service(cluster(), dataclasses.replace(healthy(), pods=[running_pod(), loading]))
    pods = next(f for f in findings if f.link == "pods")
    assert (pods.status, pods.seen) == ("ok", "2 pods, 2 Running, 1 Ready (1 starting)")


def test_json_output_carries_every_finding_and_the_first_broken_link() -> None:
    snapshot = dataclasses.replace(healthy(), hpa=None)
    document = json.loads(format_json(check_service(cluster(), snapshot)))
    assert document["exitCode"] == 1
    [service] = document["services"]
    assert service["service"] == "llm/llama"
    assert service["firstBroken"] == "hpa"
    assert [f["link"] for f in service["findings"]] == list(LINKS)
    assert set(service["findings"][0]) == {"link", "status", "seen", "fix", "service"}


def test_no_findings_is_not_healthy() -> None:
    assert exit_code([]) == 2
    assert exit_code([Finding("apiservice", "ok", "fine")]) == 0
