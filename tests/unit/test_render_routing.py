"""Gateway API routing: the HTTPRoute, InferencePool and rate-limit policy a spec renders, and the
errors for specs that cannot be routed (or clusters that cannot serve them)."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from tests.unit.controller_fakes import FakeKube
from tgi_autoscaler.config.errors import ConfigError
from tgi_autoscaler.config.service import parse_service_yaml
from tgi_autoscaler.controller.discovery import ApiDiscovery
from tgi_autoscaler.controller.resources import CRD_KINDS, OPERATOR_KINDS
from tgi_autoscaler.kube.resources import BACKENDTRAFFICPOLICY, HTTPROUTE, INFERENCEPOOL
from tgi_autoscaler.render import RenderOptions, ServiceSource, render_service

pytestmark = pytest.mark.unit

ROUTED = """\
model: {id: m}
routing:
  enabled: true
  gateway: {name: gw}
"""
AUTH = "auth: {enabled: true, apiKeysSecret: {name: keys, key: keys}}\n"
POOL = """\
model: {id: m}
engine: {kind: vllm}
routing:
  enabled: true
  gateway: {name: gw, namespace: infra, sectionName: https}
  hostnames: [llm.example.com, "*.llm.example.com"]
  path: /v1
  backend: InferencePool
  inferencePool:
    endpointPicker: {name: llm-epp, port: 9003, failureMode: FailOpen}
