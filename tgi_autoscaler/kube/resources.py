"""The Kubernetes resource types this project reads and writes, and their REST paths.

Both servers talk to the API server with raw requests (server-side apply needs the
``application/apply-patch+yaml`` content type and the watch needs bookmarks and exact
resourceVersion handling), so they need the REST path of every kind they touch. Listing them
here, as data, also documents what the RBAC in ``manifests/`` must grant. Which of these kinds the
controller manages is the controller's business (``controller/resources.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

__all__ = [
    "APISERVICE",
    "BACKENDTRAFFICPOLICY",
    "CONFIGMAP",
    "DEPLOYMENT",
    "DEPLOYMENT_SCALE",
    "EVENT",
    "HPA",
    "HTTPROUTE",
    "INFERENCEPOOL",
    "INGRESS",
    "KEDA_GROUP_VERSION",
    "LEASE",
    "MONITORING_GROUP_VERSION",
    "NODE",
    "POD",
    "PODMONITOR",
    "PROMETHEUSRULE",
    "PVC",
    "SCALEDOBJECT",
    "SERVICE",
    "SUBJECT_ACCESS_REVIEW",
    "TOKEN_REVIEW",
    "WELL_KNOWN_KINDS",
    "ResourceType",
    "kind_of",
]


@dataclass(frozen=True)
class ResourceType:
    """One API resource: enough to build its collection and item URLs."""

    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    # A subresource of the item (``scale``): written by a separate field manager, so that the
    # replica count never becomes a field of the main server-side apply.
    subresource: str | None = None

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
        path = f"{self.collection_path(namespace)}/{quote(name, safe='')}"
        return path if self.subresource is None else f"{path}/{self.subresource}"

    def __str__(self) -> str:
        return f"{self.plural}.{self.group or 'core'}/{self.version}"


CONFIGMAP = ResourceType("", "v1", "ConfigMap", "configmaps")
SERVICE = ResourceType("", "v1", "Service", "services")
PVC = ResourceType("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims")
EVENT = ResourceType("", "v1", "Event", "events")
POD = ResourceType("", "v1", "Pod", "pods")
NODE = ResourceType("", "v1", "Node", "nodes", namespaced=False)
APISERVICE = ResourceType("apiregistration.k8s.io", "v1", "APIService", "apiservices", namespaced=False)
DEPLOYMENT = ResourceType("apps", "v1", "Deployment", "deployments")
DEPLOYMENT_SCALE = ResourceType("apps", "v1", "Deployment", "deployments", subresource="scale")
HPA = ResourceType("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers")
INGRESS = ResourceType("networking.k8s.io", "v1", "Ingress", "ingresses")
LEASE = ResourceType("coordination.k8s.io", "v1", "Lease", "leases")
MONITORING_GROUP_VERSION = "monitoring.coreos.com/v1"
PROMETHEUSRULE = ResourceType("monitoring.coreos.com", "v1", "PrometheusRule", "prometheusrules")
PODMONITOR = ResourceType("monitoring.coreos.com", "v1", "PodMonitor", "podmonitors")
KEDA_GROUP_VERSION = "keda.sh/v1alpha1"
SCALEDOBJECT = ResourceType("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects")
TOKEN_REVIEW = ResourceType("authentication.k8s.io", "v1", "TokenReview", "tokenreviews", namespaced=False)
# Gateway API (standard channel), its Inference Extension, and Envoy Gateway's policy: CRDs, present
# only where installed.
HTTPROUTE = ResourceType("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes")
INFERENCEPOOL = ResourceType("inference.networking.k8s.io", "v1", "InferencePool", "inferencepools")
BACKENDTRAFFICPOLICY = ResourceType(
    "gateway.envoyproxy.io", "v1alpha1", "BackendTrafficPolicy", "backendtrafficpolicies"
)
SUBJECT_ACCESS_REVIEW = ResourceType(
    "authorization.k8s.io", "v1", "SubjectAccessReview", "subjectaccessreviews", namespaced=False
)

WELL_KNOWN_KINDS: tuple[ResourceType, ...] = (
    CONFIGMAP,
    SERVICE,
    PVC,
    EVENT,
    DEPLOYMENT,
    HPA,
    INGRESS,
    LEASE,
    PROMETHEUSRULE,
    PODMONITOR,
    SCALEDOBJECT,
    APISERVICE,
    HTTPROUTE,
    INFERENCEPOOL,
    BACKENDTRAFFICPOLICY,
    TOKEN_REVIEW,
    SUBJECT_ACCESS_REVIEW,
)


def kind_of(obj: Mapping[str, Any], kinds: Iterable[ResourceType]) -> ResourceType:
    """The resource type among ``kinds`` of an object, from its ``apiVersion`` and ``kind``.

    Raises ``KeyError`` naming the pair when none matches.
    """
    key = (str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
    for rt in kinds:
        if (rt.api_version, rt.kind) == key:
            return rt
    raise KeyError(f"unmanaged kind {key[0]}/{key[1]}")
