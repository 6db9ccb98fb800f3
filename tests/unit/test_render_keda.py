"""The KEDA backend's ScaledObject: same queries, targets and behavior as the HPA, outage-safe settings."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from tgi_autoscaler.config.constants import LABEL_MANAGED_BY, LABEL_OWNER_NAME, LABEL_OWNER_NAMESPACE
from tgi_autoscaler.config.errors import ConfigError
from tgi_autoscaler.config.metrics import parse_metrics_yaml
from tgi_autoscaler.config.service import parse_service_yaml
from tgi_autoscaler.render import KedaOptions, RenderOptions, ServiceSource, render_service
from tgi_autoscaler.render.autoscaling import render_hpa
from tgi_autoscaler.render.cli import keda_options
from tgi_autoscaler.render.keda import format_threshold, render_scaled_object

pytestmark = pytest.mark.unit

PROM = "http://prometheus.monitoring:9090"


def _source(text: str = "model: {id: meta-llama/Llama-2-7b-chat-hf}\n") -> ServiceSource:
    return ServiceSource(
        name="llm", namespace="serving", spec=parse_service_yaml(textwrap.dedent(text), source="test")
    )


def _kinds(objects: list[dict[str, Any]]) -> list[str]:
    return [o["kind"] for o in objects]


def test_keda_replaces_the_hpa_and_nothing_else() -> None:
    source = _source()
    hpa_objects = render_service(source, RenderOptions())
    keda_objects = render_service(source, RenderOptions(keda=KedaOptions(prometheus_url=PROM)))
    assert "HorizontalPodAutoscaler" in _kinds(hpa_objects)
    assert "HorizontalPodAutoscaler" not in _kinds(keda_objects)
    assert _kinds(keda_objects) == [
        "ScaledObject" if kind == "HorizontalPodAutoscaler" else kind for kind in _kinds(hpa_objects)
    ]


def test_trigger_runs_the_adapters_query_with_the_hpas_target() -> None:
    source = _source()
    hpa = render_hpa(source)
    scaled = render_scaled_object(source, KedaOptions(prometheus_url=PROM + "/"))
    (trigger,) = scaled["spec"]["triggers"]
    external = hpa["spec"]["metrics"][0]["external"]
    assert trigger["name"] == external["metric"]["name"] == "tgi_request_demand"
    assert trigger["metricType"] == external["target"]["type"] == "AverageValue"
    meta = trigger["metadata"]
    assert meta["serverAddress"] == PROM
    assert meta["query"] == (
        'sum(rate(tgi_request_count{namespace="serving",app_kubernetes_io_instance="llm"}[60s])) '
        '+ sum(tgi_queue_size{namespace="serving",app_kubernetes_io_instance="llm"}) / 60'
    )
    # The same milli-rounded number, written as KEDA's ParseFloat reads it.
    assert float(meta["threshold"]) * 1000 == pytest.approx(
        float(external["target"]["averageValue"].removesuffix("m"))
    )


def test_outage_never_becomes_zero() -> None:
    scaled = render_scaled_object(_source(), KedaOptions(prometheus_url=PROM, failure_threshold=5))
    assert all(t["metadata"]["ignoreNullValues"] == "false" for t in scaled["spec"]["triggers"])
    assert scaled["spec"]["fallback"] == {"failureThreshold": 5, "replicas": 1, "behavior": "currentReplicas"}


def test_behavior_bounds_and_hpa_labels() -> None:
    source = _source(
        """
        model: {id: m}
        autoscaling:
          minReplicas: 2
          maxReplicas: 7
          scaleDown: {stabilizationWindowSeconds: 120}
        """
    )
    scaled = render_scaled_object(source, KedaOptions(prometheus_url=PROM))
    spec = scaled["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 7)
    hpa_config = spec["advanced"]["horizontalPodAutoscalerConfig"]
    assert hpa_config["behavior"] == render_hpa(source)["spec"]["behavior"]
    assert hpa_config["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 120
    excluded = scaled["metadata"]["annotations"]["scaledobject.keda.sh/hpa-excluded-labels"].split(",")
    # KEDA copies the ScaledObject's labels onto its HPA; with these the controller would prune it.
    assert {LABEL_OWNER_NAME, LABEL_OWNER_NAMESPACE, LABEL_MANAGED_BY} <= set(excluded)


def test_queue_signal_batch_and_cpu_triggers() -> None:
    source = _source(
        """
        model: {id: m}
        engine: {kind: vllm}
        autoscaling:
          signal: queue
          queue: {targetPerReplica: 4}
          batchSize: {metric: vllm_num_requests_waiting, targetPerReplica: 2.5}
          cpu: {targetUtilization: 80}
        """
    )
    triggers = render_scaled_object(source, KedaOptions(prometheus_url=PROM))["spec"]["triggers"]
    assert [(t["type"], t.get("name")) for t in triggers] == [
        ("prometheus", "vllm_num_requests_waiting"),
        ("prometheus", "vllm_num_requests_waiting"),
        ("cpu", None),
    ]
    assert triggers[0]["metadata"]["query"] == (
        'sum(vllm:num_requests_waiting{namespace="serving",app_kubernetes_io_instance="llm"})'
    )
    assert [t["metadata"].get("threshold") for t in triggers[:2]] == ["4", "2.5"]
    assert triggers[2] == {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "80"}}


def test_unknown_metric_names_the_field() -> None:
    source = _source("model: {id: m}\nautoscaling: {demand: {metric: my_demand}}\n")
    with pytest.raises(ConfigError) as caught:
        render_scaled_object(source, KedaOptions(prometheus_url=PROM))
    assert caught.value.issues[0].path == "autoscaling.demand.metric"
    assert "my_demand" in caught.value.issues[0].message


def test_custom_definitions_are_used() -> None:
    config = parse_metrics_yaml(
        "metrics:\n- name: my_demand\n  query: sum(rate(x{$matchers}[15s]))\n", source="test"
    )
    source = _source("model: {id: m}\nautoscaling: {demand: {metric: my_demand}}\n")
    options = KedaOptions(prometheus_url=PROM, definitions=config.definitions())
    (trigger,) = render_scaled_object(source, options)["spec"]["triggers"]
    assert trigger["metadata"]["query"] == (
        'sum(rate(x{namespace="serving",app_kubernetes_io_instance="llm"}[15s]))'
    )


@pytest.mark.parametrize("url", ["prometheus:9090", "ftp://p", "http://"])
def test_bad_prometheus_url_names_the_flag(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        render_scaled_object(_source(), KedaOptions(prometheus_url=url))
    assert caught.value.issues[0].path == "--keda-prometheus-url"
    assert repr(url) in caught.value.issues[0].message


def test_keda_without_url_names_the_flag() -> None:
    assert keda_options("hpa", None, None) is None
    with pytest.raises(ConfigError) as caught:
        keda_options("keda", None, None)
    assert caught.value.issues[0].path == "--keda-prometheus-url"


@pytest.mark.parametrize(
    ("value", "text"), [(10, "10"), (2.019, "2.019"), (3.1775, "3.178"), (0.001, "0.001"), (1500, "1500")]
)
def test_threshold_is_a_plain_decimal(value: float, text: str) -> None:
    assert format_threshold(value) == text


def test_threshold_rounding_to_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="rounds to zero"):
        format_threshold(0.0004)
