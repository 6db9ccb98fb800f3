"""Why a pod is not serving, from pod conditions, container states and events shaped as the real
kube-scheduler and kubelet write them (messages as Kubernetes 1.3x prints them)."""

from __future__ import annotations

from typing import Any

import pytest

from tgi_autoscaler.doctor.pods import diagnose_pod, untolerated_taints

pytestmark = pytest.mark.unit

GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}


def pod(
    *,
    phase: str = "Pending",
    node: str | None = None,
    conditions: list[dict[str, Any]] | None = None,
    containers: list[dict[str, Any]] | None = None,
    tolerations: list[dict[str, Any]] | None = None,
    claim: str | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [{"name": "tgi", "image": "ghcr.io/huggingface/text-generation-inference:3.3.4"}],
        "tolerations": tolerations or [],
    }
    if node:
        spec["nodeName"] = node
    if claim:
        spec["volumes"] = [{"name": "cache", "persistentVolumeClaim": {"claimName": claim}}]
    return {
        "metadata": {"name": "llama-7d9f8b6c5d-x2x4z", "namespace": "llm"},
        "spec": spec,
        "status": {"phase": phase, "conditions": conditions or [], "containerStatuses": containers or []},
    }


def unschedulable(message: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastTransitionTime": "2026-12-02T03:00:00Z",
        }
    ]


def event(reason: str, message: str, kind: str = "Warning") -> dict[str, Any]:
    return {
        "involvedObject": {"kind": "Pod", "name": "llama-7d9f8b6c5d-x2x4z", "namespace": "llm"},
        "reason": reason,
        "message": message,
        "type": kind,
        "lastTimestamp": "2026-12-02T03:00:05Z",
    }


def gpu_node(name: str, gpus: int = 1, taints: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"taints": taints if taints is not None else [GPU_TAINT]},
        "status": {"allocatable": {"cpu": "32", "nvidia.com/gpu": str(gpus)}},
    }


READY = [
    {"type": "PodScheduled", "status": "True"},
    {"type": "Initialized", "status": "True"},
    {"type": "ContainersReady", "status": "True"},
    {"type": "Ready", "status": "True"},
]
INSUFFICIENT = (
    "0/2 nodes are available: 2 Insufficient nvidia.com/gpu. preemption: 0/2 nodes are available: "
    "2 No preemption victims found for incoming pod."
)
TAINT = (
    "0/1 nodes are available: 1 node(s) had untolerated taint(s). preemption: 0/1 nodes are available: "
    "1 Preemption is not helpful for scheduling."
)
UNBOUND = (
    "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/2 nodes are "
    "available: 2 Preemption is not helpful for scheduling."
)
AFFINITY = (
    "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes "
    "are available: 3 Preemption is not helpful for scheduling."
)
PULL_BACKOFF = {
    "name": "tgi",
    "image": "ghcr.io/huggingface/text-generation-inference:9.9.9",
    "ready": False,
    "state": {
        "waiting": {
            "reason": "ImagePullBackOff",
            "message": 'Back-off pulling image "ghcr.io/huggingface/text-generation-inference:9.9.9"',
        }
    },
}


@pytest.mark.parametrize(
    ("case", "the_pod", "events", "kind", "subject", "detail_has"),
    [
        (
            "no free GPU",
            pod(conditions=unschedulable(INSUFFICIENT)),
            [],
            "insufficient",
            "nvidia.com/gpu",
            "0/2",
        ),
        (
            "no free GPU, from the event only",
            pod(),
            [event("FailedScheduling", INSUFFICIENT)],
            "insufficient",
            "nvidia.com/gpu",
            "Insufficient",
        ),
        (
            "GPU and memory",
            pod(
                conditions=unschedulable(
                    "0/3 nodes are available: 1 Insufficient memory, 2 Insufficient nvidia.com/gpu."
                )
            ),
            [],
            "insufficient",
            "memory, nvidia.com/gpu",
            "memory",
        ),
        (
            "untolerated taint",
            pod(conditions=unschedulable(TAINT)),
            [],
            "taint",
            "nvidia.com/gpu=present:NoSchedule",
            "taint",
        ),
        (
            "unbound claim",
            pod(conditions=unschedulable(UNBOUND), claim="llama-cache"),
            [],
            "claim",
            "llama-cache",
            "unbound",
        ),
        ("node selector", pod(conditions=unschedulable(AFFINITY)), [], "affinity", "", "affinity"),
        ("no scheduler", pod(), [], "unscheduled", "", "no scheduler"),
        (
            "image pull back-off",
            pod(node="gpu-0", containers=[PULL_BACKOFF]),
            [event("Failed", 'Failed to pull image "ghcr.io/huggingface/text-generation-inference:9.9.9"')],
            "image",
            "ghcr.io/huggingface/text-generation-inference:9.9.9",
            "ImagePullBackOff",
        ),
        (
            "image pull failing, seen in events before the status",
            pod(node="gpu-0"),
            [event("Failed", 'Failed to pull image "x:1": rpc error: code = NotFound')],
            "image",
            "",
            "Failed to pull image",
        ),
        (
            "crash loop",
            pod(
                phase="Running",
                node="gpu-0",
                containers=[
                    {
                        "name": "tgi",
                        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
                    }
                ],
            ),
            [],
            "crash",
            "",
            "CrashLoopBackOff",
        ),
        (
            "running, model loading",
            pod(
                phase="Running",
                node="gpu-0",
                conditions=[
                    {"type": "PodScheduled", "status": "True"},
                    {
                        "type": "Ready",
                        "status": "False",
                        "reason": "ContainersNotReady",
                        "message": "containers with unready status: [tgi]",
                    },
                ],
            ),
            [],
            "not-ready",
            "",
            "unready status",
        ),
    ],
)
def test_diagnose_pod(
    case: str,
    the_pod: dict[str, Any],
    events: list[dict[str, Any]],
    kind: str,
    subject: str,
    detail_has: str,
) -> None:
    problem = diagnose_pod(the_pod, events, [gpu_node("gpu-0")])
    assert problem is not None, case
    assert (problem.kind, problem.subject) == (kind, subject), case
    assert detail_has in problem.detail, case
    assert problem.pod == "llama-7d9f8b6c5d-x2x4z"


