"""The kinds the controller manages: what it applies, watches for drift and prunes.

The REST paths of each kind are Kubernetes facts and live in :mod:`tgi_autoscaler.kube.resources`;
which kinds the renderer may produce is the controller's own decision, kept here as data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tgi_autoscaler.kube.resources import (
    CONFIGMAP,
    DEPLOYMENT,
    HPA,
    INGRESS,
    PODMONITOR,
    PROMETHEUSRULE,
    PVC,
    SCALEDOBJECT,
    SERVICE,
    ResourceType,
    kind_of,
)

__all__ = ["KEDA_KINDS", "MANAGED_KINDS", "OPERATOR_KINDS", "resource_for"]

# Every kind the renderer may produce, i.e. every kind the controller applies, watches for drift
# and prunes. PrometheusRule and PodMonitor exist only where prometheus-operator's CRDs are
# installed, ScaledObject only where KEDA's are.
MANAGED_KINDS: tuple[ResourceType, ...] = (
    CONFIGMAP,
    PVC,
    SERVICE,
    DEPLOYMENT,
    HPA,
    INGRESS,
    PROMETHEUSRULE,
    PODMONITOR,
    SCALEDOBJECT,
)
OPERATOR_KINDS: tuple[ResourceType, ...] = (PROMETHEUSRULE, PODMONITOR)
KEDA_KINDS: tuple[ResourceType, ...] = (SCALEDOBJECT,)


def resource_for(obj: Mapping[str, Any]) -> ResourceType:
    """The resource type of a rendered object, from its ``apiVersion`` and ``kind``.

    Raises ``KeyError`` naming the pair for a kind the controller was not built to manage; a
    renderer producing one is a programming error that RBAC would reject anyway.
    """
    return kind_of(obj, MANAGED_KINDS)
