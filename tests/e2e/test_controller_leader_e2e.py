"""Two controller processes: only the Lease holder reconciles; killing it hands over to the standby;
SIGTERM releases the lease."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client as k8s_client

from tests.e2e.conftest import GpuNodes
from tests.e2e.controller_harness import (
    events_for,
    install_controller_rbac,
    install_operator_crds,
    service_configmap,
    status_of,
)
from tests.e2e.test_controller_rollout_e2e import NAME, NEW_MODEL, OLD_MODEL
from tests.e2e.test_controller_rollout_e2e import spec as rollout_spec
from tests.support.polling import eventually
from tgi_autoscaler.config.constants import ANNOTATION_ROLLOUT, LABEL_MODEL_HASH
from tgi_autoscaler.config.service import parse_service_yaml
from tgi_autoscaler.kube.client import ApiKubeClient
from tgi_autoscaler.kube.resources import CONFIGMAP, DEPLOYMENT, HPA, LEASE, SERVICE
from tgi_autoscaler.render.rollout import candidate_name, model_hash
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane
from tgi_autoscaler_dev.localstack.kwok import GpuNodePool, delete_gpu_nodes, gpu_node
from tgi_autoscaler_dev.localstack.process import free_port, wait_for

pytestmark = pytest.mark.e2e

LEASE_S, RENEW_S, RETRY_S = 6.0, 4.0, 1.0
LEASE_NS, LEASE_NAME = "tgi-autoscaler", "tgi-autoscaler-controller"
SPEC = """\
model:
  id: meta-llama/Llama-2-7b-chat-hf
autoscaling:
  signal: queue
  queue:
    targetPerReplica: 10
"""


class ControllerProcess:
    def __init__(self, identity: str, proc: asyncio.subprocess.Process, port: int, log: Path) -> None:
        self.identity = identity
        self.proc = proc
        self.port = port
        self.log = log

    async def metric(self, name: str) -> float:
        """Sum of the samples of ``name`` (0 when absent) from the process' /metrics."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"http://127.0.0.1:{self.port}/metrics", timeout=aiohttp.ClientTimeout(total=3)
            ) as resp,
        ):
            text = await resp.text()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and line[len(name)] in " {":
                total += float(line.rsplit(" ", 1)[1])
        return total

    async def ready(self) -> bool:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"http://127.0.0.1:{self.port}/readyz", timeout=aiohttp.ClientTimeout(total=3)
            ) as resp,
        ):
            return resp.status == 200


@pytest.fixture
async def spawn(
    control_plane: ControlPlane, kube_api: k8s_client.ApiClient, namespace: str, tmp_path: Path
) -> AsyncIterator[Callable[[str], asyncio.Future[ControllerProcess]]]:
    kubeconfig = await install_controller_rbac(control_plane)
    await install_operator_crds(control_plane)
    await ApiKubeClient(kube_api).delete(LEASE, LEASE_NS, LEASE_NAME)  # a clean slate
    started: list[ControllerProcess] = []

    async def start(identity: str) -> ControllerProcess:
        port = free_port()
        log = tmp_path / f"controller-{identity}.log"
        with log.open("wb") as sink:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tgi_autoscaler",
                "--log-format=json",
                "controller",
                f"--kubeconfig={kubeconfig}",
                f"--namespace={namespace}",
                f"--identity={identity}",
                f"--lease-namespace={LEASE_NS}",
                f"--lease-name={LEASE_NAME}",
                f"--metrics-bind=127.0.0.1:{port}",
                f"--lease-duration={LEASE_S}",
                f"--renew-deadline={RENEW_S}",
                f"--retry-period={RETRY_S}",
                "--shutdown-grace=10",
                stdout=sink,
                stderr=sink,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        process = ControllerProcess(identity, proc, port, log)
        started.append(process)
        await wait_for(process.ready, timeout=60, what=f"controller {identity} to become ready")
        return process

    def spawner(identity: str) -> asyncio.Future[ControllerProcess]:
        return asyncio.ensure_future(start(identity))

    try:
        yield spawner
    finally:
        for process in started:
            if process.proc.returncode is None:
                process.proc.kill()
            with contextlib.suppress(ProcessLookupError):
                await process.proc.wait()


async def _holder(admin: ApiKubeClient) -> str | None:
    lease = await admin.get(LEASE, LEASE_NS, LEASE_NAME)
    return None if lease is None else str(lease["spec"].get("holderIdentity") or "")


async def test_only_the_leader_reconciles_and_the_standby_takes_over_when_it_dies(
    spawn: Callable[[str], asyncio.Future[ControllerProcess]], kube_api: k8s_client.ApiClient, namespace: str
) -> None:
    admin = ApiKubeClient(kube_api)
    first = await spawn("a")

    async def a_leads() -> bool:
        return await _holder(admin) == "a"

    await wait_for(a_leads, timeout=20, what="the first controller to acquire the lease")
    second = await spawn("b")
    await admin.create(CONFIGMAP, namespace, service_configmap("svc", namespace, SPEC))

    async def ready() -> bool:
        status = await status_of(admin, namespace, "svc")
        return status is not None and status["phase"] == "Ready"

    await wait_for(ready, timeout=60, what="the leader to apply the service")
    assert await first.metric("tgi_autoscaler_controller_leader") == 1
    assert await second.metric("tgi_autoscaler_controller_leader") == 0
    # The reconcile is counted when it returns, after the status write and its events: wait for it.
    await eventually(
        lambda: first.metric("tgi_autoscaler_controller_reconciles_total"),
        lambda count: count >= 1,
        timeout=10,
        what="the leader to count its reconcile",
    )
    assert await second.metric("tgi_autoscaler_controller_reconciles_total") == 0, "the standby reconciled"

    first.proc.kill()  # a crash: no lease release
    await first.proc.wait()
    killed_at = time.monotonic()
    await admin.merge_patch(
        CONFIGMAP,
        namespace,
        "svc",
        {"data": {"service.yaml": SPEC.replace("targetPerReplica: 10", "targetPerReplica: 3")}},
        field_manager="e2e",
    )

    async def b_applied_the_edit() -> bool:
        hpa = await admin.get(HPA, namespace, "svc")
        external = [m for m in (hpa or {}).get("spec", {}).get("metrics", []) if m["type"] == "External"]
        return bool(external) and external[0]["external"]["target"]["averageValue"] == "3"

    # Bound: lease duration + 2 retry periods for the takeover, plus time to reconcile.
    await wait_for(b_applied_the_edit, timeout=LEASE_S + 2 * RETRY_S + 20, what="the standby to take over")
    took = time.monotonic() - killed_at
    assert await _holder(admin) == "b"
    assert await second.metric("tgi_autoscaler_controller_leader") == 1
    print(f"takeover and reconcile {took:.1f}s after the leader was killed")


