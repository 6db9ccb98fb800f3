"""Names, labels and metadata shared by every rendered object of a service.

All objects of one service are found by the same two labels (``app.kubernetes.io/instance`` and
``app.kubernetes.io/managed-by``); pods additionally carry ``app.kubernetes.io/name`` and
``app.kubernetes.io/component`` so that selectors never match the API-key proxy's pods as servers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tgi_autoscaler.config.constants import (
    APP_NAME,
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    MANAGED_BY,
)

__all__ = [
    "HTTP_PORT_NAME",
    "Manifest",
    "activator_name",
    "auth_proxy_name",
    "cache_claim_name",
    "labels",
    "object_meta",
    "selector_labels",
]

Manifest = dict[str, Any]

# Named container/Service port: probes, the Service, the PodMonitor and the Ingress refer to it by
# name, so a changed container port number is picked up everywhere at once.
HTTP_PORT_NAME = "http"


def cache_claim_name(service: str) -> str:
    return f"{service}-model-cache"


def auth_proxy_name(service: str) -> str:
    return f"{service}-auth-proxy"


def activator_name(service: str) -> str:
    return f"{service}-activator"


def selector_labels(service: str, component: str) -> dict[str, str]:
    """The labels selecting one component's pods (immutable in a Deployment, so kept minimal)."""
    return {LABEL_NAME: APP_NAME, LABEL_INSTANCE: service, LABEL_COMPONENT: component}


def labels(service: str, component: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every label of an object or pod: the selector labels, managed-by, then ``extra``."""
    result = {
        LABEL_NAME: APP_NAME,
        LABEL_INSTANCE: service,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_COMPONENT: component,
    }
    for key, value in sorted((extra or {}).items()):
        result.setdefault(key, value)
    return result


def object_meta(
    name: str,
    namespace: str,
    service: str,
    component: str,
    *,
    extra_labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> Manifest:
    meta: Manifest = {
        "name": name,
        "namespace": namespace,
        "labels": labels(service, component, extra_labels),
    }
    if annotations:
        meta["annotations"] = dict(sorted(annotations.items()))
    return meta
