"""The Kubernetes resource types the controller reads and writes, and their REST paths.

The controller talks to the API server with raw requests (server-side apply needs the
``application/apply-patch+yaml`` content type and the watch needs bookmarks and exact
resourceVersion handling), so it needs the REST path of every kind it touches. Listing them
here, as data, also documents exactly what the RBAC in ``manifests/controller`` must grant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

__all__ = [
    "CONFIGMAP",
    "DEPLOYMENT",
    "EVENT",
    "HPA",
    "INGRESS",
    "LEASE",
    "MANAGED_KINDS",
    "MONITORING_GROUP_VERSION",
    "OPERATOR_KINDS",
    "PODMONITOR",
    "PROMETHEUSRULE",
    "PVC",
    "SERVICE",
    "ResourceType",
    "resource_for",
]


@dataclass(frozen=True)
class ResourceType:
    """One API resource: enough to build its collection and item URLs."""

    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def collection_path(self, namespace: str | None = None) -> str:
        """``/api/v1/namespaces/ns/configmaps``; ``namespace=None`` lists across all namespaces."""
        prefix = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            return f"{prefix}/namespaces/{quote(namespace, safe='')}/{self.plural}"
        return f"{prefix}/{self.plural}"

    def item_path(self, namespace: str | None, name: str) -> str:
        return f"{self.collection_path(namespace)}/{quote(name, safe='')}"

    def __str__(self) -> str:
        return f"{self.plural}.{self.group or 'core'}/{self.version}"


CONFIGMAP = ResourceType("", "v1", "ConfigMap", "configmaps")
SERVICE = ResourceType("", "v1", "Service", "services")
PVC = ResourceType("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims")
EVENT = ResourceType("", "v1", "Event", "events")
DEPLOYMENT = ResourceType("apps", "v1", "Deployment", "deployments")
HPA = ResourceType("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers")
INGRESS = ResourceType("networking.k8s.io", "v1", "Ingress", "ingresses")
LEASE = ResourceType("coordination.k8s.io", "v1", "Lease", "leases")
MONITORING_GROUP_VERSION = "monitoring.coreos.com/v1"
PROMETHEUSRULE = ResourceType("monitoring.coreos.com", "v1", "PrometheusRule", "prometheusrules")
PODMONITOR = ResourceType("monitoring.coreos.com", "v1", "PodMonitor", "podmonitors")

# Every kind the renderer may produce, i.e. every kind the controller applies, watches for drift
# and prunes. The last two exist only where prometheus-operator's CRDs are installed.
MANAGED_KINDS: tuple[ResourceType, ...] = (
    CONFIGMAP,
    PVC,
    SERVICE,
    DEPLOYMENT,
    HPA,
    INGRESS,
    PROMETHEUSRULE,
    PODMONITOR,
)
OPERATOR_KINDS: tuple[ResourceType, ...] = (PROMETHEUSRULE, PODMONITOR)

_BY_GVK: Mapping[tuple[str, str], ResourceType] = {(r.api_version, r.kind): r for r in MANAGED_KINDS}


def resource_for(obj: Mapping[str, Any]) -> ResourceType:
    """The resource type of a rendered object, from its ``apiVersion`` and ``kind``.

    Raises ``KeyError`` naming the pair for a kind the controller was not built to manage; a
    renderer producing one is a programming error that RBAC would reject anyway.
    """
    key = (str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    try:
        return _BY_GVK[key]
    except KeyError:
        raise KeyError(f"unmanaged kind {key[0]}/{key[1]}") from None
