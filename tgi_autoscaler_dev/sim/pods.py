"""Pod identity of simulated replicas: names, Kubernetes labels and the labels Prometheus sees (pure).

A simulated replica has to look, in Prometheus, exactly like a pod of the Deployment the controller
renders, so the adapter's queries (``sum(tgi_queue_size{namespace=..., app_kubernetes_io_instance=...})``)
select it. Pod names follow the ReplicaSet pattern ``<deployment>-<template hash>-<5 chars>`` and are
never reused, as in Kubernetes; labels are the pod labels sanitized the way Prometheus' ``labelmap``
relabeling does (every character outside ``[a-zA-Z0-9_]`` becomes ``_``; the same function the
adapter uses to map selector keys), plus ``namespace`` and ``pod``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from tgi_autoscaler.config.constants import (
    APP_NAME,
    COMPONENT_SERVER,
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    MANAGED_BY,
)
from tgi_autoscaler.k8s.names import is_dns1123_label
from tgi_autoscaler.promql.matchers import sanitize_label_name

__all__ = [
    "pod_labels",
    "pod_name",
    "sanitize_label_name",
    "target_group",
    "target_labels",
    "template_hash",
]

# Kubernetes' rand.SafeEncodeString alphabet (no vowels, no confusable digits).
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def _safe_encode(seed: str, length: int) -> str:
    digest = hashlib.sha256(seed.encode()).digest()
    return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)] for b in digest[:length])


def template_hash(namespace: str, service: str) -> str:
    """Stand-in for the ReplicaSet's pod-template-hash: 10 characters, stable per service."""
    return _safe_encode(f"{namespace}/{service}", 10)


def pod_name(namespace: str, service: str, ordinal: int) -> str:
    """Name of the ``ordinal``-th pod ever created for the service (ordinals are never reused)."""
    if not is_dns1123_label(service):
        raise ValueError(f"service: {service!r} is not a valid DNS-1123 label")
    return f"{service}-{template_hash(namespace, service)}-{_safe_encode(f'{service}#{ordinal}', 5)}"


def pod_labels(service: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The labels the controller puts on a service's pods, plus the service's own pod labels."""
    labels = {
        LABEL_NAME: APP_NAME,
        LABEL_INSTANCE: service,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_COMPONENT: COMPONENT_SERVER,
    }
    labels.update(extra or {})
    return labels


def target_labels(namespace: str, pod: str, labels: Mapping[str, str]) -> dict[str, str]:
    """The labels every series scraped from the pod carries in Prometheus."""
    out = {sanitize_label_name(k): v for k, v in sorted(labels.items())}
    out["namespace"] = namespace
    out["pod"] = pod
    return out


def target_group(address: str, labels: Mapping[str, str]) -> dict[str, Any]:
    """One Prometheus file_sd target group."""
    return {"targets": [address], "labels": dict(labels)}
