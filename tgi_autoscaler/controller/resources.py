"""The kinds the controller manages: what it applies, watches for drift and prunes.

The REST paths of each kind are Kubernetes facts and live in :mod:`tgi_autoscaler.kube.resources`;
which kinds the renderer may produce is the controller's own decision, kept here as data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tgi_autoscaler.kube.resources import (
    BACKENDTRAFFICPOLICY,
    CONFIGMAP,
    DEPLOYMENT,
    HPA,
    HTTPROUTE,
    INFERENCEPOOL,
    INGRESS,
    PODMONITOR,
    PROMETHEUSRULE,
    PVC,
    SCALEDOBJECT,
    SERVICE,
    ResourceType,
    kind_of,
)

__all__ = ["CRD_KINDS", "KEDA_KINDS", "MANAGED_KINDS", "OPERATOR_KINDS", "ROUTING_KINDS", "resource_for"]

# Every kind the renderer may produce, i.e. every kind the controller applies, watches for drift
# and prunes. Those of CRD_KINDS exist only where their CRDs are installed (prometheus-operator,
# Gateway API, its Inference Extension, Envoy Gateway), so they are watched only while served.
# KEDA_KINDS too, but KEDA's discovery also depends on --autoscaler (``hpa`` never looks at
# keda.sh), so it is kept apart from CRD_KINDS.
MANAGED_KINDS: tuple[ResourceType, ...] = (
    CONFIGMAP,
    PVC,
    SERVICE,
    DEPLOYMENT,
    HPA,
    INGRESS,
    PROMETHEUSRULE,
    PODMONITOR,
    INFERENCEPOOL,
    HTTPROUTE,
    BACKENDTRAFFICPOLICY,
    SCALEDOBJECT,
)
OPERATOR_KINDS: tuple[ResourceType, ...] = (PROMETHEUSRULE, PODMONITOR)
ROUTING_KINDS: tuple[ResourceType, ...] = (HTTPROUTE, INFERENCEPOOL, BACKENDTRAFFICPOLICY)
CRD_KINDS: tuple[ResourceType, ...] = OPERATOR_KINDS + ROUTING_KINDS
KEDA_KINDS: tuple[ResourceType, ...] = (SCALEDOBJECT,)


def resource_for(obj: Mapping[str, Any]) -> ResourceType:
    """The resource type of a rendered object, from its ``apiVersion`` and ``kind``.

    Raises ``KeyError`` naming the pair for a kind the controller was not built to manage; a
    renderer producing one is a programming error that RBAC would reject anyway.
    """
    return kind_of(obj, MANAGED_KINDS)
