"""The local control plane is the real thing: real binaries, real controllers, real validation."""

from __future__ import annotations

import json

import pytest

from tgi_autoscaler_dev.localstack.binaries import KUBERNETES_VERSION
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane
from tgi_autoscaler_dev.localstack.process import wait_for

pytestmark = pytest.mark.e2e


async def test_kubectl_lists_the_system_namespaces(control_plane: ControlPlane) -> None:
    result = (await control_plane.kubectl("get", "namespaces", "-o", "name")).check()
    names = set(result.stdout.split())
    assert {"namespace/default", "namespace/kube-system", "namespace/kube-public"} <= names


async def test_kubectl_and_server_report_the_pinned_version(control_plane: ControlPlane) -> None:
    result = (await control_plane.kubectl("version", "-o", "json")).check()
    versions = json.loads(result.stdout)
    assert versions["clientVersion"]["gitVersion"] == KUBERNETES_VERSION
    assert versions["serverVersion"]["gitVersion"] == KUBERNETES_VERSION


async def test_deployment_gets_a_replicaset_and_pending_pods(
    control_plane: ControlPlane, namespace: str
) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]},
            },
        },
    }
    status, body = await control_plane.request(
        "POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", body=deployment
    )
    assert status == 201, body

    async def two_pending_pods() -> bool:
        _, pods = await control_plane.request(
            "GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector=app%3Dweb"
        )
        phases = [p["status"].get("phase") for p in pods["items"]]
        return phases == ["Pending", "Pending"]

    await wait_for(two_pending_pods, timeout=60, what="two Pending pods created by the ReplicaSet controller")
    _, replicasets = await control_plane.request("GET", f"/apis/apps/v1/namespaces/{namespace}/replicasets")
    assert len(replicasets["items"]) == 1
    owner = replicasets["items"][0]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("Deployment", "web")


async def test_server_side_dry_run_rejects_an_invalid_object_with_the_apiservers_message(
    control_plane: ControlPlane, namespace: str
) -> None:
    invalid_hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "bad", "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 5,
            "maxReplicas": 2,
        },
    }
    result = await control_plane.kubectl(
        "apply", "--server-side", "--dry-run=server", "-f", "-", input_text=json.dumps(invalid_hpa)
    )
    assert result.returncode != 0
    assert (
        "spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`" in result.stderr
    )
    _, listed = await control_plane.request(
        "GET", f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers"
    )
    assert listed["items"] == []
