"""The status the controller writes onto each service ConfigMap, and its table rendering.

ConfigMaps have no status subresource, so the status is a JSON annotation
(``tgi-autoscaler.io/status``). It is the single place a user (or ``tgi-autoscaler status``) learns
whether a spec was accepted and what is running. ConfigMaps have no ``metadata.generation`` either;
``observedHash`` (a hash of ``data.service.yaml``) plays its role: when it differs from the hash of
the current data, the controller has not processed the latest edit yet.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict, get_args

__all__ = [
    "AppliedSpec",
    "HpaSummary",
    "Phase",
    "RolloutSummary",
    "ServiceRow",
    "ServiceStatus",
    "StatusDocument",
    "format_table",
    "parse_status",
    "row_from_configmap",
    "spec_hash",
    "status_changed",
]

Phase = Literal["Pending", "Ready", "Invalid", "Error"]


class StatusDocument(TypedDict):
    """The JSON shape of the status annotation (camelCase, like Kubernetes status fields)."""

    phase: Phase
    message: str
    observedHash: str  # hash of the data.service.yaml this status describes
    observedResourceVersion: str  # the ConfigMap resourceVersion that data was read at
    appliedHash: NotRequired[str]  # hash of spec + options that is running (the last good one)
    appliedAt: NotRequired[str]  # RFC 3339 time of the last apply that changed the spec
    objects: NotRequired[list[str]]  # Kind/namespace/name of everything applied
    prometheusOperator: NotRequired[bool]
    currentReplicas: NotRequired[int | None]
    desiredReplicas: NotRequired[int | None]
    minReplicas: NotRequired[int | None]
    maxReplicas: NotRequired[int | None]
    queueMetric: NotRequired[str | None]
    queueTarget: NotRequired[str | None]
    rolloutPhase: NotRequired[str]  # Stable, Progressing, Failed or Draining (docs/rollout.md)
    servingDeployment: NotRequired[str]  # the Deployment the Service routes to
    candidateDeployment: NotRequired[str]  # the Deployment a model change is starting


@dataclass(frozen=True)
class HpaSummary:
    """What the service's HPA reports: its replica counts and its queue metric target."""

    current_replicas: int | None = None
    desired_replicas: int | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None
    queue_metric: str | None = None
    queue_target: str | None = None


@dataclass(frozen=True)
class RolloutSummary:
    """Where a model change stands: its phase, the serving Deployment, the candidate if any."""

    phase: str
    serving: str
    candidate: str | None = None


@dataclass(frozen=True)
class AppliedSpec:
    """What the last good spec produced; an ``Invalid`` or ``Error`` status keeps reporting it."""

    hash: str  # hash of spec + options
    at: str  # RFC 3339 time of the last apply that changed the spec
    objects: tuple[str, ...]  # Kind/namespace/name of everything applied
    prometheus_operator: bool


@dataclass(frozen=True)
class ServiceStatus:
    """The status of one service; :meth:`document` is its annotation's JSON shape."""

    phase: Phase
    message: str
    observed_hash: str  # hash of the data.service.yaml this status describes
    observed_resource_version: str  # the ConfigMap resourceVersion that data was read at
    applied: AppliedSpec | None = None  # None until a spec has been applied
    hpa: HpaSummary | None = None  # None until the HPA has been applied
    rollout: RolloutSummary | None = None  # None until a Deployment has been applied

    def document(self) -> StatusDocument:
        doc: StatusDocument = {
            "phase": self.phase,
            "message": self.message,
            "observedHash": self.observed_hash,
            "observedResourceVersion": self.observed_resource_version,
        }
        if self.applied is not None:
            doc["appliedHash"] = self.applied.hash
            doc["appliedAt"] = self.applied.at
            doc["objects"] = list(self.applied.objects)
            doc["prometheusOperator"] = self.applied.prometheus_operator
        if self.hpa is not None:
            doc["currentReplicas"] = self.hpa.current_replicas
            doc["desiredReplicas"] = self.hpa.desired_replicas
            doc["minReplicas"] = self.hpa.min_replicas
            doc["maxReplicas"] = self.hpa.max_replicas
            doc["queueMetric"] = self.hpa.queue_metric
            doc["queueTarget"] = self.hpa.queue_target
        if self.rollout is not None:
            doc["rolloutPhase"] = self.rollout.phase
            doc["servingDeployment"] = self.rollout.serving
            if self.rollout.candidate is not None:
                doc["candidateDeployment"] = self.rollout.candidate
        return doc


# Fields that change without the service changing; a status differing only in these is not rewritten.
_VOLATILE = ("observedResourceVersion", "appliedAt")