async def test_sigterm_finishes_and_releases_the_lease(
    spawn: Callable[[str], asyncio.Future[ControllerProcess]], kube_api: k8s_client.ApiClient
) -> None:
    admin = ApiKubeClient(kube_api)
    only = await spawn("solo")

    async def leads() -> bool:
        return await _holder(admin) == "solo"

    await wait_for(leads, timeout=20, what="the controller to acquire the lease")
    only.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(only.proc.wait(), 30) == 0
    assert await _holder(admin) == "", "the lease was not released on SIGTERM"
    log = only.log.read_text()
    assert '"leader.released"' in log
    assert '"controller.stopped"' in log


@pytest.mark.timeout(300)
async def test_killing_the_leader_mid_rollout_lets_the_standby_resume_and_switch(
    spawn: Callable[[str], asyncio.Future[ControllerProcess]],
    kube_api: k8s_client.ApiClient,
    control_plane: ControlPlane,
    gpu_nodes: GpuNodes,
    namespace: str,
) -> None:
    """The rollout's state lives in the cluster: a new leader continues the same rollout."""
    admin = ApiKubeClient(kube_api)
    pool = await gpu_nodes(count=1, gpus_per_node=2)  # the serving pods take every GPU
    first = await spawn("a")

    async def a_leads() -> bool:
        return await _holder(admin) == "a"

    await wait_for(a_leads, timeout=20, what="the first controller to acquire the lease")
    standby = await spawn("b")
    # A timeout longer than the test: the rollout must still be Progressing when the standby leads.
    old_spec = rollout_spec(pool, OLD_MODEL, ready_timeout_s=300)
    await admin.create(CONFIGMAP, namespace, service_configmap(NAME, namespace, old_spec))

    async def serving() -> bool:
        deployment = await admin.get(DEPLOYMENT, namespace, NAME)
        return ((deployment or {}).get("status") or {}).get("readyReplicas") == 2

    await wait_for(serving, timeout=90, interval=0.5, what="the first Deployment's pods to be Ready")
    new_spec = rollout_spec(pool, NEW_MODEL, ready_timeout_s=300)
    candidate = candidate_name(NAME, model_hash(parse_service_yaml(new_spec, source="test")))
    await admin.merge_patch(
        CONFIGMAP, namespace, NAME, {"data": {"service.yaml": new_spec}}, field_manager="e2e"
    )

    async def state() -> dict[str, Any]:
        service = await admin.get(SERVICE, namespace, NAME)
        raw = ((service or {}).get("metadata", {}).get("annotations") or {}).get(ANNOTATION_ROLLOUT)
        return dict(json.loads(raw)) if raw else {}

    async def progressing() -> bool:
        return (await state()).get("candidate") == candidate

    await wait_for(progressing, timeout=30, interval=0.2, what="the leader to start the candidate")
    started_at = (await state())["started_at"]
    first.proc.kill()  # mid-rollout, the candidate's pods Pending for want of a GPU
    await first.proc.wait()

    async def b_resumed() -> bool:
        # b leads and has reconciled the rollout: the state says so with a later wait, same start.
        current = await state()
        return (
            await _holder(admin) == "b"
            and current.get("message", "") != ""
            and (current.get("started_at") == started_at and "after 0s" not in current["message"])
        )

    await wait_for(b_resumed, timeout=LEASE_S + 2 * RETRY_S + 30, interval=0.5, what="the standby to resume")
    assert (await state())["phase"] == "Progressing"
    # A GPU node joins: the candidate's pods schedule, turn Ready, and the new leader switches.
    bigger = GpuNodePool(name=pool.name, count=2, gpus_per_node=2, dedicated=True)
    status, body = await control_plane.request("POST", "/api/v1/nodes", body=gpu_node(bigger, 1))
    assert status == 201, body
    try:

        async def switched() -> bool:
            return (await state()).get("serving") == candidate

        await wait_for(switched, timeout=90, interval=0.5, what="the new leader to switch the Service")
        service = await admin.get(SERVICE, namespace, NAME)
        assert service is not None
        assert service["spec"]["selector"][LABEL_MODEL_HASH] == candidate.removeprefix(f"{NAME}-")
        events = await events_for(admin, namespace, NAME)
        switches = [e for e in events if e["reason"] == "Switched"]
        assert [e.get("reportingInstance") for e in switches] == ["b"]
        assert len([e for e in events if e["reason"] == "RolloutStarted"]) == 1, "the rollout was restarted"
        # What the dashboard marks the switch by.
        assert await standby.metric("tgi_autoscaler_controller_rollout_switch_timestamp_seconds") > 0
    finally:
        await delete_gpu_nodes(control_plane, bigger)
