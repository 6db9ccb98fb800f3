"""``tgi-autoscaler doctor`` on the local stack, with each link of the chain broken for real.

The stack is the real one: the controller turns a service ConfigMap into a Deployment, HPA,
PrometheusRule and dashboard; kube-scheduler places the pods on kwok GPU nodes, kwok runs them and
simulated servers follow them into Prometheus; the adapter serves the metric behind the aggregation
layer; kube-controller-manager's HPA reads it. Prometheus loads the PrometheusRule's groups from a
rule file, as the Prometheus Operator would. ``doctor`` runs as the command a user types, and each
test breaks one link (stopping a process, deleting or re-pointing an object, a spec asking for
what the nodes cannot give) and checks that it is the link ``doctor`` names first, with exit code 1,
and that it exits 0 again once the link is repaired.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import GpuNodes, RunningAdapter
from tests.e2e.controller_harness import (
    install_controller_rbac,
    install_operator_crds,
    run_controller,
    service_configmap,
)
from tgi_autoscaler.kube.client import ApiKubeClient
from tgi_autoscaler.kube.connect import load_api_client
from tgi_autoscaler.kube.resources import APISERVICE, CONFIGMAP, PROMETHEUSRULE
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane
from tgi_autoscaler_dev.localstack.kwok import POOL_LABEL, GpuNodePool
from tgi_autoscaler_dev.localstack.process import wait_for
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer
from tgi_autoscaler_dev.sim.fleet import Fleet
from tgi_autoscaler_dev.sim.follow import following_pods

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
SERVICE = "llama"
APISERVICE_NAME = "v1beta1.external.metrics.k8s.io"


def spec(
    pool: GpuNodePool, *, replicas: int = 1, queue_metric: str | None = None, tolerate: bool = True
) -> str:
    tolerations = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    if tolerate:
        tolerations.append({"key": POOL_LABEL, "operator": "Exists", "effect": "NoSchedule"})
    queue: dict[str, Any] = {"targetPerReplica": 50}
    if queue_metric is not None:
        queue["metric"] = queue_metric
    document = {
        "model": {"id": "meta-llama/Llama-2-7b-chat-hf"},
        "resources": {"gpu": 1, "cpuRequest": "1", "memoryRequest": "1Gi"},
        "scheduling": {
            "nodeSelector": pool.node_selector,
            "tolerations": tolerations,
            "terminationGracePeriodSeconds": 2,
        },
        "autoscaling": {
            "minReplicas": replicas,
            "maxReplicas": replicas + 1,
            "signal": "queue",
            "queue": queue,
        },
    }
    return yaml.safe_dump(document)


@dataclass
class Doctor:
    control_plane: ControlPlane
    prometheus: PrometheusServer
    namespace: str
    last: dict[str, Any] | None = None

    async def run(self) -> tuple[int, dict[str, Any]]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tgi_autoscaler",
            "--log-format=json",
            "doctor",
            SERVICE,
            f"--namespace={self.namespace}",
            f"--kubeconfig={self.control_plane.kubeconfig}",
            f"--prometheus-url={self.prometheus.url}",
            "--output=json",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=REPO,
        )
        out, err = await proc.communicate()
        assert proc.returncode is not None
        assert out, f"doctor printed nothing (exit {proc.returncode}): {err.decode()[-2000:]}"
        self.last = json.loads(out)
        return proc.returncode, self.last

    async def table(self) -> str:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tgi_autoscaler",
            "doctor",
            SERVICE,
            f"--namespace={self.namespace}",
            f"--kubeconfig={self.control_plane.kubeconfig}",
            f"--prometheus-url={self.prometheus.url}",
            stdout=asyncio.subprocess.PIPE,
            cwd=REPO,
        )
        out, _ = await proc.communicate()
        return out.decode()

    async def until(
        self, link: str | None, *, timeout: float = 90, seen_has: str | None = None
    ) -> dict[str, Any]:
        """Run doctor until it names ``link`` first and exits 1 (``None``: until it exits 0).

        ``seen_has``: also until that link's finding says it. A link can be broken on the way for
        another reason (a first pod Running but not Ready before the HPA raises the Deployment to
        minReplicas and the scheduler runs out of GPUs).
        """

        async def named() -> bool:
            code, report = await self.run()
            [service] = report["services"]
            if link is None:
                return code == 0 and service["firstBroken"] is None
            if code != 1 or service["firstBroken"] != link:
                return False
            if seen_has is None:
                return True
            finding = next(f for f in service["findings"] if f["link"] == link)
            return seen_has in finding["seen"]

        try:
            await wait_for(named, timeout=timeout, interval=1.0, what=f"doctor to name {link}")
        except TimeoutError:
            pytest.fail(f"doctor never named {link or 'no broken link'}; its last report: {self.last}")
        assert self.last is not None
        report = self.last
        # The table as a user sees it, in the test's output (docs/doctor.md shows these).
        print(f"\n$ tgi-autoscaler doctor {SERVICE} -n {self.namespace}\n{await self.table()}")
        return report

    def finding(self, link: str) -> dict[str, Any]:
        assert self.last is not None
        [service] = self.last["services"]
        found: dict[str, Any] = next(f for f in service["findings"] if f["link"] == link)
        return found


@dataclass
class Stack:
    doctor: Doctor
    admin: ApiKubeClient
    pool: GpuNodePool
    rules_path: Path


async def load_rules(admin: ApiKubeClient, prometheus: PrometheusServer, namespace: str, path: Path) -> None:
    """What the Prometheus Operator does with a selected PrometheusRule: its groups become a rule file."""

    async def applied() -> bool:
        return await admin.get(PROMETHEUSRULE, namespace, SERVICE) is not None

    await wait_for(applied, timeout=60, what="the controller to apply the PrometheusRule")
    rule = await admin.get(PROMETHEUSRULE, namespace, SERVICE)
    assert rule is not None
    await asyncio.to_thread(path.write_text, yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    await prometheus.set_rule_files([path])


@contextlib.asynccontextmanager
async def service_stack(
    control_plane: ControlPlane,
    prometheus: PrometheusServer,
    namespace: str,
    pool: GpuNodePool,
    workdir: Path,
    service_spec: str,
    *,
    operator: bool = False,
) -> AsyncIterator[Stack]:
    """The service running; with ``operator`` the Prometheus Operator's CRDs are installed first, so
    the controller renders a PrometheusRule (loaded into Prometheus whenever the API serves it)."""
    kubeconfig = await install_controller_rbac(control_plane)
    if operator:
        await install_operator_crds(control_plane)
    api = await load_api_client(control_plane.kubeconfig)
    admin = ApiKubeClient(api)
    try:
        async with (
            run_controller(kubeconfig, namespaces=(namespace,)),
            Fleet(SERVICE, namespace=namespace, replicas=0, file_sd_dir=prometheus.file_sd_dir) as fleet,
            following_pods(
                fleet,
                kubeconfig=control_plane.kubeconfig,
                label_selector=f"app.kubernetes.io/instance={SERVICE}",
            ),
        ):
            await admin.create(CONFIGMAP, namespace, service_configmap(SERVICE, namespace, service_spec))
            rules_path = workdir / f"{namespace}.rules.yml"
            if await admin.get_path("/apis/monitoring.coreos.com/v1") is not None:
                await load_rules(admin, prometheus, namespace, rules_path)
            try:
                yield Stack(Doctor(control_plane, prometheus, namespace), admin, pool, rules_path)
            finally:
                await prometheus.set_rule_files([])
    finally:
        await api.close()


@pytest.fixture
async def stack(
    control_plane: ControlPlane,
    adapter: RunningAdapter,
    running_prometheus: PrometheusServer,
    gpu_nodes: GpuNodes,
    namespace: str,
    tmp_path: Path,
) -> AsyncIterator[Stack]:
    pool = await gpu_nodes(count=2, gpus_per_node=1)
    async with service_stack(
        control_plane, running_prometheus, namespace, pool, tmp_path, spec(pool)
    ) as running:
        await running.doctor.until(None, timeout=120)
        yield running


@pytest.mark.timeout(420)
async def test_healthy_stack_exits_0_then_prometheus_and_the_adapter_stopped_are_named(
    stack: Stack, adapter: RunningAdapter, running_prometheus: PrometheusServer
) -> None:
    doctor = stack.doctor
    report = await doctor.until(None)
    assert report["exitCode"] == 0
    assert {f["status"] for f in report["services"][0]["findings"]} == {"ok"}
    assert "1 pods, 1 Running, 1 Ready" in doctor.finding("pods")["seen"]
    assert "healthy: every link checked is ok" in await doctor.table()

    # Prometheus stopped: the adapter answers 503 naming Prometheus; the HPA holds.
    await running_prometheus.stop()
    try:
        await doctor.until("prometheus")
        assert "the adapter cannot query Prometheus" in doctor.finding("prometheus")["seen"]
        assert doctor.finding("series")["status"] == "unknown"
    finally:
        await running_prometheus.start()
    await doctor.until(None)

    # The adapter stopped: kube-apiserver cannot reach it.
    await adapter.process.stop()
    try:
        await doctor.until("adapter")
        assert (
            "does not answer" in doctor.finding("adapter")["seen"]
            or "503" in doctor.finding("adapter")["seen"]
        )
    finally:
        await adapter.process.start()
    await doctor.until(None, timeout=120)


@pytest.mark.timeout(300)
async def test_a_rule_file_not_loaded_is_named(
    control_plane: ControlPlane,
    adapter: RunningAdapter,
    running_prometheus: PrometheusServer,
    gpu_nodes: GpuNodes,
    namespace: str,
    tmp_path: Path,
) -> None:
    """The PrometheusRule exists (the operator's CRDs are installed), Prometheus does not evaluate it."""
    pool = await gpu_nodes(count=1, gpus_per_node=1)
    async with service_stack(
        control_plane, running_prometheus, namespace, pool, tmp_path, spec(pool), operator=True
    ) as running:
        await running.doctor.until(None, timeout=120)
        assert "Prometheus evaluates the" in running.doctor.finding("rules")["seen"]
        await running_prometheus.set_rule_files([])
        await running.doctor.until("rules")
        assert "Prometheus does not evaluate" in running.doctor.finding("rules")["seen"]
        assert "ruleSelector" in running.doctor.finding("rules")["fix"]
        await running_prometheus.set_rule_files([running.rules_path])
        await running.doctor.until(None)


@pytest.mark.timeout(300)
async def test_apiservice_deleted_or_owned_by_keda_is_named(stack: Stack) -> None:
    doctor, admin = stack.doctor, stack.admin
    original = await admin.get(APISERVICE, None, APISERVICE_NAME)
    assert original is not None
    kept = {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": APISERVICE_NAME},
        "spec": original["spec"],
    }
    try:
        await admin.delete(APISERVICE, None, APISERVICE_NAME)
        report = await doctor.until("apiservice")
        assert "does not exist" in doctor.finding("apiservice")["seen"]
        assert report["exitCode"] == 1

        keda = {
            **kept,
            "spec": {
                **kept["spec"],
                "service": {"namespace": "keda", "name": "keda-operator-metrics-apiserver", "port": 443},
            },
        }
        await admin.create(APISERVICE, None, keda)
        await doctor.until("apiservice")
        seen = doctor.finding("apiservice")["seen"]
        assert "points to KEDA's metrics server (keda/keda-operator-metrics-apiserver)" in seen, seen
        assert "ScaledObject" in doctor.finding("apiservice")["fix"]
    finally:
        await admin.delete(APISERVICE, None, APISERVICE_NAME)
        await admin.create(APISERVICE, None, kept)
    await doctor.until(None, timeout=120)


@pytest.mark.timeout(300)
async def test_series_without_the_instance_label_are_named(
    control_plane: ControlPlane,
    adapter: RunningAdapter,
    running_prometheus: PrometheusServer,
    gpu_nodes: GpuNodes,
    namespace: str,
    tmp_path: Path,
) -> None:
    """A scrape job without the pod labels: series carry namespace and pod, not the instance label."""
    pool = await gpu_nodes(count=1, gpus_per_node=1)
    async with service_stack(
        control_plane, running_prometheus, namespace, pool, tmp_path, spec(pool)
    ) as running:
        await running.doctor.until(None, timeout=120)
        groups = json.loads((running_prometheus.file_sd_dir / f"{namespace}_{SERVICE}.json").read_text())
        stripped = [
            {
                "targets": g["targets"],
                "labels": {k: v for k, v in g["labels"].items() if k in ("namespace", "pod")},
            }
            for g in groups
        ]
        # The fleet rewrites its own file when its pods change; this job is the one the scrape sees.
        unlabelled = running_prometheus.file_sd_dir / f"{namespace}_unlabelled.json"
        unlabelled.write_text(json.dumps(stripped))
        (running_prometheus.file_sd_dir / f"{namespace}_{SERVICE}.json").unlink()
        try:
            await running.doctor.until("series")
            seen = running.doctor.finding("series")["seen"]
            assert "without the labels the HPA selects" in seen, seen
            assert f'namespace="{namespace}"' in seen
            assert "labelmap" in running.doctor.finding("series")["fix"]
        finally:
            unlabelled.unlink()


@pytest.mark.timeout(300)
async def test_hpa_on_a_metric_that_does_not_exist_is_named(
    control_plane: ControlPlane,
    adapter: RunningAdapter,
    running_prometheus: PrometheusServer,
    gpu_nodes: GpuNodes,
    namespace: str,
    tmp_path: Path,
) -> None:
    pool = await gpu_nodes(count=1, gpus_per_node=1)
    typo = spec(pool, queue_metric="tgi_queue_sizee")
    async with service_stack(control_plane, running_prometheus, namespace, pool, tmp_path, typo) as running:
        await running.doctor.until("hpa")
        seen = running.doctor.finding("hpa")["seen"]
        assert "'tgi_queue_sizee', which the adapter does not serve" in seen, seen


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("case", "replicas", "tolerate", "seen_has", "fix_has"),
    [
        ("no node with a free GPU", 3, True, "Insufficient nvidia.com/gpu", "resources.gpus"),
        ("taint not tolerated", 1, False, "untolerated taint", "scheduling.tolerations"),
    ],
)
async def test_pods_that_cannot_be_scheduled_are_named_with_the_reason(
    control_plane: ControlPlane,
    adapter: RunningAdapter,
    running_prometheus: PrometheusServer,
    gpu_nodes: GpuNodes,
    namespace: str,
    tmp_path: Path,
    case: str,
    replicas: int,
    tolerate: bool,
    seen_has: str,
    fix_has: str,
) -> None:
    pool = await gpu_nodes(count=2, gpus_per_node=1)
    service_spec = spec(pool, replicas=replicas, tolerate=tolerate)
    async with service_stack(
        control_plane, running_prometheus, namespace, pool, tmp_path, service_spec
    ) as running:
        await running.doctor.until("pods", seen_has=seen_has)
        finding = running.doctor.finding("pods")
        assert seen_has in finding["seen"], (case, finding)
        assert fix_has in finding["fix"], (case, finding)
        if not tolerate:
            # The scheduler no longer names the taint; doctor finds it on the nodes.
            assert f"{POOL_LABEL}={pool.name}:NoSchedule" in finding["fix"], finding
