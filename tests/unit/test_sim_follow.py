"""What a simulated replica does for each state of the pod it plays (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from tgi_autoscaler_dev.sim.follow import PodState, pod_model, pod_state


def pod(
    phase: str | None, *, ready: str | None = None, deleting: bool = False, node: str | None = "n"
) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if phase is not None:
        status["phase"] = phase
    if ready is not None:
        status["conditions"] = [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": ready},
        ]
    meta: dict[str, Any] = {"name": "p", "namespace": "ns"}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-02T03:00:00Z"
    spec = {"nodeName": node} if node else {}
    return {"metadata": meta, "spec": spec, "status": status}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (pod(None, node=None), "absent"),  # just created, not scheduled
        (pod("Pending", ready="False", node=None), "absent"),  # unschedulable
        (pod("Pending", ready="False"), "absent"),  # bound, containers not started
        (pod("Running", ready="False"), "loading"),
        (pod("Running"), "loading"),  # no Ready condition yet
        (pod("Running", ready="True"), "ready"),
        (pod("Running", ready="True", deleting=True), "terminating"),
        (pod("Pending", deleting=True), "terminating"),
        (pod("Succeeded", ready="False"), "terminating"),
        (pod("Failed"), "terminating"),
    ],
)
def test_pod_state(obj: dict[str, Any], expected: PodState) -> None:
    assert pod_state(obj) == expected


@pytest.mark.parametrize(
    ("container", "expected"),
    [
        ({"env": [{"name": "PORT", "value": "80"}, {"name": "MODEL_ID", "value": "org/a"}]}, "org/a"),
        ({"command": ["vllm", "serve"], "args": ["--model", "org/b", "--port", "8000"]}, "org/b"),
        ({"args": ["--model-path", "org/c"]}, "org/c"),
        ({"args": ["--port", "8000"]}, None),
    ],
)
def test_the_replica_reports_the_model_its_pod_was_told_to_serve(
    container: dict[str, Any], expected: str | None
) -> None:
    assert pod_model({"spec": {"containers": [{"name": "server", **container}]}}) == expected
    assert pod_model({"spec": {}}) is None
