"""Scale to zero as data: the spec's rules, the rendered objects, the held-demand query, the
activator's gate and the controller's reading of an API server without native scale to zero."""

from __future__ import annotations

import asyncio
import textwrap
from typing import Any

import pytest

from tgi_autoscaler.activator.gate import Gate, HoldOutcome, HoldPolicy
from tgi_autoscaler.config.constants import LABEL_INSTANCE
from tgi_autoscaler.config.errors import ConfigError
from tgi_autoscaler.config.service import parse_service_yaml
from tgi_autoscaler.controller.scale_to_zero import (
    parse_server_version,
    rejects_min_replicas,
    unsupported_message,
)
from tgi_autoscaler.engines import ENGINES, EngineKind
from tgi_autoscaler.render import RenderOptions, ServiceSource, render_service
from tgi_autoscaler.signals import DEFAULT_DEMAND

pytestmark = pytest.mark.unit

ZERO = """
model: {id: m}
autoscaling:
  minReplicas: 0
  maxReplicas: 4
  scaleToZero: {idleAfterSeconds: 120, maxHeldRequests: 50, maxWaitSeconds: 240}
"""


def _render(text: str, **options: Any) -> list[dict[str, Any]]:
    spec = parse_service_yaml(textwrap.dedent(text), source="test")
    return render_service(ServiceSource(name="llm", namespace="serving", spec=spec), RenderOptions(**options))


def _one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


