"""Gateway API routing against the real API server and the real CRDs: Gateway API v1.6.3 (standard
channel), the Inference Extension v1.6.0 and Envoy Gateway v1.9.1's BackendTrafficPolicy, installed
from their Go modules. The controller's HTTPRoute, InferencePool and BackendTrafficPolicy pass
server-side validation, follow edits, are pruned when no longer rendered and garbage-collected with
their ConfigMap; without the CRDs a routed spec is reported Invalid, naming the field, and is applied
once the CRDs appear."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client as k8s_client

from tests.e2e.controller_harness import (
    events_for,
    example_configmap,
    expected_objects,
    install_controller_rbac,
    install_routing_crds,
    owned_objects,
    remove_routing_crds,
    run_controller,
    service_configmap,
    status_of,
)
from tgi_autoscaler.kube.client import ApiKubeClient, KubeObject
from tgi_autoscaler.kube.resources import CONFIGMAP, HTTPROUTE, INFERENCEPOOL
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane
from tgi_autoscaler_dev.localstack.process import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
async def routed_kubeconfig(control_plane: ControlPlane) -> Path:
    # prometheus-operator's CRDs may or may not be installed (other tests add and remove them):
    # routing does not depend on them, and expectations follow what the cluster serves.
    kubeconfig = await install_controller_rbac(control_plane)
    await install_routing_crds(control_plane)
    return kubeconfig


async def _operator(admin: ApiKubeClient) -> bool:
    document = await admin.get_path("/apis/monitoring.coreos.com/v1")
    return document is not None and "podmonitors" in {r["name"] for r in document.get("resources", [])}


@pytest.fixture
def admin(kube_api: k8s_client.ApiClient) -> ApiKubeClient:
    return ApiKubeClient(kube_api)


@pytest.fixture
async def gateway_namespace(control_plane: ControlPlane) -> AsyncIterator[str]:
    """A namespace holding a GatewayClass's Gateway with an HTTPS listener, as a platform team runs it."""
    name = f"gateway-{uuid.uuid4().hex[:5]}"
    (await control_plane.kubectl("create", "namespace", name)).check()
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": name},
            "spec": {"controllerName": "example.com/gateway-controller"},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "inference-gateway", "namespace": name},
            "spec": {
                "gatewayClassName": name,
                "listeners": [
                    {
                        "name": "https",
                        "protocol": "HTTPS",
                        "port": 443,
                        "hostname": "*.example.com",
                        "tls": {"mode": "Terminate", "certificateRefs": [{"name": "llm-tls"}]},
                        "allowedRoutes": {"namespaces": {"from": "All"}},
                    }
                ],
            },
        },
    ]
    (
        await control_plane.kubectl(
            "apply", "--server-side", "-f", "-", input_text=yaml.safe_dump_all(objects)
        )
    ).check()
    try:
        yield name
    finally:
        await control_plane.kubectl("delete", "gatewayclass", name, "--ignore-not-found", "--wait=false")
        await control_plane.kubectl("delete", "namespace", name, "--wait=false")


async def _wait_ready(admin: ApiKubeClient, namespace: str, name: str, timeout: float = 60) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def ready() -> bool:
        status = await status_of(admin, namespace, name)
        if status is not None and status["phase"] == "Ready":
            found.update(status)
            return True
        return False

    await wait_for(ready, timeout=timeout, what=f"{namespace}/{name} to become Ready")
    return found


async def _edit(admin: ApiKubeClient, configmap: KubeObject, spec: str) -> None:
    meta = configmap["metadata"]
    await admin.merge_patch(
        CONFIGMAP, meta["namespace"], meta["name"], {"data": {"service.yaml": spec}}, field_manager="e2e"
    )


async def _route(admin: ApiKubeClient, namespace: str, name: str) -> KubeObject:
    route = await admin.get(HTTPROUTE, namespace, name)
    assert route is not None
    return route


async def _gone(admin: ApiKubeClient, namespace: str, owner: str) -> None:
    async def all_gone() -> bool:
        return await owned_objects(admin, [namespace], owner) == set()

    await wait_for(all_gone, timeout=60, what=f"garbage collection of every object of {owner}")


async def test_service_exposed_through_a_gateway_is_applied_edited_pruned_and_collected(
    routed_kubeconfig: Path, admin: ApiKubeClient, namespace: str, gateway_namespace: str
) -> None:
    configmap = example_configmap("llama3-8b-gateway.yaml", namespace)
    spec = configmap["data"]["service.yaml"].replace(
        "namespace: gateway-system", f"namespace: {gateway_namespace}"
    )
    configmap["data"]["service.yaml"] = spec
    async with run_controller(routed_kubeconfig, namespaces=(namespace,)):
        created = await admin.create(CONFIGMAP, namespace, configmap)
        status = await _wait_ready(admin, namespace, "llama3-gateway")
        expected = expected_objects(created, operator=await _operator(admin))
        assert {
            f"HTTPRoute/{namespace}/llama3-gateway",
            f"BackendTrafficPolicy/{namespace}/llama3-gateway",
        } <= expected
        assert await owned_objects(admin, [namespace], "llama3-gateway") == expected
        assert set(status["objects"]) == expected

        route = await _route(admin, namespace, "llama3-gateway")
        assert route["spec"]["parentRefs"][0]["namespace"] == gateway_namespace
        assert route["spec"]["parentRefs"][0]["sectionName"] == "https"
        [rule] = route["spec"]["rules"]
        assert rule["backendRefs"][0]["name"] == "llama3-gateway-auth-proxy"
        assert rule["backendRefs"][0]["weight"] == 1, "the API server's defaulting ran: a real CRD schema"
        assert rule["timeouts"] == {"request": "600s"}
        [owner] = route["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"]) == ("ConfigMap", created["metadata"]["uid"])

        # An edit reaches the route; dropping the rate limit prunes its policy.
        edited = spec.replace("requestTimeoutSeconds: 600", "requestTimeoutSeconds: 900")
        edited = edited.replace("  envoyGatewayRateLimit:\n    requestsPerSecond: 10\n", "")
        assert "requestTimeoutSeconds: 900" in edited
        assert "envoyGatewayRateLimit" not in edited
        await _edit(admin, created, edited)

        async def followed() -> bool:
            route = await _route(admin, namespace, "llama3-gateway")
            found = await owned_objects(admin, [namespace], "llama3-gateway")
            return route["spec"]["rules"][0]["timeouts"] == {"request": "900s"} and not any(
                ref.startswith("BackendTrafficPolicy/") for ref in found
            )

        await wait_for(followed, timeout=30, what="the route to follow the edit and the policy to be pruned")

        assert await admin.delete(CONFIGMAP, namespace, "llama3-gateway")
        await _gone(admin, namespace, "llama3-gateway")