def spec_hash(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def status_changed(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    if old is None:
        return True
    return _stable(old) != _stable(new)


def _stable(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in _VOLATILE}


def parse_status(raw: str | None) -> ServiceStatus | None:
    """Decode the annotation; ``None`` when absent or not a status object (e.g. hand-edited).

    Fields of the wrong type are read as missing rather than trusted.
    """
    if not raw:
        return None
    try:
        decoded = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(decoded, dict) or decoded.get("phase") not in _PHASES:
        return None
    return ServiceStatus(
        phase=decoded["phase"],
        message=_text(decoded, "message") or "",
        observed_hash=_text(decoded, "observedHash") or "",
        observed_resource_version=_text(decoded, "observedResourceVersion") or "",
        applied=_applied(decoded),
        hpa=_hpa(decoded),
        rollout=_rollout(decoded),
    )


_PHASES: tuple[str, ...] = get_args(Phase)
_HPA_FIELDS = (
    "currentReplicas",
    "desiredReplicas",
    "minReplicas",
    "maxReplicas",
    "queueMetric",
    "queueTarget",
)


def _applied(doc: Mapping[str, Any]) -> AppliedSpec | None:
    applied_hash = _text(doc, "appliedHash")
    if not applied_hash:
        return None
    objects = doc.get("objects")
    return AppliedSpec(
        hash=applied_hash,
        at=_text(doc, "appliedAt") or "",
        objects=tuple(str(o) for o in objects) if isinstance(objects, list) else (),
        prometheus_operator=doc.get("prometheusOperator") is True,
    )


def _hpa(doc: Mapping[str, Any]) -> HpaSummary | None:
    if not any(k in doc for k in _HPA_FIELDS):
        return None
    return HpaSummary(
        current_replicas=_count(doc, "currentReplicas"),
        desired_replicas=_count(doc, "desiredReplicas"),
        min_replicas=_count(doc, "minReplicas"),
        max_replicas=_count(doc, "maxReplicas"),
        queue_metric=_text(doc, "queueMetric"),
        queue_target=_text(doc, "queueTarget"),
    )


def _rollout(doc: Mapping[str, Any]) -> RolloutSummary | None:
    phase, serving = _text(doc, "rolloutPhase"), _text(doc, "servingDeployment")
    if phase is None or serving is None:
        return None
    return RolloutSummary(phase=phase, serving=serving, candidate=_text(doc, "candidateDeployment"))


def _text(doc: Mapping[str, Any], key: str) -> str | None:
    value = doc.get(key)
    return value if isinstance(value, str) else None


def _count(doc: Mapping[str, Any], key: str) -> int | None:
    value = doc.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class ServiceRow:
    namespace: str
    name: str
    phase: str
    current: int | None
    desired: int | None
    minimum: int | None
    maximum: int | None
    queue_metric: str | None
    queue_target: str | None
    message: str
    stale: bool  # the status describes an older spec than the ConfigMap holds
    rollout: str | None = None  # phase and serving Deployment (and candidate)


def row_from_configmap(configmap: Mapping[str, Any], *, annotation: str, data_key: str) -> ServiceRow:
    meta = configmap.get("metadata") or {}
    status = parse_status((meta.get("annotations") or {}).get(annotation))
    data = (configmap.get("data") or {}).get(data_key)
    current_hash = spec_hash(data) if isinstance(data, str) else ""
    if status is None:
        return ServiceRow(
            namespace=str(meta.get("namespace", "")),
            name=str(meta.get("name", "")),
            phase="Pending",
            current=None,
            desired=None,
            minimum=None,
            maximum=None,
            queue_metric=None,
            queue_target=None,
            message="not processed by a controller yet",
            stale=False,
        )
    hpa = status.hpa
    rollout = status.rollout
    rollout_text = None
    if rollout is not None:
        rollout_text = f"{rollout.phase} {rollout.serving}"
        if rollout.candidate is not None:
            rollout_text += f" -> {rollout.candidate}"
    return ServiceRow(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        phase=status.phase,
        current=hpa.current_replicas if hpa else None,
        desired=hpa.desired_replicas if hpa else None,
        minimum=hpa.min_replicas if hpa else None,
        maximum=hpa.max_replicas if hpa else None,
        queue_metric=hpa.queue_metric if hpa else None,
        queue_target=hpa.queue_target if hpa else None,
        message=status.message,
        stale=status.observed_hash != current_hash,
        rollout=rollout_text,
    )


def _num(value: int | None) -> str:
    return "-" if value is None else str(value)


def format_table(rows: Iterable[ServiceRow], *, message_width: int = 60) -> str:
    """A ``kubectl get``-style table; the message is cut to one line of ``message_width``."""
    header = (
        "NAMESPACE",
        "NAME",
        "PHASE",
        "ROLLOUT",
        "REPLICAS (CUR/DES/MIN/MAX)",
        "METRIC (TARGET)",
        "MESSAGE",
    )
    table: list[Sequence[str]] = [header]
    for row in sorted(rows, key=lambda r: (r.namespace, r.name)):
        replicas = "/".join(_num(v) for v in (row.current, row.desired, row.minimum, row.maximum))
        metric = row.queue_metric or "-"
        if row.queue_target:
            metric = f"{metric} ({row.queue_target})"
        message = " ".join(row.message.split())
        if row.stale:
            message = f"(status predates the current spec) {message}"
        if len(message) > message_width:
            message = message[: message_width - 3] + "..."
        phase = row.phase
        table.append((row.namespace, row.name, phase, row.rollout or "-", replicas, metric, message))
    widths = [max(len(r[i]) for r in table) for i in range(len(header) - 1)]
    lines = []
    for r in table:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(r[:-1])]
        lines.append("   ".join([*cells, r[-1]]).rstrip())
    return "\n".join(lines) + "\n"
