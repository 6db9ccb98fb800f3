"""Register an aggregated API served by a process on this machine with the local API server.

The aggregator reaches an APIService through its Service. With aggregator routing off, a Service of
type ExternalName makes the aggregator dial the external name directly, so ``localhost`` plus the
process's port reaches a server running outside the cluster. The aggregator verifies the serving
certificate against the APIService's ``caBundle`` using the Service's DNS name
(``<service>.<namespace>.svc``), so the process must serve a certificate for that name.
"""

from __future__ import annotations

import base64
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tgi_autoscaler_dev.localstack.controlplane import ControlPlane
from tgi_autoscaler_dev.localstack.pki import CertAuthority, KeyPair
from tgi_autoscaler_dev.localstack.process import ManagedProcess, free_port

__all__ = [
    "LocalApiService",
    "apiservice_available",
    "apiservice_objects",
    "issue_serving_cert",
    "local_adapter",
]


@dataclass(frozen=True)
class LocalApiService:
    group: str
    version: str
    service_name: str
    service_namespace: str
    port: int
    ca_bundle: Path

    @property
    def apiservice_name(self) -> str:
        return f"{self.version}.{self.group}"

    @property
    def dns_name(self) -> str:
        return f"{self.service_name}.{self.service_namespace}.svc"


def issue_serving_cert(ca: CertAuthority, service_name: str, service_namespace: str) -> KeyPair:
    """A serving certificate valid for the Service's DNS names, 127.0.0.1 and localhost."""
    return ca.issue(
        f"serving-{service_namespace}-{service_name}",
        common_name=f"{service_name}.{service_namespace}.svc",
        dns_names=[
            f"{service_name}.{service_namespace}.svc",
            f"{service_name}.{service_namespace}.svc.cluster.local",
            "localhost",
        ],
        ip_addresses=["127.0.0.1"],
        server=True,
    )


def apiservice_objects(api: LocalApiService) -> list[dict[str, Any]]:
    """The Namespace, ExternalName Service and APIService that route the group to ``localhost:port``."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": api.service_namespace}},
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": api.service_name, "namespace": api.service_namespace},
            "spec": {
                "type": "ExternalName",
                "externalName": "localhost",
                "ports": [{"name": "https", "port": api.port, "protocol": "TCP"}],
            },
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": api.apiservice_name},
            "spec": {
                "group": api.group,
                "version": api.version,
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
                "caBundle": base64.b64encode(api.ca_bundle.read_bytes()).decode(),
                "service": {"name": api.service_name, "namespace": api.service_namespace, "port": api.port},
            },
        },
    ]


async def apiservice_available(cp: ControlPlane, name: str) -> bool:
    """Whether the aggregator reports APIService ``name`` Available (it reached the server behind it)."""
    status, body = await cp.request("GET", f"/apis/apiregistration.k8s.io/v1/apiservices/{name}")
    if status != 200 or not isinstance(body, dict):
        return False
    conditions = body.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Available" and c.get("status") == "True" for c in conditions)


def local_adapter(
    cp: ControlPlane,
    *,
    prometheus_url: str,
    workdir: Path,
    metrics_file: Path | None = None,
    extra_args: tuple[str, ...] = (),
) -> tuple[LocalApiService, ManagedProcess]:
    """The project's adapter as a local process (``python -m tgi_autoscaler adapter``) and the
    APIService that routes ``external.metrics.k8s.io`` to it, with a serving certificate for the
    Service's DNS name; apply ``apiservice_objects`` once the process runs."""
    if cp.pki is None:
        raise RuntimeError("the control plane has not been started (no PKI yet)")
    api = LocalApiService(
        group="external.metrics.k8s.io",
        version="v1beta1",
        service_name="tgi-autoscaler-adapter",
        service_namespace="tgi-autoscaler",
        port=free_port(),
        ca_bundle=cp.pki.cluster_ca.cert_path,
    )
    serving = issue_serving_cert(cp.pki.cluster_ca, api.service_name, api.service_namespace)
    argv = [
        sys.executable, "-m", "tgi_autoscaler", "--log-format", "json", "adapter",
        "--bind-address=127.0.0.1",
        f"--secure-port={api.port}",
        f"--tls-cert-file={serving.cert}",
        f"--tls-private-key-file={serving.key}",
        f"--kubeconfig={cp.kubeconfig}",
        f"--prometheus-url={prometheus_url}",
        *([f"--metrics-file={metrics_file}"] if metrics_file is not None else []),
        *extra_args,
    ]  # fmt: skip
    process = ManagedProcess(
        name="adapter", argv=argv, log_path=workdir / "adapter.log", env={"PYTHONUNBUFFERED": "1"}
    )
    return api, process