def test_untolerated_taints_only_of_the_nodes_the_pod_selects() -> None:
    selected = gpu_node("gpu-0", taints=[{"key": "pool", "value": "a", "effect": "NoSchedule"}])
    selected["metadata"]["labels"] = {"pool": "a"}
    other = gpu_node("gpu-9", taints=[{"key": "pool", "value": "b", "effect": "NoSchedule"}])
    other["metadata"]["labels"] = {"pool": "b"}
    the_pod = pod()
    the_pod["spec"]["nodeSelector"] = {"pool": "a"}
    assert untolerated_taints(the_pod, [selected, other]) == ["pool=a:NoSchedule"]


def test_a_running_ready_pod_has_no_problem() -> None:
    assert diagnose_pod(pod(phase="Running", node="gpu-0", conditions=READY), [], []) is None


def test_a_terminating_pod_is_not_diagnosed() -> None:
    terminating = pod(conditions=unschedulable(INSUFFICIENT))
    terminating["metadata"]["deletionTimestamp"] = "2026-12-02T03:00:00Z"
    assert diagnose_pod(terminating, [], []) is None


def test_events_of_other_pods_do_not_count() -> None:
    other = event("FailedScheduling", INSUFFICIENT)
    other["involvedObject"]["name"] = "another-pod"
    problem = diagnose_pod(pod(), [other], [])
    assert problem is not None
    assert problem.kind == "unscheduled"


@pytest.mark.parametrize(
    ("tolerations", "expected"),
    [
        ([], ["nvidia.com/gpu=present:NoSchedule", "dedicated=llm:NoExecute"]),
        (
            [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            ["dedicated=llm:NoExecute"],
        ),
        (
            [{"key": "nvidia.com/gpu", "operator": "Equal", "value": "absent"}],
            ["nvidia.com/gpu=present:NoSchedule", "dedicated=llm:NoExecute"],
        ),
        (
            [
                {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present"},
                {"key": "dedicated", "operator": "Exists"},
            ],
            [],
        ),
        ([{"operator": "Exists"}], []),  # tolerates everything
        (
            [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
            ["nvidia.com/gpu=present:NoSchedule", "dedicated=llm:NoExecute"],
        ),
    ],
)
def test_untolerated_taints_follow_the_toleration_rules(
    tolerations: list[dict[str, Any]], expected: list[str]
) -> None:
    nodes = [
        gpu_node("gpu-0"),
        gpu_node("gpu-1", taints=[GPU_TAINT, {"key": "dedicated", "value": "llm", "effect": "NoExecute"}]),
        gpu_node("cpu-0", taints=[{"key": "spot", "effect": "PreferNoSchedule"}]),
    ]
    assert untolerated_taints(pod(tolerations=tolerations), nodes) == expected


@pytest.mark.parametrize(
    ("hpa", "serving"),
    [
        (None, "llm"),  # no HPA (KEDA's is named after the ScaledObject): the service's name
        ({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "llm"}}}, "llm"),
        ({"spec": {"scaleTargetRef": {"kind": "Deployment", "name": "llm-0123456789"}}}, "llm-0123456789"),
        ({"spec": {}}, "llm"),
    ],
    ids=["no HPA", "before any switch", "after a blue-green switch", "HPA without a target"],
)
def test_the_pods_checked_are_those_of_the_deployment_that_serves(
    hpa: dict[str, Any] | None, serving: str
) -> None:
    from tgi_autoscaler.doctor.collect import serving_deployment

    assert serving_deployment("llm", hpa) == serving
