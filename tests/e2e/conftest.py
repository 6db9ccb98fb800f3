"""The external metrics adapter as a real process behind the real aggregation layer.

``adapter`` (session-scoped, because only one server can own ``external.metrics.k8s.io``) applies
the adapter's own RBAC and metrics ConfigMap from ``manifests/adapter`` to the control plane, gives
the adapter the token of its ServiceAccount (so the manifests' RBAC is what it runs with), starts
``python -m tgi_autoscaler adapter`` on loopback with a serving certificate for the Service's DNS
name, and registers the APIService through an ExternalName Service pointing at ``localhost``.

``keda`` runs KEDA's real operator and metrics API server (v2.21, built from its Go module by
``localstack build --with-keda``) owning ``v1beta1.external.metrics.k8s.io`` for one test; the
APIService that was there before is put back afterwards.

``kwok`` (session-scoped) runs kwok against the control plane, so pods on its fake nodes are
Running and then Ready one second later (a pod's ``pod-ready.stage.kwok.x-k8s.io/delay`` annotation
sets its own load time); ``gpu_nodes`` creates a dedicated pool of fake GPU nodes for one test
(tainted with its own name, so the test's capacity is exactly what it asked for) and deletes it after.
"""

from __future__ import annotations

import functools
import json
import ssl
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.conftest import register_component
from tgi_autoscaler_dev.localstack.aggregation import (
    LocalApiService,
    apiservice_available,
    apiservice_objects,
    issue_serving_cert,
)
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane
from tgi_autoscaler_dev.localstack.keda import running_keda
from tgi_autoscaler_dev.localstack.kwok import (
    GpuNodePool,
    Kwok,
    KwokSettings,
    create_gpu_nodes,
    delete_gpu_nodes,
)
from tgi_autoscaler_dev.localstack.pki import CertAuthority, KeyPair
from tgi_autoscaler_dev.localstack.process import ManagedProcess, free_port, wait_for
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer

REPO = Path(__file__).resolve().parents[2]
GROUP = "external.metrics.k8s.io"
VERSION = "v1beta1"
ADAPTER_NAMESPACE = "tgi-autoscaler"
ADAPTER_SERVICE = "tgi-autoscaler-adapter"
METRICS_CONFIGMAP = "tgi-autoscaler-adapter-metrics"
# Objects of manifests/adapter that make sense without a kubelet; the Deployment is replaced by the
# local process and the APIService by one routed to it.
_APPLIED_KINDS = {
    "Namespace",
    "ServiceAccount",
    "Role",
    "RoleBinding",
    "ClusterRole",
    "ClusterRoleBinding",
    "ConfigMap",
}