"""


def _render(text: str, **options: Any) -> list[dict[str, Any]]:
    spec = parse_service_yaml(textwrap.dedent(text), source="test")
    return render_service(ServiceSource(name="llm", namespace="serving", spec=spec), RenderOptions(**options))


def _one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [o for o in objects if o["kind"] == kind]
    return found


def _issues(text: str, **options: Any) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as caught:
        _render(text, **options)
    return [(issue.path, issue.message) for issue in caught.value.issues]


def test_routing_off_renders_no_gateway_objects() -> None:
    kinds = {o["kind"] for o in _render("model: {id: m}\n")}
    assert not kinds & {"HTTPRoute", "InferencePool", "BackendTrafficPolicy"}


def test_route_to_the_server_service_with_a_streaming_timeout() -> None:
    route = _one(_render(ROUTED + "service: {port: 8081}\n"), "HTTPRoute")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["metadata"]["name"] == "llm"
    assert route["spec"]["parentRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}
    ]
    assert "hostnames" not in route["spec"]
    [rule] = route["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert rule["backendRefs"] == [{"group": "", "kind": "Service", "name": "llm", "port": 8081}]
    assert rule["timeouts"] == {"request": "600s"}


def test_route_goes_through_the_api_key_proxy_when_auth_is_on() -> None:
    objects = _render(ROUTED + AUTH)
    [rule] = _one(objects, "HTTPRoute")["spec"]["rules"]
    assert rule["backendRefs"] == [{"group": "", "kind": "Service", "name": "llm-auth-proxy", "port": 80}]
    proxy = [o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "llm-auth-proxy"]
    assert proxy[0]["spec"]["ports"][0]["port"] == 80


ZERO = "autoscaling: {minReplicas: 0, maxReplicas: 2}\n"


@pytest.mark.parametrize(
    ("extra", "backend"),
    [
        (ZERO, {"group": "", "kind": "Service", "name": "llm-activator", "port": 80}),
        # The API-key proxy forwards to the activator itself.
        (ZERO + AUTH, {"group": "", "kind": "Service", "name": "llm-auth-proxy", "port": 80}),
    ],
    ids=["activator", "proxy, then activator"],
)
def test_a_service_that_scales_to_zero_is_routed_through_its_activator(
    extra: str, backend: dict[str, Any]
) -> None:
    objects = _render(ROUTED + extra)
    [rule] = _one(objects, "HTTPRoute")["spec"]["rules"]
    assert rule["backendRefs"] == [backend]
    activator = [o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "llm-activator"]
    assert activator[0]["spec"]["ports"][0]["port"] == 80


def test_zero_timeout_disables_it_as_gateway_api_defines() -> None:
    route = _one(
        _render(ROUTED.replace("enabled: true", "enabled: true\n  requestTimeoutSeconds: 0")), "HTTPRoute"
    )
    assert route["spec"]["rules"][0]["timeouts"] == {"request": "0s"}


def test_inference_pool_selects_only_the_server_pods_and_is_the_route_backend() -> None:
    objects = _render(POOL)
    pool = _one(objects, "InferencePool")
    assert pool["apiVersion"] == "inference.networking.k8s.io/v1"
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    # Like the Service, the pool selects the pods of the model being served (blue-green switches).
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pool["spec"]["selector"]["matchLabels"] == {
        **deployment["spec"]["selector"]["matchLabels"],
        "tgi-autoscaler.io/model-hash": pod_labels["tgi-autoscaler.io/model-hash"],
    }
    assert pool["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "server"
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert (
        pool["spec"]["targetPorts"]
        == [{"number": container["ports"][0]["containerPort"]}]
        == [{"number": 8000}]
    )
    assert pool["spec"]["endpointPickerRef"] == {
        "group": "",
        "kind": "Service",
        "name": "llm-epp",
        "port": {"number": 9003},
        "failureMode": "FailOpen",
    }
    route = _one(objects, "HTTPRoute")
    assert route["spec"]["parentRefs"] == [
        {
            "group": "gateway.networking.k8s.io",
            "kind": "Gateway",
            "name": "gw",
            "namespace": "infra",
            "sectionName": "https",
        }
    ]
    assert route["spec"]["hostnames"] == ["llm.example.com", "*.llm.example.com"]
    [rule] = route["spec"]["rules"]
    assert rule["matches"][0]["path"]["value"] == "/v1"
    assert rule["backendRefs"] == [
        {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "llm"}
    ]
    kinds = [o["kind"] for o in objects]
    assert kinds.index("InferencePool") < kinds.index("HTTPRoute"), (
        "the pool exists before the route names it"
    )


def test_envoy_gateway_rate_limit_is_per_client_ip_on_the_route() -> None:
    objects = _render(ROUTED + "  envoyGatewayRateLimit: {requestsPerSecond: 7}\n")
    policy = _one(objects, "BackendTrafficPolicy")
    assert policy["apiVersion"] == "gateway.envoyproxy.io/v1alpha1"
    assert policy["spec"]["targetRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "llm"}
    ]
    rules = policy["spec"]["rateLimit"]["local"]["rules"]
    assert policy["spec"]["rateLimit"]["type"] == "Local"
    assert [r["clientSelectors"][0]["sourceCIDR"] for r in rules] == [
        {"type": "Distinct", "value": "0.0.0.0/0"},
        {"type": "Distinct", "value": "::/0"},
    ]
    assert all(r["limit"] == {"requests": 7, "unit": "Second"} for r in rules)


@pytest.mark.parametrize(
    ("text", "path", "words"),
    [
        ("model: {id: m}\nrouting: {enabled: true}\n", "routing.gateway", "required"),
        (ROUTED + "  backend: InferencePool\n", "routing.inferencePool", "required"),
        (ROUTED + "  requestTimeoutSeconds: 100000\n", "routing.requestTimeoutSeconds", "99999"),
        (ROUTED + "  hostnames: [localhost]\n", "routing.hostnames[0]", "localhost"),
        (ROUTED + "  path: v1\n", "routing.path", "must match ^/"),
        (ROUTED.replace("{name: gw}", "{name: gw, namespace: Infra}"), "routing.gateway.namespace", "Infra"),
        (
            ROUTED + "  envoyGatewayRateLimit: {requestsPerSecond: 0}\n",
            "routing.envoyGatewayRateLimit.requestsPerSecond",
            "> 0",
        ),
        (ROUTED + "  backnd: Service\n", "routing.backnd", "backend"),
        (POOL + AUTH, "routing.backend", "API-key proxy"),
        (POOL + "autoscaling: {minReplicas: 0, maxReplicas: 2}\n", "routing.backend", "activator"),
    ],
)
def test_invalid_routing_names_the_field(text: str, path: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_service_yaml(text, source="test")
    found = {issue.path: issue.message for issue in caught.value.issues}
    assert path in found, found
    assert words in found[path]


@pytest.mark.parametrize(
    ("text", "missing", "path"),
    [
        (ROUTED, {"gateway_api": False}, "routing.enabled"),
        (POOL, {"inference_extension": False}, "routing.backend"),
        (
            ROUTED + "  envoyGatewayRateLimit: {requestsPerSecond: 7}\n",
            {"envoy_gateway": False},
            "routing.envoyGatewayRateLimit",
        ),
    ],
)
def test_a_cluster_without_the_crds_gets_an_error_naming_the_field(
    text: str, missing: dict[str, bool], path: str
) -> None:
    [(found_path, message)] = _issues(text, **missing)
    assert found_path == path
    assert "not served by this cluster" in message


def test_a_spec_without_routing_renders_on_a_cluster_without_gateway_api() -> None:
    assert _render("model: {id: m}\n", gateway_api=False, inference_extension=False, envoy_gateway=False)


async def test_discovery_reports_each_served_custom_resource_and_propagates_errors() -> None:
    kube = FakeKube()
    discovery = ApiDiscovery(kube, CRD_KINDS)
    assert not discovery.serves(HTTPROUTE)  # unknown before the first check
    kube.discovery["/apis/gateway.networking.k8s.io/v1"] = {
        "resources": [{"name": "httproutes"}, {"name": "gateways"}]
    }
    assert await discovery.refresh()
    assert discovery.serves(HTTPROUTE)
    assert not discovery.serves(INFERENCEPOOL)
    assert not discovery.serves(*OPERATOR_KINDS)
    assert not await discovery.refresh(), "an unchanged answer is not a change"
    kube.discovery["/apis/inference.networking.k8s.io/v1"] = {"resources": [{"name": "inferencepools"}]}
    kube.discovery["/apis/gateway.envoyproxy.io/v1alpha1"] = {
        "resources": [{"name": "backendtrafficpolicies"}]
    }
    assert await discovery.refresh()
    assert discovery.serves(HTTPROUTE, INFERENCEPOOL, BACKENDTRAFFICPOLICY)
    kube.fail["get_path"] = [RuntimeError("connection reset")]
    with pytest.raises(RuntimeError):
        await discovery.refresh()
    assert discovery.serves(HTTPROUTE, INFERENCEPOOL), "an error keeps the previous answer"
