"""Scale to zero against the real HPA (Kubernetes v1.37, HPAScaleToZero beta, on by default).

The controller renders the service (``minReplicas: 0``) into the real API server; the HPA scales
it on the held-demand signal, read from Prometheus by the adapter. There is no kubelet, so the
simulated replicas follow the Deployment's replica count (each loads for a few seconds before it
serves), and the activator runs as a local process in front of the fleet's front (the Service).

One story, in order: the service idles to zero only after the idle window; a Prometheus outage at
zero neither wakes it nor disturbs it; a burst at zero is held (the excess refused with 503 and
``Retry-After``), the HPA scales up from zero, and every held request is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.conftest import register_component
from tests.e2e.conftest import ADAPTER_NAMESPACE, METRICS_CONFIGMAP, RunningAdapter
from tests.e2e.controller_harness import (
    events_for,
    install_controller_rbac,
    run_controller,
    service_configmap,
    status_of,
)
from tgi_autoscaler.engines import ENGINES, EngineKind
from tgi_autoscaler.kube.client import ApiKubeClient
from tgi_autoscaler.kube.connect import load_api_client
from tgi_autoscaler.kube.resources import CONFIGMAP, DEPLOYMENT, HPA
from tgi_autoscaler.signals import DemandSignal
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane, ControlPlaneSettings
from tgi_autoscaler_dev.localstack.process import ManagedProcess, background, free_port, wait_for
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer
from tgi_autoscaler_dev.sim.filesd import remove_file_sd, write_file_sd
from tgi_autoscaler_dev.sim.fleet import Fleet
from tgi_autoscaler_dev.sim.model import ReplicaConfig
from tgi_autoscaler_dev.sim.pods import target_group

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SERVICE = "idle"
METRIC = "e2e_held_demand"
IDLE_S = 8
MAX_HELD = 6
LOAD_S = 4.0  # the simulated model load of a new replica
# The demand signal with the test's compressed time constants (10 s instead of 60 s).
SIGNAL = DemandSignal(rate_window_s=10, drain_s=10)
SPEC = f"""\
model: {{id: sim/model}}
autoscaling:
  minReplicas: 0
  maxReplicas: 3
  demand: {{metric: {METRIC}, targetPerReplica: 0.5}}
  scaleToZero: {{idleAfterSeconds: {IDLE_S}, maxHeldRequests: {MAX_HELD}, maxWaitSeconds: 120}}
  scaleDown:
    stabilizationWindowSeconds: 3
    policies: [{{type: Percent, value: 100, periodSeconds: 1}}]
"""


@contextlib.asynccontextmanager
async def held_demand_served(control_plane: ControlPlane) -> AsyncIterator[None]:
    """The test's held-demand definition added to the adapter's ConfigMap, removed afterwards."""
    path = f"/api/v1/namespaces/{ADAPTER_NAMESPACE}/configmaps/{METRICS_CONFIGMAP}"
    status, original = await control_plane.request("GET", path)
    assert status == 200, original
    document = yaml.safe_load(original["data"]["metrics.yaml"])
    query = SIGNAL.promql_with_held(ENGINES[EngineKind.TGI].counters)
    document["metrics"] = [*document.get("metrics", []), {"name": METRIC, "query": query}]
    patch = {"data": {"metrics.yaml": yaml.safe_dump(document)}}
    status, body = await control_plane.request(
        "PATCH", path, body=patch, content_type="application/merge-patch+json"
    )
    assert status == 200, body
    try:
        yield
    finally:
        restore = {"data": {"metrics.yaml": original["data"]["metrics.yaml"]}}
        await control_plane.request("PATCH", path, body=restore, content_type="application/merge-patch+json")


@contextlib.asynccontextmanager
async def activator_process(
    upstream: str, namespace: str, prometheus: PrometheusServer, workdir: Path, config: pytest.Config
) -> AsyncIterator[str]:
    """``tgi-autoscaler activator`` in front of ``upstream``, scraped with the service's labels."""
    port, metrics_port = free_port(), free_port()
    process = ManagedProcess(
        name="tgi-autoscaler-activator",
        argv=[
            sys.executable,
            "-m",
            "tgi_autoscaler",
            "--log-format=json",
            "activator",
            f"--upstream={upstream}",
            "--bind-address=127.0.0.1",
            f"--port={port}",
            f"--metrics-port={metrics_port}",
            f"--max-held={MAX_HELD}",
            "--max-wait=120",
            f"--idle-after={IDLE_S}",
            "--retry-after=5",
            "--probe-interval=0.25",
        ],
        log_path=workdir / "activator.log",
        cwd=REPO,
    )
    register_component(config, process)
    await process.start()
    sd = prometheus.file_sd_dir / f"{namespace}_activator.json"
    try:

        async def ready() -> bool:
            try:
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(f"http://127.0.0.1:{metrics_port}/healthz") as resp,
                ):
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await process.wait_ready(ready, timeout=30)
        labels = {"namespace": namespace, "app_kubernetes_io_instance": SERVICE, "pod": "idle-activator-0"}
        write_file_sd(sd, [target_group(f"127.0.0.1:{metrics_port}", labels)])
        yield f"http://127.0.0.1:{port}"
    finally:
        remove_file_sd(sd)
        await process.stop()


