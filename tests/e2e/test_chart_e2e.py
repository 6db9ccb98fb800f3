"""The Helm chart on a real control plane: server-side validation, install, upgrade, uninstall.

The chart gets a control plane of its own: the session's carries the adapter fixture's APIService
and RBAC, which the chart would find already owned by someone else (Helm refuses to adopt them).
There is no kubelet, so the adapter the chart installs runs the way every end-to-end test runs it:
as a local process, here with the certificate the chart generated (read back from the Secret) and
the token of the chart's ServiceAccount, behind the chart's own APIService, whose Service the chart
renders as ``ExternalName: localhost`` (``adapter.service.externalName``). The APIService turning
Available therefore proves the chart's certificate, caBundle and adapter RBAC together. The
controller runs the same way, with the chart's controller ServiceAccount, until it holds its Lease.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import register_component
from tests.e2e.conftest import service_account_token, token_kubeconfig
from tests.support.chart import CHART_DIR, helm, helm_template, set_flags
from tgi_autoscaler_dev.localstack.aggregation import apiservice_available
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane
from tgi_autoscaler_dev.localstack.crds import crd_names, ensure_prometheus_operator_crds
from tgi_autoscaler_dev.localstack.process import ManagedProcess, free_port, http_ok, wait_for
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
NS = "tgi-autoscaler"
RELEASE = "tgi-autoscaler"
APISERVICE = "v1beta1.external.metrics.k8s.io"


@pytest.fixture(scope="module")
async def chart_plane(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> AsyncIterator[ControlPlane]:
    cp = ControlPlane(tmp_path_factory.mktemp("chart-control-plane"))
    try:
        await cp.start()
    finally:
        for process in cp.processes:
            register_component(pytestconfig, process)
    try:
        yield cp
    finally:
        await cp.stop()


def _helm_env(home: Path) -> dict[str, str]:
    # Helm's own cache, config and data stay in the test's directory, not the user's.
    return {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }


def _kube(cp: ControlPlane, home: Path, *args: str) -> str:
    return helm(*args, "--kubeconfig", str(cp.kubeconfig), env=_helm_env(home)).stdout


async def _get(cp: ControlPlane, obj: dict[str, Any]) -> tuple[int, Any]:
    api_version, kind = obj["apiVersion"], obj["kind"]
    plural = kind.lower() + "s"  # every kind the chart renders forms its plural this way
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    namespace = obj["metadata"].get("namespace")
    scope = f"/namespaces/{namespace}" if namespace else ""
    return await cp.request("GET", f"{prefix}{scope}/{plural}/{obj['metadata']['name']}")


async def test_every_object_passes_server_side_dry_run(chart_plane: ControlPlane) -> None:
    for path in await asyncio.to_thread(ensure_prometheus_operator_crds):
        (await chart_plane.kubectl("apply", "--server-side", "-f", str(path))).check()
    for name in crd_names():
        (
            await chart_plane.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
        ).check()
    (await chart_plane.kubectl("create", "namespace", "dry-run-ns")).check()
    for values in (
        {"selfMonitoring.prometheusRule.enabled": "true", "selfMonitoring.dashboard.enabled": "true"},
        {"certificate.mode": "secret", "adapter.service.externalName": "localhost"},
    ):
        objects = helm_template(values, namespace="dry-run-ns")
        document = json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})
        result = await chart_plane.kubectl(
            "apply", "--server-side", "--dry-run=server", "-o", "name", "-f", "-", input_text=document
        )
        assert result.returncode == 0, result.stderr
        assert len(result.stdout.split()) == len(objects), result.stdout
    assert (await chart_plane.request("GET", "/apis/apps/v1/namespaces/dry-run-ns/deployments"))[1][
        "items"
    ] == []


async def test_install_upgrade_uninstall(
    chart_plane: ControlPlane, prometheus: PrometheusServer, tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    cp = chart_plane
    assert cp.pki is not None
    port = free_port()
    local = {"adapter.service.externalName": "localhost", "adapter.service.port": str(port)}

    # -- install ---------------------------------------------------------------------------------
    _kube(cp, tmp_path, "install", RELEASE, str(CHART_DIR), "-n", NS, "--create-namespace", *set_flags(local))
    manifest = [d for d in yaml.safe_load_all(_kube(cp, tmp_path, "get", "manifest", RELEASE, "-n", NS)) if d]
    kinds = {o["kind"] for o in manifest}
    assert {"Deployment", "APIService", "Secret", "ClusterRole", "RoleBinding", "ConfigMap"} <= kinds
    for obj in manifest:
        status, body = await _get(cp, obj)
        assert status == 200, (obj["kind"], obj["metadata"]["name"], body)
        assert body["metadata"]["annotations"]["meta.helm.sh/release-name"] == RELEASE

    status, secret = await cp.request(
        "GET", f"/api/v1/namespaces/{NS}/secrets/tgi-autoscaler-adapter-serving-cert"
    )
    assert status == 200, secret
    status, apiservice = await cp.request("GET", f"/apis/apiregistration.k8s.io/v1/apiservices/{APISERVICE}")
    assert status == 200, apiservice
    assert apiservice["spec"]["caBundle"] == secret["data"]["ca.crt"]

    # -- the chart's adapter, run locally behind the chart's APIService -----------------------------
    pki_dir = tmp_path / "serving"
    pki_dir.mkdir()
    for name in ("tls.crt", "tls.key"):
        (pki_dir / name).write_bytes(base64.b64decode(secret["data"][name]))
    (pki_dir / "tls.key").chmod(0o600)

    cluster_ca = cp.pki.cluster_ca.cert_path

    def sa_kubeconfig(name: str, token: str) -> Path:
        return token_kubeconfig(tmp_path / f"{name}.kubeconfig", server=cp.server, ca=cluster_ca, token=token)

    adapter_kubeconfig = sa_kubeconfig(
        "adapter", await service_account_token(cp, NS, "tgi-autoscaler-adapter")
    )
    adapter = ManagedProcess(
        name="chart-adapter",
        argv=[
            sys.executable,
            "-m",
            "tgi_autoscaler",
            "--log-format=json",
            "adapter",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--tls-cert-file={pki_dir / 'tls.crt'}",
            f"--tls-private-key-file={pki_dir / 'tls.key'}",
            f"--kubeconfig={adapter_kubeconfig}",
            f"--prometheus-url={prometheus.url}",
            f"--metrics-configmap={NS}/tgi-autoscaler-adapter-metrics",
            "--shutdown-grace=1",
        ],
        log_path=tmp_path / "adapter.log",
        cwd=REPO,
    )
    controller_kubeconfig = sa_kubeconfig(
        "controller", await service_account_token(cp, NS, "tgi-autoscaler-controller")
    )
    metrics_port = free_port()
    controller = ManagedProcess(
        name="chart-controller",
        argv=[
            sys.executable,
            "-m",
            "tgi_autoscaler",
            "--log-format=json",
            "controller",
            f"--kubeconfig={controller_kubeconfig}",
            f"--metrics-bind=127.0.0.1:{metrics_port}",
            f"--lease-namespace={NS}",
            "--identity=chart-e2e",
            "--shutdown-grace=1",
        ],
        log_path=tmp_path / "controller.log",
        cwd=REPO,
    )
    register_component(pytestconfig, adapter)
    register_component(pytestconfig, controller)
    await adapter.start()
    await controller.start()
    try:
        await wait_for(
            lambda: apiservice_available(cp, APISERVICE), timeout=90, what=f"{APISERVICE} Available"
        )
        discovery = (await cp.kubectl("get", "--raw", "/apis/external.metrics.k8s.io/v1beta1")).check()
        assert json.loads(discovery.stdout)["groupVersion"] == "external.metrics.k8s.io/v1beta1"
        await controller.wait_ready(
            lambda: http_ok(f"http://127.0.0.1:{metrics_port}/readyz", timeout_s=2), timeout=90
        )

        async def lease_held() -> bool:
            status, lease = await cp.request(
                "GET", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/tgi-autoscaler-controller"
            )
            return status == 200 and lease["spec"].get("holderIdentity") == "chart-e2e"

        await wait_for(lease_held, timeout=60, what="the controller to hold its Lease (chart RBAC)")

        # -- upgrade: changed values change the objects; the certificate and caBundle stay --------
        _kube(
            cp, tmp_path, "upgrade", RELEASE, str(CHART_DIR), "-n", NS,
            *set_flags({**local, "adapter.replicas": "3", "controller.workers": "2"}),
        )  # fmt: skip
        status, deployment = await cp.request(
            "GET", f"/apis/apps/v1/namespaces/{NS}/deployments/tgi-autoscaler-adapter"
        )
        assert deployment["spec"]["replicas"] == 3
        status, deployment = await cp.request(
            "GET", f"/apis/apps/v1/namespaces/{NS}/deployments/tgi-autoscaler-controller"
        )
        assert "--workers=2" in deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        status, after = await cp.request(
            "GET", f"/api/v1/namespaces/{NS}/secrets/tgi-autoscaler-adapter-serving-cert"
        )
        assert after["data"] == secret["data"], "an upgrade must not regenerate the serving certificate"
        status, apiservice = await cp.request(
            "GET", f"/apis/apiregistration.k8s.io/v1/apiservices/{APISERVICE}"
        )
        assert apiservice["spec"]["caBundle"] == secret["data"]["ca.crt"]
        assert await apiservice_available(cp, APISERVICE)
        history = json.loads(_kube(cp, tmp_path, "history", RELEASE, "-n", NS, "-o", "json"))
        assert [h["revision"] for h in history] == [1, 2]
        assert history[-1]["status"] == "deployed"
    finally:
        await controller.stop()
        await adapter.stop()

    # -- uninstall: every object goes, cluster-scoped and kube-system ones included ---------------
    _kube(cp, tmp_path, "uninstall", RELEASE, "-n", NS, "--wait")
    for obj in manifest:

        async def gone(obj: dict[str, Any] = obj) -> bool:
            return (await _get(cp, obj))[0] == 404

        await wait_for(gone, timeout=60, what=f"{obj['kind']} {obj['metadata']['name']} to be deleted")
    releases = json.loads(_kube(cp, tmp_path, "list", "-n", NS, "-o", "json"))
    assert releases == []
