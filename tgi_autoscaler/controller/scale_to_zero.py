"""Does this cluster's HPA scale to zero? Told from the API server's answer and its version.

``minReplicas: 0`` needs the HPAScaleToZero feature gate: alpha and off from Kubernetes v1.16,
beta and on by default from v1.37 (``pkg/features/kube_features.go``). Without it kube-apiserver
rejects the HPA (``spec.minReplicas: must be greater than or equal to 1``), and quietly rendering
``minReplicas: 1`` instead would keep a GPU busy that the user asked to release. So the
controller's dry run sends the HPA as specified, and when the API server refuses ``minReplicas``
the service is ``Invalid`` with a message naming the requirement and the server's version.

An older API server that accepts ``minReplicas: 0`` has the alpha gate switched on by hand;
kube-controller-manager then needs it too, which no API can tell, so the controller logs that.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "NATIVE_SINCE",
    "ServerVersion",
    "parse_server_version",
    "rejects_min_replicas",
    "unsupported_message",
]

NATIVE_SINCE: Final = (1, 37)  # HPAScaleToZero beta, on by default


@dataclass(frozen=True, slots=True)
class ServerVersion:
    major: int
    minor: int
    git_version: str

    @property
    def native_scale_to_zero(self) -> bool:
        """The version whose HPAScaleToZero gate is on unless switched off."""
        return (self.major, self.minor) >= NATIVE_SINCE


def parse_server_version(document: Mapping[str, Any] | None) -> ServerVersion | None:
    """``GET /version``'s answer (``minor`` may read ``"37+"`` on managed clusters); None if unreadable."""
    if not document:
        return None
    major = re.match(r"\d+", str(document.get("major", "")))
    minor = re.match(r"\d+", str(document.get("minor", "")))
    if major is None or minor is None:
        return None
    return ServerVersion(int(major.group()), int(minor.group()), str(document.get("gitVersion", "")))


def rejects_min_replicas(kind: str, causes: Sequence[tuple[str | None, str]], message: str) -> bool:
    """The API server refused an HPA because of its ``minReplicas`` (the gate is off)."""
    if kind != "HorizontalPodAutoscaler":
        return False
    fields = [f or "" for f, _ in causes] + [message]
    return any("minReplicas" in text for text in fields)


def unsupported_message(version: ServerVersion | None) -> str:
    """What the user reads when the HPA cannot scale to zero here."""
    server = "this API server" if version is None else f"this API server ({version.git_version or 'unknown'})"
    if version is not None and version.native_scale_to_zero:
        why = "has the HPAScaleToZero feature gate switched off"
    else:
        why = "does not allow it (Kubernetes before v1.37 without the alpha HPAScaleToZero feature gate)"
    return (
        f"autoscaling.minReplicas: 0 needs the HPA's native scale to zero: Kubernetes v1.37 or later, "
        f"or the HPAScaleToZero feature gate on kube-apiserver and kube-controller-manager; {server} "
        f"{why}. Set minReplicas to 1 or more, or enable the gate"
    )