class Cluster:
    def __init__(self, admin: ApiKubeClient, namespace: str) -> None:
        self.admin = admin
        self.namespace = namespace
        self.seen: list[tuple[float, int]] = []

    async def replicas(self) -> int:
        deployment = await self.admin.get(DEPLOYMENT, self.namespace, SERVICE)
        assert deployment is not None
        return int(deployment["spec"].get("replicas", 1))

    async def condition(self, kind: str) -> dict[str, Any] | None:
        hpa = await self.admin.get(HPA, self.namespace, SERVICE)
        assert hpa is not None
        conditions = hpa.get("status", {}).get("conditions", [])
        return next((c for c in conditions if c["type"] == kind), None)

    async def follow(self, fleet: Fleet) -> None:
        """Keep the simulated replicas at the Deployment's count (what kubelets would do)."""
        while True:
            want = await self.replicas()
            self.seen.append((time.monotonic(), want))
            if want != fleet.size:
                await fleet.scale_to(want)
            await asyncio.sleep(0.25)


async def generate(session: aiohttp.ClientSession, url: str) -> tuple[int, str | None, float]:
    started = time.monotonic()
    body = {"inputs": "hello", "parameters": {"max_new_tokens": 5}}
    async with session.post(f"{url}/generate", json=body) as resp:
        await resp.read()
        return resp.status, resp.headers.get("Retry-After"), time.monotonic() - started


@pytest.fixture
async def admin(control_plane: ControlPlane) -> AsyncIterator[ApiKubeClient]:
    api = await load_api_client(str(control_plane.kubeconfig))
    try:
        yield ApiKubeClient(api)
    finally:
        await api.close()


@pytest.mark.timeout(600)
async def test_idles_to_zero_holds_a_burst_wakes_and_answers_every_held_request(
    adapter: RunningAdapter,
    control_plane: ControlPlane,
    running_prometheus: PrometheusServer,
    admin: ApiKubeClient,
    namespace: str,
    stack_dir: Path,
    pytestconfig: pytest.Config,
) -> None:
    prometheus = running_prometheus
    settings = control_plane.settings
    kubeconfig = await install_controller_rbac(control_plane)
    cluster = Cluster(admin, namespace)
    config = ReplicaConfig(max_batch_size=8, token_rate=50.0, prefill_time_s=0.01)
    workdir = stack_dir / f"scale-to-zero-{namespace}"
    workdir.mkdir(parents=True, exist_ok=True)
    async with (
        held_demand_served(control_plane),
        run_controller(kubeconfig, namespaces=(namespace,)),
        Fleet(
            SERVICE,
            namespace=namespace,
            replicas=0,
            config=config,
            file_sd_dir=prometheus.file_sd_dir,
            start_delay_s=LOAD_S,
        ) as fleet,
        activator_process(fleet.url, namespace, prometheus, workdir, pytestconfig) as activator,
        aiohttp.ClientSession() as session,
    ):
        await admin.create(CONFIGMAP, namespace, service_configmap(SERVICE, namespace, SPEC))

        async def applied() -> bool:
            status = await status_of(admin, namespace, SERVICE)
            return status is not None and status["phase"] == "Ready"

        await wait_for(applied, timeout=60, what="the service applied (minReplicas 0 accepted)")
        hpa = await admin.get(HPA, namespace, SERVICE)
        assert hpa is not None
        assert hpa["spec"]["minReplicas"] == 0

        async with background(cluster.follow(fleet), "follow-deployment"):
            # A little traffic through the activator (held while the first replica loads, or while
            # the HPA brings it back if it already let an untouched service go), then silence.
            last_request = time.monotonic()  # the activator's idle window starts at or after this
            answers = await asyncio.wait_for(
                asyncio.gather(*(generate(session, activator) for _ in range(3))), timeout=120
            )
            assert [a[0] for a in answers] == [200, 200, 200]

            async def at_zero() -> bool:
                return await cluster.replicas() == 0

            await wait_for(
                at_zero, timeout=120, interval=0.25, what="the HPA to scale the idle service to zero"
            )
            idle_for = time.monotonic() - last_request
            # Never before the idle window has passed (a lower bound: slowness cannot break it).
            assert idle_for >= IDLE_S, f"scaled to zero {idle_for:.1f} s after the last request"
            scaled = await cluster.condition("ScaledToZero")
            assert scaled is not None
            assert scaled["status"] == "True"

            async def fleet_gone() -> bool:
                return fleet.size == 0 and fleet.draining == 0

            await wait_for(fleet_gone, timeout=30, what="the replicas to go away")

            # Prometheus goes away at zero: the HPA cannot read the signal and must do nothing.
            await prometheus.stop()
            try:

                async def metric_failing() -> bool:
                    condition = await cluster.condition("ScalingActive")
                    return condition is not None and condition["reason"] == "FailedGetExternalMetric"

                await wait_for(
                    metric_failing, timeout=60, interval=0.5, what="the HPA to see the metric fail"
                )
                observed = await _watch(
                    cluster, settings.hpa_downscale_stabilization_s + 3 * settings.hpa_sync_period_s
                )
                assert set(observed) == {0}, f"replicas changed during the outage: {observed}"
                after_outage = await cluster.condition("ScaledToZero")
                assert after_outage is not None
                assert after_outage["status"] == "True"  # still able to wake from zero
            finally:
                await prometheus.start()

            async def metric_back() -> bool:
                condition = await cluster.condition("ScalingActive")
                return condition is not None and condition["status"] == "True"

            await wait_for(metric_back, timeout=60, interval=0.5, what="the HPA to read the signal again")
            observed = await _watch(cluster, 3 * settings.hpa_sync_period_s)
            assert set(observed) == {0}, f"woke without a request after the outage: {observed}"

            # A burst at zero: MAX_HELD are held, the rest refused at once with Retry-After.
            burst_at = time.monotonic()
            burst = [asyncio.create_task(generate(session, activator)) for _ in range(MAX_HELD + 3)]
            results = await asyncio.wait_for(asyncio.gather(*burst), timeout=240)
            statuses = sorted(r[0] for r in results)
            assert statuses == [200] * MAX_HELD + [503] * 3, statuses
            assert {r[1] for r in results if r[0] == 503} == {"5"}
            slowest = max(r[2] for r in results if r[0] == 200)
            woke = [n for t, n in cluster.seen if t >= burst_at]
            print(f"burst at zero: {MAX_HELD} held, all answered; slowest {slowest:.1f} s; peak {max(woke)}")
            # Six held requests drained over 10 s are 0.6 requests/s: two replicas at 0.5 each.
            assert max(woke) >= 2, f"the HPA woke to {max(woke)} replicas for {MAX_HELD} held requests"