# -- the spec -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("autoscaling", "path", "words"),
    [
        ("{minReplicas: 0, signal: queue}", "autoscaling.minReplicas", "0 needs signal: demand"),
        ("{minReplicas: 0, cpu: {targetUtilization: 70}}", "autoscaling.cpu", "not with minReplicas: 0"),
        ("{minReplicas: -1}", "autoscaling.minReplicas", "must be >= 0"),
        (
            "{minReplicas: 0, scaleToZero: {idleAfterSeconds: 0}}",
            "autoscaling.scaleToZero.idleAfterSeconds",
            "",
        ),
        (
            "{minReplicas: 0, scaleToZero: {maxHeldRequests: 0}}",
            "autoscaling.scaleToZero.maxHeldRequests",
            "",
        ),
        (
            "{minReplicas: 0, scaleToZero: {maxWaitSeconds: 7200}}",
            "autoscaling.scaleToZero.maxWaitSeconds",
            "",
        ),
    ],
)
def test_bad_scale_to_zero_settings_name_the_field(autoscaling: str, path: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_service_yaml(f"model: {{id: m}}\nautoscaling: {autoscaling}", source="test")
    messages = [str(issue) for issue in caught.value.issues]
    assert any(m.startswith(path) and words in m for m in messages), messages


def test_min_replicas_one_renders_no_activator_and_the_plain_demand_signal() -> None:
    objects = _render("model: {id: m}")
    assert not [o for o in objects if o["metadata"]["name"] == "llm-activator"]
    hpa = _one(objects, "HorizontalPodAutoscaler", "llm")
    assert hpa["spec"]["metrics"][0]["external"]["metric"]["name"] == "tgi_request_demand"


def test_min_replicas_zero_renders_the_hpa_on_held_demand_and_the_activator() -> None:
    objects = _render(ZERO)
    hpa = _one(objects, "HorizontalPodAutoscaler", "llm")["spec"]
    assert hpa["minReplicas"] == 0
    assert hpa["metrics"][0]["external"]["metric"] == {
        "name": "tgi_request_demand_with_held",
        "selector": {"matchLabels": {LABEL_INSTANCE: "llm"}},
    }
    deployment = _one(objects, "Deployment", "llm-activator")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == [
        "--log-format=json",
        "activator",
        "--upstream=http://llm.serving.svc:80",
        "--port=8080",
        "--metrics-port=9091",
        "--health-path=/health",
        "--max-held=50",
        "--max-wait=240",
        "--idle-after=120",
        "--shutdown-grace=250",
    ]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["template"]["metadata"]["labels"][LABEL_INSTANCE] == "llm"
    # Held requests outlive a rollout of the activator.
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 270
    service = _one(objects, "Service", "llm-activator")
    assert service["spec"]["ports"][0]["port"] == 80
    monitor = _one(objects, "PodMonitor", "llm-activator")
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"


def test_without_the_operator_the_activator_is_scraped_by_annotations() -> None:
    objects = _render(ZERO, prometheus_operator=False)
    template = _one(objects, "Deployment", "llm-activator")["spec"]["template"]
    assert template["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "9091",
        "prometheus.io/path": "/metrics",
    }
    assert not [o for o in objects if o["kind"] == "PodMonitor" and o["metadata"]["name"] == "llm-activator"]


def test_the_ingress_and_the_api_key_proxy_route_through_the_activator() -> None:
    text = ZERO + "ingress: {enabled: true, host: llm.example.com}\n"
    ingress = _one(_render(text), "Ingress", "llm")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "llm-activator"
    with_auth = text + "auth: {enabled: true, apiKeysSecret: {name: keys, key: keys}}\n"
    objects = _render(with_auth)
    backend = _one(objects, "Ingress", "llm")["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "llm-auth-proxy"
    nginx = _one(objects, "ConfigMap", "llm-auth-proxy")["data"]["nginx.conf"]
    assert "llm-activator.serving.svc:80" in nginx


# -- the signal -----------------------------------------------------------------------------------


def test_held_demand_adds_held_requests_and_the_keep_alive_and_zeroes_demand_only_without_replicas() -> None:
    query = DEFAULT_DEMAND.promql_with_held(ENGINES[EngineKind.TGI].counters)
    assert query == (
        "((sum(rate(tgi_request_count{$matchers}[60s])) + sum(tgi_queue_size{$matchers}) / 60)"
        " or (max(tgi_autoscaler_activator_upstream_ready{$matchers}) == 0))"
        " + sum(tgi_autoscaler_activator_held_requests{$matchers}) / 60"
        " + max(tgi_autoscaler_activator_active{$matchers}) * 0.001"
    )


def test_every_engine_serves_its_held_demand_metric() -> None:
    for engine in ENGINES.values():
        served = {m.name: m for m in engine.served_metrics}
        metric = served[engine.held_demand_metric]
        assert metric.query is not None
        assert "tgi_autoscaler_activator_held_requests" in metric.query


# -- the gate -------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_gate_holds_until_ready_refuses_when_full_and_times_out() -> None:
    clock = FakeClock()
    gate = Gate(HoldPolicy(max_held=2, max_wait_s=5, idle_after_s=60), clock=clock)
    first = asyncio.create_task(gate.hold(clock.now + 5))
    second = asyncio.create_task(gate.hold(clock.now + 5))
    await asyncio.sleep(0)
    assert gate.held == 2
    assert await gate.hold(clock.now + 5) is HoldOutcome.FULL
    gate.set_ready(True)
    assert list(await asyncio.gather(first, second)) == [HoldOutcome.READY, HoldOutcome.READY]
    assert gate.held == 0
    gate.set_ready(False)
    assert await gate.hold(clock.now - 1) is HoldOutcome.TIMEOUT
    assert await gate.hold(clock.now + 0.05) is HoldOutcome.TIMEOUT
    assert gate.held == 0


def test_the_idle_window_follows_the_last_arrival() -> None:
    clock = FakeClock()
    gate = Gate(HoldPolicy(idle_after_s=60), clock=clock)
    assert not gate.active
    gate.arrived()
    clock.now += 59.9
    assert gate.active
    clock.now += 0.2
    assert not gate.active


@pytest.mark.parametrize(
    "kwargs", [{"max_held": 0}, {"max_wait_s": 0}, {"idle_after_s": -1}, {"retry_after_s": 0}]
)
def test_bad_hold_policies_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        HoldPolicy(**kwargs)


# -- the API server -------------------------------------------------------------------------------


def test_server_versions_and_what_they_allow() -> None:
    v137 = parse_server_version({"major": "1", "minor": "37", "gitVersion": "v1.37.2"})
    v136 = parse_server_version({"major": "1", "minor": "36+", "gitVersion": "v1.36.3-gke.100"})
    assert v137 is not None
    assert v137.native_scale_to_zero
    assert v136 is not None
    assert not v136.native_scale_to_zero
    assert parse_server_version({"major": "", "minor": "x"}) is None
    assert parse_server_version(None) is None
    old = unsupported_message(v136)
    assert old.startswith("autoscaling.minReplicas: 0 needs the HPA's native scale to zero")
    assert "v1.36.3-gke.100" in old
    assert "before v1.37" in old
    assert "switched off" in unsupported_message(v137)


def test_only_a_refused_min_replicas_of_an_hpa_means_no_scale_to_zero() -> None:
    causes: list[tuple[str | None, str]] = [("spec.minReplicas", "must be greater than or equal to 1")]
    assert rejects_min_replicas("HorizontalPodAutoscaler", causes, "invalid")
    assert not rejects_min_replicas("Deployment", causes, "invalid")
    assert not rejects_min_replicas("HorizontalPodAutoscaler", [("spec.maxReplicas", "bad")], "invalid")
