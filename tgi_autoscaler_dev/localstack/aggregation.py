"""Register an aggregated API served by a process on this machine with the local API server.

The aggregator reaches an APIService through its Service. With aggregator routing off, a Service of
type ExternalName makes the aggregator dial the external name directly, so ``localhost`` plus the
process's port reaches a server running outside the cluster. The aggregator verifies the serving
certificate against the APIService's ``caBundle`` using the Service's DNS name
(``<service>.<namespace>.svc``), so the process must serve a certificate for that name.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tgi_autoscaler_dev.localstack.controlplane import ControlPlane
from tgi_autoscaler_dev.localstack.pki import CertAuthority, KeyPair

__all__ = ["LocalApiService", "apiservice_available", "apiservice_objects", "issue_serving_cert"]


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