async def _watch(cluster: Cluster, seconds: float) -> list[int]:
    observed: list[int] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        observed.append(await cluster.replicas())
        await asyncio.sleep(0.5)
    return observed


@pytest.mark.timeout(300)
async def test_an_api_server_without_native_scale_to_zero_gets_a_clear_error_not_a_silent_one(
    stack_dir: Path, pytestconfig: pytest.Config
) -> None:
    # The same v1.37 binaries with the beta gate switched off: kube-apiserver refuses minReplicas 0.
    cp = ControlPlane(
        stack_dir / "control-plane-no-scale-to-zero",
        settings=ControlPlaneSettings(feature_gates=("HPAScaleToZero=false",)),
    )
    try:
        await cp.start()
    finally:
        for process in cp.processes:
            register_component(pytestconfig, process)
    try:
        kubeconfig = await install_controller_rbac(cp)
        api = await load_api_client(str(cp.kubeconfig))
        try:
            admin = ApiKubeClient(api)
            namespace = "no-zero"
            (await cp.kubectl("create", "namespace", namespace)).check()
            async with run_controller(kubeconfig, namespaces=(namespace,)):
                await admin.create(CONFIGMAP, namespace, service_configmap(SERVICE, namespace, SPEC))
                await admin.create(
                    CONFIGMAP, namespace, service_configmap("one", namespace, "model: {id: m}\n")
                )
                found: dict[str, Any] = {}

                async def invalid() -> bool:
                    status = await status_of(admin, namespace, SERVICE)
                    found.update(status or {})
                    return status is not None and status["phase"] == "Invalid"

                await wait_for(invalid, timeout=60, what="the scale-to-zero service reported Invalid")
                message = found["message"]
                assert message.startswith("autoscaling.minReplicas: 0 needs the HPA's native scale to zero")
                assert "v1.37.2" in message
                assert "switched off" in message
                # Nothing was applied in its place: no HPA with minReplicas 1, no Deployment.
                assert await admin.get(HPA, namespace, SERVICE) is None
                assert await admin.get(DEPLOYMENT, namespace, SERVICE) is None
                reasons = {e["reason"] for e in await events_for(admin, namespace, SERVICE)}
                assert "ScaleToZeroUnsupported" in reasons

                async def one_ready() -> bool:
                    status = await status_of(admin, namespace, "one")
                    return status is not None and status["phase"] == "Ready"

                # A service with minReplicas 1 on the same cluster is applied as ever.
                await wait_for(one_ready, timeout=60, what="the minReplicas 1 service applied")
        finally:
            await api.close()
    finally:
        await cp.stop()
