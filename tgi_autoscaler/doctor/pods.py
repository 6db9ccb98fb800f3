"""Why a service's pods are not serving, from their conditions, container states, events and the nodes.

Pure. The scheduler explains a Pending pod in its ``PodScheduled`` condition and a
``FailedScheduling`` event (``0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption:
...``); the kubelet explains a pod that cannot start in its container statuses (``ImagePullBackOff``)
and ``Failed`` events. Since Kubernetes 1.28 the scheduler no longer names the taint a pod does not
tolerate (``node(s) had untolerated taint(s)``), so the taints are looked up on the nodes, when the
caller may read them, and compared with the pod's tolerations as the scheduler's TaintToleration
plugin does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tgi_autoscaler.doctor.snapshot import Obj

__all__ = ["PodProblem", "ProblemKind", "diagnose_pod", "untolerated_taints"]

ProblemKind = Literal[
    "insufficient",
    "taint",
    "claim",
    "affinity",
    "unscheduled",
    "image",
    "crash",
    "not-ready",
]

# A resource name may contain dots (nvidia.com/gpu); the sentence's own period is not part of it.
_INSUFFICIENT = re.compile(r"Insufficient ([A-Za-z0-9_-]+(?:[./][A-Za-z0-9_-]+)*)")
_IMAGE_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
_CRASH_REASONS = frozenset({"CrashLoopBackOff", "CreateContainerConfigError", "CreateContainerError"})


@dataclass(frozen=True)
class PodProblem:
    """What keeps one pod from serving: ``kind``, what was seen (``detail``), and ``subject``
    (the resource, taint or claim concerned, when there is one)."""

    pod: str
    kind: ProblemKind
    detail: str
    subject: str = ""


def _condition(pod: Obj, kind: str) -> Mapping[str, Any] | None:
    for condition in (pod.get("status") or {}).get("conditions") or ():
        if condition.get("type") == kind:
            return dict(condition)
    return None


def _events_of(pod_name: str, events: Iterable[Obj], reasons: frozenset[str]) -> list[Obj]:
    found = [
        e
        for e in events
        if (e.get("involvedObject") or {}).get("name") == pod_name and e.get("reason") in reasons
    ]
    return sorted(found, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))


def _tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """``v1.Toleration.ToleratesTaint``: effect, key and (for ``Equal``) value must match."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if not key:
        return operator == "Exists"
    if key != taint.get("key"):
        return False
    if operator == "Exists":
        return True
    return operator == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")


def untolerated_taints(pod: Obj, nodes: Sequence[Obj]) -> list[str]:
    """The ``NoSchedule``/``NoExecute`` taints the pod does not tolerate on the nodes its
    ``nodeSelector`` selects, as ``key=value:Effect``, each once."""
    tolerations = (pod.get("spec") or {}).get("tolerations") or ()
    selector = (pod.get("spec") or {}).get("nodeSelector") or {}
    seen: list[str] = []
    for node in nodes:
        # Only nodes the pod selects: their taints are what keeps it off them.
        labels = (node.get("metadata") or {}).get("labels") or {}
        if any(labels.get(k) != v for k, v in selector.items()):
            continue
        for taint in (node.get("spec") or {}).get("taints") or ():
            if taint.get("effect") not in ("NoSchedule", "NoExecute"):
                continue
            if any(_tolerates(t, taint) for t in tolerations):
                continue
            value = f"={taint['value']}" if taint.get("value") else ""
            text = f"{taint.get('key')}{value}:{taint.get('effect')}"
            if text not in seen:
                seen.append(text)
    return seen


def _unscheduled(pod: Obj, name: str, message: str, nodes: Sequence[Obj] | None) -> PodProblem:
    """Classify the scheduler's message; the first reason in the scheduler's order wins."""
    if "unbound immediate PersistentVolumeClaims" in message or "persistentvolumeclaim" in message:
        claims = [
            str((v.get("persistentVolumeClaim") or {}).get("claimName"))
            for v in (pod.get("spec") or {}).get("volumes") or ()
            if v.get("persistentVolumeClaim")
        ]
        return PodProblem(name, "claim", message, ", ".join(claims))
    insufficient = _INSUFFICIENT.findall(message)
    if insufficient:
        return PodProblem(name, "insufficient", message, ", ".join(dict.fromkeys(insufficient)))
    if "untolerated taint" in message:
        taints = untolerated_taints(pod, nodes) if nodes is not None else []
        return PodProblem(name, "taint", message, ", ".join(taints))
    if "node affinity" in message or "node selector" in message:
        return PodProblem(name, "affinity", message)
    return PodProblem(name, "unscheduled", message)


def diagnose_pod(pod: Obj, events: Sequence[Obj], nodes: Sequence[Obj] | None) -> PodProblem | None:
    """Why ``pod`` is not serving, or None when it is Running and Ready (or terminating)."""
    meta = pod.get("metadata") or {}
    name = str(meta.get("name", ""))
    if meta.get("deletionTimestamp"):
        return None
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or ():
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = str(waiting.get("reason") or "")
        if reason in _IMAGE_REASONS:
            image = str(container.get("image") or "")
            detail = f"{reason}: {waiting.get('message') or 'the image cannot be pulled'}"
            return PodProblem(name, "image", detail, image)
        if reason in _CRASH_REASONS:
            return PodProblem(name, "crash", f"{reason}: {waiting.get('message') or ''}".rstrip(": "))
    scheduled = _condition(pod, "PodScheduled")
    if not (pod.get("spec") or {}).get("nodeName"):
        if scheduled is not None and scheduled.get("status") == "False":
            return _unscheduled(pod, name, str(scheduled.get("message") or scheduled.get("reason")), nodes)
        failed = _events_of(name, events, frozenset({"FailedScheduling"}))
        if failed:
            return _unscheduled(pod, name, str(failed[-1].get("message") or ""), nodes)
        return PodProblem(
            name,
            "unscheduled",
            "not scheduled, and no scheduler has reported on it (is a scheduler running, and is "
            f"spec.schedulerName {(pod.get('spec') or {}).get('schedulerName') or 'default-scheduler'!r} "
            "served?)",
        )
    pulls = _events_of(name, events, frozenset({"Failed"}))
    if pulls and "pull" in str(pulls[-1].get("message") or "").lower() and status.get("phase") == "Pending":
        return PodProblem(name, "image", str(pulls[-1].get("message")))
    ready = _condition(pod, "Ready")
    if status.get("phase") != "Running" or ready is None or ready.get("status") != "True":
        detail = (
            f"phase {status.get('phase') or 'Pending'}, Ready {ready.get('status') if ready else 'unknown'}"
        )
        if ready is not None and ready.get("message"):
            detail += f": {ready.get('message')}"
        return PodProblem(name, "not-ready", detail)
    return None
