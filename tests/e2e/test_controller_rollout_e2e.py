"""Blue-green model changes on the local control plane, under load, with real pods becoming Ready.

kube-scheduler places the server pods on kwok GPU nodes, kwok makes them Running and Ready, and
simulated replicas follow those pods, each answering with the model its pod was told to serve
(``x-model-id``). The front in front of them routes as a Service does: only to ready replicas
whose labels include the live Service's selector, re-read every 0.1 s (kube-proxy follows a
selector change through EndpointSlices in about as long). Clients send requests all along.

- A model change: the controller starts the candidate beside the serving Deployment and switches
  the Service once every candidate pod is Ready. No request fails, and no request sent after the
  front saw the switch is answered by the old model; the old Deployment goes after its grace period.
- A candidate that cannot start (a new image that does not exist: ``ImagePullBackOff``; or more
  GPUs per pod than a node has: ``Insufficient nvidia.com/gpu``): the Service stays on the old
  model, one Warning says why, nothing is deleted, and reverting the edit removes the candidate
  without touching the serving pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client as k8s_client

from tests.e2e.conftest import GpuNodes
from tests.e2e.controller_harness import (
    events_for,
    install_controller_rbac,
    run_controller,
    service_configmap,
    status_of,
)
from tgi_autoscaler.config.constants import LABEL_MODEL_HASH
from tgi_autoscaler.config.service import parse_service_yaml
from tgi_autoscaler.controller.discovery import AutoscalerMode
from tgi_autoscaler.kube.client import ApiKubeClient
from tgi_autoscaler.kube.resources import CONFIGMAP, DEPLOYMENT, SERVICE
from tgi_autoscaler.render import KedaOptions
from tgi_autoscaler.render.rollout import candidate_name, model_hash
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane
from tgi_autoscaler_dev.localstack.kwok import UNPULLABLE_IMAGE, GpuNodePool
from tgi_autoscaler_dev.localstack.process import wait_for
from tgi_autoscaler_dev.sim.fleet import Fleet
from tgi_autoscaler_dev.sim.follow import following_pods
from tgi_autoscaler_dev.sim.model import ReplicaConfig
from tgi_autoscaler_dev.sim.server import MODEL_HEADER

pytestmark = pytest.mark.e2e

NAME = "llm"
OLD_MODEL, NEW_MODEL = "org/model-a", "org/model-b"


def spec(
    pool: GpuNodePool,
    model: str,
    *,
    extra: str = "",
    ready_timeout_s: int = 20,
    autoscaling: str = "  minReplicas: 2\n  maxReplicas: 2\n",
) -> str:
    tolerations = "".join(
        f"\n  - {{key: {t['key']}, operator: {t['operator']}, effect: {t['effect']}"
        + (f", value: {t['value']}" if "value" in t else "")
        + "}"
        for t in pool.tolerations
    )
    ((label, value),) = pool.node_selector.items()
    return (
        f"model:\n  id: {model}\n"
        f"autoscaling:\n{autoscaling}"
        f"rollout:\n  readyTimeoutSeconds: {ready_timeout_s}\n  gracePeriodSeconds: 10\n"
        f"scheduling:\n  nodeSelector: {{{label}: {value}}}\n  tolerations:{tolerations}\n" + extra
    )


@dataclass
class Answer:
    sent: float
    model: str | None = None
    error: str | None = None


@dataclass
class Traffic:
    answers: list[Answer] = field(default_factory=list)
    switched_at: float | None = None  # when the front first routed to the new model's pods


@contextlib.asynccontextmanager
async def service_front(
    fleet: Fleet, admin: ApiKubeClient, namespace: str, new_hash: str, *, users: int = 4
) -> AsyncIterator[Traffic]:
    """Route the fleet as the live Service selects, and send closed-loop requests through it."""
    traffic = Traffic()
    clock = asyncio.get_running_loop().time

    async def follow_selector() -> None:
        while True:
            service = await admin.get(SERVICE, namespace, NAME)
            selector = ((service or {}).get("spec") or {}).get("selector")
            if selector:
                fleet.route_to(selector)
                if selector.get(LABEL_MODEL_HASH) == new_hash and traffic.switched_at is None:
                    traffic.switched_at = clock()
            await asyncio.sleep(0.1)

    async def user(session: aiohttp.ClientSession) -> None:
        payload = {"inputs": "hello", "parameters": {"max_new_tokens": 5}}
        while True:
            answer = Answer(sent=clock())
            try:
                async with session.post(f"{fleet.url}/generate", json=payload) as resp:
                    await resp.read()
                    answer.model = resp.headers.get(MODEL_HEADER)
                    if resp.status != 200:
                        answer.error = f"HTTP {resp.status}"
            except aiohttp.ClientError as exc:
                answer.error = repr(exc)
            traffic.answers.append(answer)
            await asyncio.sleep(0.02)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        tasks = [asyncio.create_task(follow_selector(), name="follow-service-selector")]
        tasks += [asyncio.create_task(user(session), name=f"user-{i}") for i in range(users)]
        try:
            yield traffic
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _deployment(admin: ApiKubeClient, namespace: str, name: str) -> dict[str, Any] | None:
    return await admin.get(DEPLOYMENT, namespace, name)


async def _ready_pods(admin: ApiKubeClient, namespace: str, name: str) -> int:
    deployment = await _deployment(admin, namespace, name)
    return int(((deployment or {}).get("status") or {}).get("readyReplicas") or 0)


async def _edit(admin: ApiKubeClient, namespace: str, text: str) -> None:
    await admin.merge_patch(CONFIGMAP, namespace, NAME, {"data": {"service.yaml": text}}, field_manager="e2e")


@contextlib.asynccontextmanager
async def serving_service(
    control_plane: ControlPlane,
    admin: ApiKubeClient,
    namespace: str,
    first_spec: str,
    *,
    pods: int = 2,
    config: ReplicaConfig | None = None,
    file_sd_dir: Path | None = None,
    autoscaler: AutoscalerMode = "hpa",
    keda: KedaOptions | None = None,
) -> AsyncIterator[Fleet]:
    """The controller, and simulated replicas following the service's pods, once ``pods`` serve.

    ``file_sd_dir``: publish the replicas to that Prometheus (the KEDA backend scales on them).
    """
    kubeconfig = await install_controller_rbac(control_plane)
    config = config or ReplicaConfig(max_batch_size=8, token_rate=200.0)
    async with (
        run_controller(kubeconfig, namespaces=(namespace,), autoscaler=autoscaler, keda=keda),
        Fleet(NAME, namespace=namespace, replicas=0, config=config, file_sd_dir=file_sd_dir) as fleet,
        following_pods(
            fleet,
            kubeconfig=control_plane.kubeconfig,
            label_selector=f"app.kubernetes.io/instance={NAME},app.kubernetes.io/component=server",
        ),
    ):
        await admin.create(CONFIGMAP, namespace, service_configmap(NAME, namespace, first_spec))

        async def serving() -> bool:
            return await _ready_pods(admin, namespace, NAME) == pods and fleet.serving == pods

        await wait_for(serving, timeout=90, interval=0.2, what=f"the first Deployment's {pods} pods to serve")
        yield fleet


@pytest.mark.timeout(300)
async def test_a_model_change_switches_under_load_with_no_failed_request_and_no_old_answer_after(
    control_plane: ControlPlane, kube_api: k8s_client.ApiClient, gpu_nodes: GpuNodes, namespace: str
) -> None:
    admin = ApiKubeClient(kube_api)
    pool = await gpu_nodes(count=1, gpus_per_node=4)  # room for both Deployments, 2 pods each
    new_spec = spec(pool, NEW_MODEL)
    new_hash = model_hash(parse_service_yaml(new_spec, source="test"))
    candidate = candidate_name(NAME, new_hash)
    async with serving_service(control_plane, admin, namespace, spec(pool, OLD_MODEL)) as fleet:
        async with service_front(fleet, admin, namespace, new_hash) as traffic:
            await asyncio.sleep(2)
            edited = asyncio.get_running_loop().time()
            await _edit(admin, namespace, new_spec)

            async def switched() -> bool:
                return traffic.switched_at is not None

            await wait_for(switched, timeout=90, interval=0.1, what="the Service to switch to the candidate")
            assert await _ready_pods(admin, namespace, candidate) == 2, "switched before every pod was Ready"
            await asyncio.sleep(3)  # load on the new model

        assert traffic.switched_at is not None
        failed = [a for a in traffic.answers if a.error is not None]
        assert not failed, f"{len(failed)} of {len(traffic.answers)} requests failed: {failed[:3]}"
        before = {a.model for a in traffic.answers if a.sent < edited}
        assert before == {OLD_MODEL}
        after = [a for a in traffic.answers if a.sent > traffic.switched_at]
        assert after, "no request after the switch"
        assert {a.model for a in after} == {NEW_MODEL}, "the old model answered after the switch"
        print(
            f"switch {traffic.switched_at - edited:.1f}s after the edit; {len(traffic.answers)} requests, "
            f"{len(after)} after the switch, 0 failed"
        )

        hpa = await admin.get_path(
            f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers/{NAME}"
        )
        assert (hpa or {})["spec"]["scaleTargetRef"]["name"] == candidate
        status = await status_of(admin, namespace, NAME)
        assert status is not None
        assert status["servingDeployment"] == candidate
        reasons = {e["reason"] for e in await events_for(admin, namespace, NAME)}
        assert {"RolloutStarted", "Switched"} <= reasons

        async def old_deleted() -> bool:
            return await _deployment(admin, namespace, NAME) is None

        await wait_for(
            old_deleted, timeout=60, interval=0.5, what="the previous Deployment to go after its grace"
        )
        stable = await status_of(admin, namespace, NAME)
        assert stable is not None
        assert stable["rolloutPhase"] == "Stable"


BROKEN = {
    # The new image does not exist: the pods stay Pending in ImagePullBackOff.
    "broken image": (OLD_MODEL, f"engine:\n  image: {UNPULLABLE_IMAGE}\n"),
    # Four GPUs per pod on three-GPU nodes: the scheduler reports Insufficient nvidia.com/gpu.
    "insufficient GPU": (NEW_MODEL, "engine:\n  numShard: 4\nresources:\n  gpu: 4\n"),
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("why", list(BROKEN))
async def test_a_candidate_that_cannot_start_keeps_the_old_model_serving_and_a_revert_removes_it(
    control_plane: ControlPlane,
    kube_api: k8s_client.ApiClient,
    gpu_nodes: GpuNodes,
    namespace: str,
    why: str,
) -> None:
    admin = ApiKubeClient(kube_api)
    pool = await gpu_nodes(count=1, gpus_per_node=3)
    old_spec = spec(pool, OLD_MODEL)
    model, change = BROKEN[why]
    broken = spec(pool, model, extra=change)
    new_hash = model_hash(parse_service_yaml(broken, source="test"))
    candidate = candidate_name(NAME, new_hash)
    async with serving_service(control_plane, admin, namespace, old_spec) as fleet:
        pods_before = {p.name for p in fleet.replicas}
        async with service_front(fleet, admin, namespace, new_hash) as traffic:
            started = time.monotonic()
            await _edit(admin, namespace, broken)

            async def failed() -> bool:
                status = await status_of(admin, namespace, NAME)
                return status is not None and status.get("rolloutPhase") == "Failed"

            await wait_for(failed, timeout=90, interval=0.5, what="the rollout to fail on its timeout")
            took = time.monotonic() - started
            assert await _deployment(admin, namespace, candidate) is not None, "kept for inspection"
            warnings = [e for e in await events_for(admin, namespace, NAME) if e["reason"] == "RolloutFailed"]
            assert len(warnings) == 1
            assert warnings[0]["type"] == "Warning"
            assert f"the Service stays on {NAME}" in warnings[0]["message"]

            await _edit(admin, namespace, old_spec)

            async def candidate_gone() -> bool:
                return await _deployment(admin, namespace, candidate) is None

            await wait_for(
                candidate_gone, timeout=60, interval=0.5, what="the revert to remove the candidate"
            )
            await asyncio.sleep(1)

        assert traffic.switched_at is None
        bad = [a for a in traffic.answers if a.error is not None or a.model != OLD_MODEL]
        assert traffic.answers
        assert not bad, (
            f"{len(bad)} of {len(traffic.answers)} requests failed or met the new model: {bad[:3]}"
        )
        assert {p.name for p in fleet.replicas} == pods_before, "the serving pods were restarted"
        reasons = {e["reason"] for e in await events_for(admin, namespace, NAME)}
        assert "RolloutAbandoned" in reasons
        status = await status_of(admin, namespace, NAME)
        assert status is not None
        assert status["rolloutPhase"] == "Stable"
        print(f"{why}: failed after {took:.1f}s; {len(traffic.answers)} requests, all by the old model")
