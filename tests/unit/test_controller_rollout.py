"""A blue-green switch driven through the reconciler, against the in-memory API store.

The plan's table lives in test_render_rollout.py; this checks that the reconciler does what a plan
says: the candidate is created beside the serving Deployment and sized through the scale
subresource, nothing the Service routes to moves until the candidate is Ready, then the Service,
the HPA and the state switch in one reconcile, the previous Deployment survives the prune for its
grace period, and the status and events say so.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.unit.controller_fakes import FakeKube
from tests.unit.test_controller_reconciler import (
    KEY,
    SPEC,
    _edit_spec,
    _service_configmap,
    _status,
)
from tests.unit.test_controller_reconciler import _reconciler as _make_reconciler
from tgi_autoscaler.config.constants import ANNOTATION_ROLLOUT, LABEL_MODEL_HASH
from tgi_autoscaler.config.service import parse_service_yaml
from tgi_autoscaler.controller.events import EventRecorder
from tgi_autoscaler.controller.reconciler import Reconciler
from tgi_autoscaler.controller.rollout import PROGRESS_POLL_S, plan_step, requeue_after, server_deployments
from tgi_autoscaler.controller.status import ServiceRow, format_table, parse_status
from tgi_autoscaler.kube.client import KubeObject
from tgi_autoscaler.render.rollout import candidate_name, model_hash, view_of

pytestmark = pytest.mark.unit

NEW_SPEC = SPEC.replace("Llama-2-7b-chat-hf", "Llama-2-13b-chat-hf")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _reconciler(kube: FakeKube, clock: Clock) -> tuple[Reconciler, EventRecorder]:
    return _make_reconciler(kube, wall_clock=clock)


def _deployment(kube: FakeKube, name: str) -> KubeObject:
    found = kube.find("Deployment", "llm", name)
    assert found is not None, name
    return found


def _settle(kube: FakeKube, name: str, *, ready: int | None = None) -> None:
    """What the Deployment controller and kubelets would report: every pod updated, ``ready`` Ready."""
    deployment = _deployment(kube, name)
    replicas = deployment["spec"].get("replicas", 1)
    deployment["metadata"]["generation"] = 1
    deployment["status"] = {
        "observedGeneration": 1,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas if ready is None else ready,
    }
    kube.put(deployment)


def _service(kube: FakeKube) -> KubeObject:
    found = kube.find("Service", "llm", "llama")
    assert found is not None
    return found


def _hpa_target(kube: FakeKube) -> str:
    hpa = kube.find("HorizontalPodAutoscaler", "llm", "llama")
    assert hpa is not None
    return str(hpa["spec"]["scaleTargetRef"]["name"])


async def test_a_model_change_switches_once_the_candidate_is_ready_and_keeps_the_old_for_rollback() -> None:
    kube, clock = FakeKube(), Clock()
    kube.put(_service_configmap())
    reconciler, recorder = _reconciler(kube, clock)
    first = await reconciler.reconcile(KEY)
    assert first.requeue_after_s is None, "nothing to wait for in a stable service"
    old_hash = model_hash(parse_service_yaml(SPEC, source="t"))
    assert _deployment(kube, "llama")["spec"]["template"]["metadata"]["labels"][LABEL_MODEL_HASH] == old_hash
    # The HPA holds three pods.
    serving = _deployment(kube, "llama")
    serving["spec"]["replicas"] = 3
    kube.put(serving)
    _settle(kube, "llama")

    _edit_spec(kube, NEW_SPEC)
    new_hash = model_hash(parse_service_yaml(NEW_SPEC, source="t"))
    candidate = candidate_name("llama", new_hash)
    kube.calls.clear()
    started = await reconciler.reconcile(KEY)
    assert started.requeue_after_s == PROGRESS_POLL_S
    assert ("merge_patch", f"Deployment/llm/{candidate}") in kube.calls, "sized through the scale subresource"
    assert _deployment(kube, candidate)["spec"]["replicas"] == 3, "sized to what the HPA holds"
    assert _deployment(kube, candidate)["spec"]["selector"]["matchLabels"][LABEL_MODEL_HASH] == new_hash
    assert _service(kube)["spec"]["selector"][LABEL_MODEL_HASH] == old_hash, "the Service stays"
    assert _hpa_target(kube) == "llama"
    serving_env = _deployment(kube, "llama")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "MODEL_ID", "value": "meta-llama/Llama-2-7b-chat-hf"} in serving_env, "left as it was"
    assert ("Normal", "RolloutStarted") in [(e.type, e.reason) for e in recorder.recorded]
    assert _status(kube)["rolloutPhase"] == "Progressing"
    assert _status(kube)["candidateDeployment"] == candidate

    _settle(kube, candidate, ready=2)
    clock.now += 30
    waiting = await reconciler.reconcile(KEY)
    assert waiting.requeue_after_s == PROGRESS_POLL_S
    assert _service(kube)["spec"]["selector"][LABEL_MODEL_HASH] == old_hash, "2 of 3 Ready is not enough"

    _settle(kube, candidate)
    clock.now += 30
    switched = await reconciler.reconcile(KEY)
    assert _service(kube)["spec"]["selector"][LABEL_MODEL_HASH] == new_hash
    assert _hpa_target(kube) == candidate
    state = json.loads(_service(kube)["metadata"]["annotations"][ANNOTATION_ROLLOUT])
    assert state["phase"] == "Draining"
    assert state["previous"] == "llama"
    assert kube.find("Deployment", "llm", "llama") is not None, "kept for the grace period"
    assert ("Normal", "Switched") in [(e.type, e.reason) for e in recorder.recorded]
    assert switched.requeue_after_s is not None
    assert 600 <= switched.requeue_after_s <= 601

    clock.now += 601
    done = await reconciler.reconcile(KEY)
    assert kube.find("Deployment", "llm", "llama") is None, "deleted once the grace period ended"
    assert done.requeue_after_s is None
    assert _status(kube)["rolloutPhase"] == "Stable"
    assert _status(kube)["servingDeployment"] == candidate


async def test_a_candidate_that_never_gets_ready_fails_once_and_leaves_the_service_alone() -> None:
    kube, clock = FakeKube(), Clock()
    kube.put(_service_configmap())
    reconciler, recorder = _reconciler(kube, clock)
    await reconciler.reconcile(KEY)
    _settle(kube, "llama")
    _edit_spec(kube, NEW_SPEC)
    await reconciler.reconcile(KEY)
    candidate = candidate_name("llama", model_hash(parse_service_yaml(NEW_SPEC, source="t")))
    _settle(kube, candidate, ready=0)
    for _ in range(2):
        clock.now += 1801
        await reconciler.reconcile(KEY)
    warnings = [e for e in recorder.recorded if e.reason == "RolloutFailed"]
    assert len(warnings) == 1
    assert warnings[0].type == "Warning"
    assert "0/1 Ready pods" in warnings[0].message
    assert _hpa_target(kube) == "llama"
    assert kube.find("Deployment", "llm", candidate) is not None, "kept for inspection"
    status = _status(kube)
    assert status["rolloutPhase"] == "Failed"
    assert "the Service stays on llama" in status["message"]

    # A revert deletes the candidate; the serving Deployment was never touched.
    _edit_spec(kube, SPEC)
    await reconciler.reconcile(KEY)
    assert kube.find("Deployment", "llm", candidate) is None
    assert ("Normal", "RolloutAbandoned") in [(e.type, e.reason) for e in recorder.recorded]
    assert _status(kube)["rolloutPhase"] == "Stable"


def _live(
    name: str, *, labels: dict[str, str], spec: dict[str, Any], status: dict[str, Any]
) -> dict[str, Any]:
    return {
        "kind": "Deployment",
        "metadata": {"name": name, "generation": 2, "labels": labels, "annotations": {}},
        "spec": spec,
        "status": status,
    }


SERVER = {"app.kubernetes.io/component": "server"}


@pytest.mark.parametrize(
    ("status", "rolled_out"),
    [
        ({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 0}, True),
        ({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2}, False),
        ({"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "readyReplicas": 3}, False),
        ({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1, "readyReplicas": 2}, False),
    ],
    ids=["updated, not Ready yet", "generation not observed", "an old pod left", "not every pod updated"],
)
def test_rolled_out_means_every_pod_runs_the_current_template(
    status: dict[str, Any], rolled_out: bool
) -> None:
    template = {"metadata": {"labels": {LABEL_MODEL_HASH: "abc"}}}
    view = view_of(_live("x", labels=SERVER, spec={"replicas": 2, "template": template}, status=status))
    assert view.rolled_out is rolled_out
    assert view.color == "abc"


def test_only_server_deployments_take_part_in_a_rollout() -> None:
    owned = [
        _live("llama", labels=SERVER, spec={}, status={}),
        _live("llama-activator", labels={"app.kubernetes.io/component": "activator"}, spec={}, status={}),
        {"kind": "Service", "metadata": {"name": "llama", "labels": SERVER}},
    ]
    assert list(server_deployments(owned)) == ["llama"]


def test_a_stable_service_needs_no_scale_write_and_no_requeue() -> None:
    spec = parse_service_yaml(SPEC, source="t")
    step = plan_step("llama", spec, owned=[], service=None, hpa=None, now=0.0, spec_changed=True)
    assert step.scale == {}
    assert step.keep == frozenset()
    assert requeue_after(step.plan, 0.0, 600) is None


def test_the_status_table_shows_the_rollout() -> None:
    row = ServiceRow(
        namespace="llm",
        name="llama",
        phase="Ready",
        current=3,
        desired=3,
        minimum=1,
        maximum=4,
        queue_metric="tgi_request_demand",
        queue_target="3",
        message="rollout Progressing",
        stale=False,
        rollout="Progressing llama -> llama-0123456789",
    )
    table = format_table([row])
    assert "ROLLOUT" in table.splitlines()[0]
    assert "Progressing llama -> llama-0123456789" in table


def test_the_rollout_summary_round_trips_through_the_status_annotation() -> None:
    raw = json.dumps(
        {
            "phase": "Ready",
            "message": "m",
            "observedHash": "h",
            "observedResourceVersion": "1",
            "rolloutPhase": "Draining",
            "servingDeployment": "llama-0123456789",
        }
    )
    status = parse_status(raw)
    assert status is not None
    assert status.rollout is not None
    assert status.rollout.phase == "Draining"
    assert status.document()["servingDeployment"] == "llama-0123456789"