async def test_service_exposed_through_an_inference_pool_is_applied_switched_and_collected(
    routed_kubeconfig: Path, admin: ApiKubeClient, namespace: str
) -> None:
    configmap = example_configmap("llama3-8b-inferencepool.yaml", namespace)
    async with run_controller(routed_kubeconfig, namespaces=(namespace,)):
        created = await admin.create(CONFIGMAP, namespace, configmap)
        await _wait_ready(admin, namespace, "llama3-pool")
        expected = expected_objects(created, operator=await _operator(admin))
        assert f"InferencePool/{namespace}/llama3-pool" in expected
        assert await owned_objects(admin, [namespace], "llama3-pool") == expected

        pool = await admin.get(INFERENCEPOOL, namespace, "llama3-pool")
        assert pool is not None
        assert pool["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "server"
        assert pool["spec"]["targetPorts"] == [{"number": 8000}]
        assert pool["spec"]["endpointPickerRef"]["name"] == "llama3-pool-epp"
        assert pool["spec"]["appProtocol"] == "http", "the API server's defaulting ran: a real CRD schema"
        route = await _route(admin, namespace, "llama3-pool")
        [backend] = route["spec"]["rules"][0]["backendRefs"]
        assert (backend["group"], backend["kind"], backend["name"]) == (
            "inference.networking.k8s.io",
            "InferencePool",
            "llama3-pool",
        )

        # Back to plain balancing: the pool is pruned and the route points at the Service.
        spec = configmap["data"]["service.yaml"]
        plain = spec.replace("backend: InferencePool", "backend: Service")
        await _edit(admin, created, plain)

        async def switched() -> bool:
            route = await _route(admin, namespace, "llama3-pool")
            [backend] = route["spec"]["rules"][0]["backendRefs"]
            return (
                backend["kind"] == "Service"
                and await admin.get(INFERENCEPOOL, namespace, "llama3-pool") is None
            )

        await wait_for(
            switched, timeout=30, what="the route to point at the Service and the pool to be pruned"
        )
        await _edit(admin, created, spec)
        await wait_for(
            lambda: _exists(admin, namespace, "llama3-pool"), timeout=30, what="the pool to come back"
        )

        assert await admin.delete(CONFIGMAP, namespace, "llama3-pool")
        await _gone(admin, namespace, "llama3-pool")


async def _exists(admin: ApiKubeClient, namespace: str, name: str) -> bool:
    return await admin.get(INFERENCEPOOL, namespace, name) is not None


ROUTED = """\
model:
  id: meta-llama/Meta-Llama-3-8B-Instruct
engine:
  kind: vllm
routing:
  enabled: true
  gateway:
    name: inference-gateway
"""


@pytest.fixture
async def without_routing_crds(control_plane: ControlPlane) -> AsyncIterator[Path]:
    """No Gateway API or Inference Extension CRDs during the test; reinstalled afterwards."""
    kubeconfig = await install_controller_rbac(control_plane)
    await remove_routing_crds(control_plane)
    try:
        yield kubeconfig
    finally:
        await install_routing_crds(control_plane)


async def test_without_gateway_api_a_routed_spec_is_invalid_then_applied_when_the_crds_appear(
    control_plane: ControlPlane, without_routing_crds: Path, admin: ApiKubeClient, namespace: str
) -> None:
    async with run_controller(without_routing_crds, namespaces=(namespace,), discovery_period_s=1.0):
        await admin.create(CONFIGMAP, namespace, service_configmap("svc", namespace, ROUTED))

        async def invalid() -> bool:
            status = await status_of(admin, namespace, "svc")
            return status is not None and status["phase"] == "Invalid"

        await wait_for(invalid, timeout=30, what="the routed spec to be reported Invalid")
        status = await status_of(admin, namespace, "svc")
        assert status is not None
        assert "routing.enabled" in status["message"]
        assert "httproutes.gateway.networking.k8s.io/v1" in status["message"]
        warnings = [e for e in await events_for(admin, namespace, "svc") if e["type"] == "Warning"]
        assert any("routing.enabled" in e["message"] for e in warnings)

        await install_routing_crds(control_plane)
        await _wait_ready(admin, namespace, "svc")
        route = await _route(admin, namespace, "svc")
        assert route["spec"]["rules"][0]["backendRefs"][0]["name"] == "svc"