@dataclass(frozen=True)
class RunningAdapter:
    process: ManagedProcess
    port: int
    serving_ca: Path
    serving_authority: CertAuthority
    front_proxy_client: KeyPair
    manifests: list[dict[str, Any]]

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def ssl_context(self, client: KeyPair | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.serving_ca))
        ctx.check_hostname = False  # the certificate names the Service; we dial 127.0.0.1
        if client is not None:
            ctx.load_cert_chain(str(client.cert), str(client.key))
        return ctx

    async def get(
        self, path: str, *, headers: dict[str, str] | None = None, client: KeyPair | None = None
    ) -> tuple[int, Any]:
        """GET straight from the adapter (bypassing kube-apiserver)."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{self.url}{path}",
                headers=headers or {},
                ssl=self.ssl_context(client),
                timeout=aiohttp.ClientTimeout(total=10),
            ) as resp,
        ):
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except json.JSONDecodeError:
                return resp.status, text


def token_kubeconfig(path: Path, *, server: str, ca: Path, token: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "sa"}}],
        "current-context": "local",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


async def service_account_token(
    control_plane: ControlPlane, namespace: str, name: str, *, seconds: int = 7200
) -> str:
    status, body = await control_plane.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
        body={
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": seconds},
        },
    )
    assert status == 201, body
    token: str = body["status"]["token"]
    return token


async def kubectl_apply(control_plane: ControlPlane, objects: list[dict[str, Any]]) -> None:
    document = {"apiVersion": "v1", "kind": "List", "items": objects}
    (
        await control_plane.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", "-", input_text=json.dumps(document)
        )
    ).check()


async def rendered_adapter_manifests(control_plane: ControlPlane) -> list[dict[str, Any]]:
    result = (await control_plane.kubectl("kustomize", str(REPO / "manifests" / "adapter"))).check()
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="session")
async def adapter(
    control_plane: ControlPlane,
    prometheus: PrometheusServer,
    stack_dir: Path,
    pytestconfig: pytest.Config,
) -> AsyncIterator[RunningAdapter]:
    assert control_plane.pki is not None
    workdir = stack_dir / "adapter"
    workdir.mkdir(parents=True, exist_ok=True)

    manifests = await rendered_adapter_manifests(control_plane)
    await kubectl_apply(control_plane, [o for o in manifests if o["kind"] in _APPLIED_KINDS])
    token = await service_account_token(control_plane, ADAPTER_NAMESPACE, ADAPTER_SERVICE)
    kubeconfig = token_kubeconfig(
        workdir / "adapter.kubeconfig",
        server=control_plane.server,
        ca=control_plane.pki.cluster_ca.cert_path,
        token=token,
    )

    serving_ca = CertAuthority(workdir / "pki", "adapter-serving-ca")
    serving = issue_serving_cert(serving_ca, ADAPTER_SERVICE, ADAPTER_NAMESPACE)
    port = free_port()
    process = ManagedProcess(
        name="tgi-autoscaler-adapter",
        argv=[
            sys.executable,
            "-m",
            "tgi_autoscaler",
            "--log-format=json",
            "--log-level=DEBUG",
            "adapter",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--tls-cert-file={serving.cert}",
            f"--tls-private-key-file={serving.key}",
            "--tls-reload-interval=1",
            f"--kubeconfig={kubeconfig}",
            f"--prometheus-url={prometheus.url}",
            "--prometheus-timeout=2",
            "--cache-ttl=0",
            f"--metrics-configmap={ADAPTER_NAMESPACE}/{METRICS_CONFIGMAP}",
            "--shutdown-grace=2",
        ],
        log_path=workdir / "adapter.log",
        cwd=REPO,
    )
    register_component(pytestconfig, process)
    running = RunningAdapter(
        process, port, serving_ca.cert_path, serving_ca, control_plane.pki.front_proxy_client, manifests
    )
    await process.start()
    try:

        async def ready() -> bool:
            status, _ = await running.get("/readyz")
            return status == 200

        await process.wait_ready(ready, timeout=60)
        api = LocalApiService(GROUP, VERSION, ADAPTER_SERVICE, ADAPTER_NAMESPACE, port, serving_ca.cert_path)
        await kubectl_apply(control_plane, apiservice_objects(api))
        await wait_for(
            lambda: apiservice_available(control_plane, f"{VERSION}.{GROUP}"),
            timeout=60,
            what=f"APIService {api.apiservice_name} Available",
        )
        yield running
    finally:
        await control_plane.request(
            "DELETE", f"/apis/apiregistration.k8s.io/v1/apiservices/{VERSION}.{GROUP}"
        )
        await process.stop()


@pytest.fixture
async def keda(
    control_plane: ControlPlane, pytestconfig: pytest.Config, tmp_path: Path
) -> AsyncIterator[None]:
    """Real KEDA owning external metrics for one test; the previous APIService restored after."""
    on_process = functools.partial(register_component, pytestconfig)
    async with running_keda(control_plane, tmp_path / "keda", on_process=on_process):
        yield


@pytest.fixture(scope="session")
async def kwok(
    control_plane: ControlPlane, stack_dir: Path, pytestconfig: pytest.Config
) -> AsyncIterator[Kwok]:
    running = Kwok(control_plane, stack_dir / "kwok", settings=KwokSettings(ready_delay_s=1.0))
    try:
        await running.start()
    finally:
        if running.started:
            register_component(pytestconfig, running.process)
    try:
        yield running
    finally:
        await running.stop()


GpuNodes = Callable[..., Awaitable[GpuNodePool]]


@pytest.fixture
async def gpu_nodes(kwok: Kwok, control_plane: ControlPlane) -> AsyncIterator[GpuNodes]:
    """``await gpu_nodes(count, gpus_per_node)``: a dedicated pool of Ready kwok GPU nodes."""
    pools: list[GpuNodePool] = []

    async def create(count: int = 2, gpus_per_node: int = 8) -> GpuNodePool:
        pool = GpuNodePool(
            name=f"gpu-{uuid.uuid4().hex[:6]}", count=count, gpus_per_node=gpus_per_node, dedicated=True
        )
        pools.append(pool)
        await create_gpu_nodes(control_plane, pool)
        return pool

    try:
        yield create
    finally:
        for pool in pools:
            await delete_gpu_nodes(control_plane, pool)
