"""GPU pods on kwok nodes: the real scheduler places them, kwok runs them, the simulator follows them.

A Deployment asks for more GPUs than its dedicated pool has: the pods that fit are scheduled one
GPU each, Running and then Ready; the rest stay Pending with the scheduler's own verdict
(``PodScheduled=False``, reason ``Unschedulable``, "Insufficient nvidia.com/gpu"). The simulated
replicas follow the pods (one per Running pod, named after it and labelled like it, serving once
Ready), and scaling down terminates pods gracefully, the replicas with them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from tests.e2e.conftest import GpuNodes
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane
from tgi_autoscaler_dev.localstack.kwok import GPU_RESOURCE, READY_DELAY_ANNOTATION, GpuNodePool
from tgi_autoscaler_dev.localstack.process import wait_for
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer
from tgi_autoscaler_dev.sim.fleet import Fleet
from tgi_autoscaler_dev.sim.follow import following_pods
from tgi_autoscaler_dev.sim.pods import pod_labels

pytestmark = pytest.mark.e2e

SERVICE = "gpu-hungry"


def deployment(namespace: str, pool: GpuNodePool, replicas: int) -> dict[str, Any]:
    labels = pod_labels(SERVICE)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": SERVICE, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": {READY_DELAY_ANNOTATION: "2s"}},
                "spec": {
                    "nodeSelector": pool.node_selector,
                    "tolerations": pool.tolerations,
                    "terminationGracePeriodSeconds": 30,
                    "containers": [
                        {
                            "name": "tgi",
                            "image": "registry.invalid/tgi:1",
                            "resources": {"limits": {GPU_RESOURCE: "1"}},
                        }
                    ],
                },
            },
        },
    }


async def pods(cp: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    selector = quote(f"app.kubernetes.io/instance={SERVICE}", safe="")
    status, body = await cp.request("GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector={selector}")
    assert status == 200, body
    items: list[dict[str, Any]] = body["items"]
    return items


def condition(pod: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in pod.get("status", {}).get("conditions") or [] if c["type"] == kind), None)


def is_ready(pod: dict[str, Any]) -> bool:
    ready = condition(pod, "Ready")
    return pod["status"].get("phase") == "Running" and ready is not None and ready["status"] == "True"


def is_unschedulable(pod: dict[str, Any]) -> bool:
    scheduled = condition(pod, "PodScheduled")
    return (
        pod["status"].get("phase") == "Pending"
        and scheduled is not None
        and scheduled["status"] == "False"
        and scheduled.get("reason") == "Unschedulable"
    )


@pytest.mark.timeout(240)
async def test_more_gpus_than_the_pool_has_leaves_pods_pending_and_the_rest_ready(
    control_plane: ControlPlane,
    gpu_nodes: GpuNodes,
    running_prometheus: PrometheusServer,
    namespace: str,
) -> None:
    pool = await gpu_nodes(count=2, gpus_per_node=1)
    status, body = await control_plane.request(
        "POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", body=deployment(namespace, pool, 3)
    )
    assert status == 201, body

    async with (
        Fleet(SERVICE, namespace=namespace, replicas=0, file_sd_dir=running_prometheus.file_sd_dir) as fleet,
        following_pods(
            fleet,
            kubeconfig=control_plane.kubeconfig,
            label_selector=f"app.kubernetes.io/instance={SERVICE}",
        ),
    ):
        seen: list[dict[str, Any]] = []

        async def two_ready_one_pending() -> bool:
            seen[:] = await pods(control_plane, namespace)
            ready = [p for p in seen if is_ready(p)]
            pending = [p for p in seen if is_unschedulable(p)]
            return len(seen) == 3 and len(ready) == 2 and len(pending) == 1 and fleet.serving == 2

        await wait_for(two_ready_one_pending, timeout=90, interval=0.3, what="2 Ready pods and 1 Pending")

        ready = [p for p in seen if is_ready(p)]
        pending = next(p for p in seen if is_unschedulable(p))
        # One GPU each, on both nodes of the pool (each node has one).
        assert sorted(p["spec"]["nodeName"] for p in ready) == sorted(pool.node_names)
        message = condition(pending, "PodScheduled")["message"]  # type: ignore[index]
        assert f"Insufficient {GPU_RESOURCE}" in message, message
        assert "nodeName" not in pending["spec"]

        # The simulated replicas are the Running pods: same names, same labels in Prometheus.
        assert sorted(r.name for r in fleet.replicas) == sorted(p["metadata"]["name"] for p in ready)
        for replica in fleet.replicas:
            pod = next(p for p in ready if p["metadata"]["name"] == replica.name)
            assert replica.labels == pod["metadata"]["labels"]
            assert replica.target_labels["pod"] == replica.name
            assert replica.server.ready

        async def scraped() -> bool:
            result = await running_prometheus.query(f'up{{namespace="{namespace}"}} == 1')
            return sorted(r["metric"]["pod"] for r in result) == sorted(r.name for r in fleet.replicas)

        await wait_for(scraped, timeout=30, interval=0.5, what="Prometheus to scrape both replicas")

        # Scale down to one: the Pending pod and one Running pod go, gracefully; so does a replica.
        status, body = await control_plane.request(
            "PATCH",
            f"/apis/apps/v1/namespaces/{namespace}/deployments/{SERVICE}/scale",
            body={"spec": {"replicas": 1}},
            content_type="application/merge-patch+json",
        )
        assert status == 200, body

        async def one_left() -> bool:
            seen[:] = await pods(control_plane, namespace)
            return len(seen) == 1 and is_ready(seen[0]) and fleet.size == 1 and fleet.draining == 0

        await wait_for(one_left, timeout=60, interval=0.3, what="one pod and one replica left")
        assert fleet.replicas[0].name == seen[0]["metadata"]["name"]
