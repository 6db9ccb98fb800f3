"""The whole loop: the real HPA controller scales a Deployment on the simulated TGI queue via the adapter.

The Deployment's pods run on kwok GPU nodes (scheduled by kube-scheduler, Running and Ready by
kwok), and simulated replicas follow those pods: a fleet that the HPA controls through the real
Deployment and ReplicaSet. The control plane runs the HPA controller with a short sync period and
downscale stabilization window, so the test observes in seconds what a cluster does in minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import GpuNodes, RunningAdapter
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane
from tgi_autoscaler_dev.localstack.kwok import GPU_RESOURCE, GpuNodePool
from tgi_autoscaler_dev.localstack.process import wait_for
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer
from tgi_autoscaler_dev.sim.fleet import Fleet
from tgi_autoscaler_dev.sim.follow import following_pods
from tgi_autoscaler_dev.sim.model import ReplicaConfig
from tgi_autoscaler_dev.sim.pods import pod_labels

pytestmark = pytest.mark.e2e

SERVICE = "llama"
MAX_REPLICAS = 4


def deployment(namespace: str, pool: GpuNodePool) -> dict[str, Any]:
    labels = pod_labels(SERVICE)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": SERVICE, "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": pool.node_selector,
                    "tolerations": pool.tolerations,
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


def hpa(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": SERVICE, "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": SERVICE},
            "minReplicas": 1,
            "maxReplicas": MAX_REPLICAS,
            "metrics": [
                {
                    "type": "External",
                    "external": {
                        "metric": {
                            "name": "tgi_queue_size",
                            "selector": {"matchLabels": {"app.kubernetes.io/instance": SERVICE}},
                        },
                        "target": {"type": "AverageValue", "averageValue": "2"},
                    },
                }
            ],
        },
    }


class Cluster:
    """Reads of the test's Deployment and HPA."""

    def __init__(self, control_plane: ControlPlane, namespace: str) -> None:
        self.cp = control_plane
        self.namespace = namespace

    async def replicas(self) -> int:
        status, body = await self.cp.request(
            "GET", f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{SERVICE}"
        )
        assert status == 200, body
        return int(body["spec"]["replicas"])

    async def hpa_condition(self, kind: str) -> dict[str, Any] | None:
        status, body = await self.cp.request(
            "GET", f"/apis/autoscaling/v2/namespaces/{self.namespace}/horizontalpodautoscalers/{SERVICE}"
        )
        assert status == 200, body
        conditions = body.get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == kind), None)


@contextlib.asynccontextmanager
async def closed_loop_load(url: str, clients: int, *, max_new_tokens: int) -> AsyncIterator[None]:
    """``clients`` users each sending one request after another until the block exits."""
    async with aiohttp.ClientSession() as session:

        async def user() -> None:
            payload = {"inputs": "hello", "parameters": {"max_new_tokens": max_new_tokens}}
            while True:
                try:
                    async with session.post(f"{url}/generate", json=payload) as resp:
                        await resp.read()
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)  # a replica going away mid-request; try the next one

        tasks = [asyncio.create_task(user(), name=f"user-{i}") for i in range(clients)]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.timeout(600)
async def test_hpa_scales_up_on_queue_holds_through_a_prometheus_outage_then_scales_down(
    adapter: RunningAdapter,
    control_plane: ControlPlane,
    prometheus: PrometheusServer,
    gpu_nodes: GpuNodes,
    namespace: str,
) -> None:
    settings = control_plane.settings
    cluster = Cluster(control_plane, namespace)
    pool = await gpu_nodes(count=2, gpus_per_node=MAX_REPLICAS // 2)
    for obj in (deployment(namespace, pool), hpa(namespace)):
        path = (
            f"/apis/apps/v1/namespaces/{namespace}/deployments"
            if obj["kind"] == "Deployment"
            else f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers"
        )
        status, body = await control_plane.request("POST", path, body=obj)
        assert status == 201, body

    # One sequence at a time, 2 s per request: 8 users keep about 8 - replicas requests waiting.
    config = ReplicaConfig(max_batch_size=1, token_rate=10.0)
    async with (
        Fleet(
            SERVICE, namespace=namespace, replicas=0, config=config, file_sd_dir=prometheus.file_sd_dir
        ) as fleet,
        following_pods(
            fleet, kubeconfig=control_plane.kubeconfig, label_selector=f"app.kubernetes.io/instance={SERVICE}"
        ),
    ):

        async def first_pod_serves() -> bool:
            return fleet.serving == 1

        await wait_for(first_pod_serves, timeout=60, interval=0.2, what="the first pod to be Ready")
        async with closed_loop_load(fleet.url, 8, max_new_tokens=20):

            async def scaled_up() -> bool:
                return await cluster.replicas() >= 3

            await wait_for(scaled_up, timeout=120, interval=0.5, what="the HPA to scale up on the queue")

            # Prometheus goes away while the load is still on, then the load ends: a fake zero from
            # the adapter would now scale the Deployment down once the stabilization window passed.
            await prometheus.stop()
        try:

            async def metric_failing() -> bool:
                condition = await cluster.hpa_condition("ScalingActive")
                return condition is not None and condition["reason"] == "FailedGetExternalMetric"

            await wait_for(metric_failing, timeout=60, interval=0.5, what="the HPA to see the metric fail")
            held = await cluster.replicas()
            # Watch for longer than the downscale stabilization window plus three HPA syncs.
            window = settings.hpa_downscale_stabilization_s + 3 * settings.hpa_sync_period_s
            observed: list[int] = []
            deadline = time.monotonic() + window
            while time.monotonic() < deadline:
                observed.append(await cluster.replicas())
                await asyncio.sleep(0.5)
            assert set(observed) == {held}, f"replicas changed during the outage: {observed}"
        finally:
            await prometheus.start()

        async def scaled_down() -> bool:
            return await cluster.replicas() == 1

        await wait_for(scaled_down, timeout=180, interval=0.5, what="the HPA to scale back to minReplicas")
        condition = await cluster.hpa_condition("ScalingActive")
        assert condition is not None
        assert condition["status"] == "True"
