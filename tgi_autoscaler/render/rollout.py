"""The blue-green rollout of a service's server Deployments, planned as a pure function of what exists.

A change of what is served (model id or revision, engine kind or image, shards, quantization, dtype)
must never leave two models answering behind one Service. ``plan_rollout`` decides, from the desired
model hash, the Deployments in the cluster and the rollout state persisted on the Service, what the
controller does next: which Deployments get the rendered template, which are left alone, which are
deleted, where the Service selector and the HPA's ``scaleTargetRef`` point, and which event to tell
the user. Everything it reads lives in the cluster (objects and one annotation), never in memory, so
a restarted controller or a new leader computes the same plan and the rollout resumes where it was.

Phases:

- ``Stable``: one Deployment serves the desired model; nothing else exists.
- ``Progressing``: a candidate Deployment for the new model is starting, the Service stays on the
  serving one.
- ``Failed``: the candidate missed ``readyTimeoutSeconds``; the Service stays, nothing is deleted, and
  the next edit (a fix or a revert) replaces the candidate.
- ``Draining``: the Service switched; the previous Deployment is kept for ``gracePeriodSeconds`` so a
  revert switches back without a cold start, then deleted.

Adoption: a Deployment created before blue-green existed is named after the service and its pods do
not carry the model-hash label, so a Service selecting on that label would lose them. It is adopted
as the serving Deployment without touching it (no pod restarts at upgrade), the Service keeps the
selector without the label, and the first change after the upgrade rolls it in place, adding the
label; once that rollout completed the Service selects on the label and later model changes switch.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from tgi_autoscaler.config.constants import ANNOTATION_ROLLOUT, LABEL_INSTANCE, LABEL_MODEL_HASH
from tgi_autoscaler.config.service import RolloutSpec, RolloutStrategy, TGIServiceSpec
from tgi_autoscaler.render.meta import Manifest

__all__ = [
    "ANNOTATION_MODEL",
    "DEPLOYMENT_SUFFIX_PATTERN",
    "DeploymentPlan",
    "DeploymentView",
    "Event",
    "Phase",
    "Plan",
    "RolloutState",
    "candidate_name",
    "deployment_for",
    "hpa_for",
    "initial_plan",
    "model_hash",
    "model_identity",
    "plan_rollout",
    "service_for",
    "step_objects",
    "view_of",
]

Phase = Literal["Stable", "Progressing", "Failed", "Draining"]

_HASH_LENGTH = 10

# A server Deployment's name is the service's, or the service's and a model hash: a regex (RE2, as
# PromQL anchors it) to append to the service name in selectors of kube-state-metrics' series and
# pod names, so alerts and dashboards follow a switch.
DEPLOYMENT_SUFFIX_PATTERN = f"(-[0-9a-f]{{{_HASH_LENGTH}}})?"

# On a server Deployment: the model hash its template runs (the label may be older on an adopted one).
ANNOTATION_MODEL = "tgi-autoscaler.io/model"


def model_identity(spec: TGIServiceSpec) -> dict[str, Any]:
    """What defines the model a pod serves: a change here is a change of answers, not of capacity."""
    engine, model = spec.engine, spec.model
    return {
        "model": model.id,
        "revision": model.revision,
        "engine": engine.kind.value,
        "image": engine.effective_image,
        "shards": engine.num_shard,
        "quantize": None if engine.quantize is None else str(engine.quantize),
        "dtype": None if engine.dtype is None else engine.dtype.value,
    }


def model_hash(spec: TGIServiceSpec) -> str:
    """A short, stable digest of ``model_identity``: a label value and a Deployment name suffix."""
    encoded = json.dumps(model_identity(spec), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(encoded.encode()).hexdigest()[:_HASH_LENGTH]


def candidate_name(service: str, model: str) -> str:
    """The Deployment serving ``model``: the service name and the model hash (fits 63 characters)."""
    return f"{service}-{model}"


@dataclass(frozen=True)
class DeploymentView:
    """One server Deployment of the service as the cluster has it."""

    name: str
    model: str  # model hash its template runs (annotation on the Deployment)
    # The model-hash label on its pod template: the model it was created for, kept through in-place
    # rolls (its selector includes it and selectors are immutable); None on an adopted Deployment.
    color: str | None
    replicas: int  # spec.replicas
    ready: int  # status.readyReplicas
    # observedGeneration current and every pod from the current template (so every pod carries
    # its labels); readiness is ``ready``.
    rolled_out: bool


@dataclass(frozen=True)
class RolloutState:
    """What the controller persists on the Service between reconciles (timestamps in epoch seconds)."""

    phase: Phase
    serving: str
    candidate: str | None = None
    previous: str | None = None
    started_at: float | None = None
    switched_at: float | None = None
    message: str = ""

    def document(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if value is not None and value != ""}

    @classmethod
    def parse(cls, raw: str | None) -> RolloutState | None:
        """The state from its annotation; None when absent or unreadable (planned as a fresh start)."""
        if not raw:
            return None
        try:
            data = json.loads(raw)
            return cls(
                phase=data["phase"],
                serving=str(data["serving"]),
                candidate=data.get("candidate"),
                previous=data.get("previous"),
                started_at=data.get("started_at"),
                switched_at=data.get("switched_at"),
                message=str(data.get("message", "")),
            )
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class DeploymentPlan:
    """A Deployment to apply from the rendered template, running ``model`` and labelled ``color``.

    ``replicas`` is set only where the HPA does not own the count (a candidate before its switch, the
    serving Deployment shrinking in GPU-budget mode); None leaves it to the HPA.
    """

    name: str
    model: str
    color: str | None
    replicas: int | None = None


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    state: RolloutState
    apply: tuple[DeploymentPlan, ...]
    keep: tuple[str, ...]  # left exactly as they are (the old model's template is no longer rendered)
    scale: tuple[tuple[str, int], ...]  # kept Deployments whose replica count the rollout sets
    delete: tuple[str, ...]
    service_model: str | None  # Service selector's model-hash value; None: no such selector label
    hpa_target: str
    event: Event | None = None


def _target_replicas(hpa_replicas: int | None, min_replicas: int) -> int:
    # A candidate takes the load the HPA sized the serving Deployment for; never fewer than one pod,
    # or nothing could become Ready and the switch would wait forever.
    return max(hpa_replicas or 0, min_replicas, 1)


def _budget_sizes(target: int, candidate_ready: int) -> tuple[int, int]:
    """(candidate, serving) replica counts in GPU-budget mode: one pod moves at a time.

    The serving Deployment keeps at least one pod until the switch (the Service must always have an
    endpoint), so the candidate grows to at most ``target - 1`` before the switch; with a target of
    one there is no spare to give and the candidate gets the serving pod's GPU only after it is gone.
    """
    if target <= 1:
        return 1, 1
    candidate = min(target - 1, candidate_ready + 1)
    return candidate, max(1, target - candidate)


def _switch_needs(target: int, gpu_budget: bool) -> int:
    return max(1, target - 1) if gpu_budget else target


def plan_rollout(
    service: str,
    desired: str,
    rollout: RolloutSpec,
    *,
    state: RolloutState | None,
    deployments: Mapping[str, DeploymentView],
    hpa_replicas: int | None,
    min_replicas: int,
    now: float,
    spec_changed: bool = False,
    service_selects: str | None = None,
) -> Plan:
    """The next step of the rollout of model hash ``desired``; deterministic in its arguments.

    ``spec_changed``: the spec differs from the one last applied (an adopted Deployment gets the
    model-hash label only then, so that upgrading the controller restarts no pod).
    ``service_selects``: the model hash the live Service selects on, if any.
    """
    serving = _serving(service, desired, state, deployments)
    current = deployments.get(serving)
    if current is None:
        # Nothing runs yet (a new service, or every Deployment deleted by hand): start the desired
        # one, named after the service (``kubectl get deployment <service>`` works until the first
        # switch; its selector has no model hash, as an adopted one, see ``deployment_for``).
        name = service
        return Plan(
            state=RolloutState(phase="Stable", serving=name),
            apply=(DeploymentPlan(name, desired, color=desired),),
            keep=(),
            scale=(),
            delete=tuple(sorted(n for n in deployments if n != name)),
            service_model=desired,
            hpa_target=name,
        )
    # Every pod of a Deployment created with its label carries it; an adopted one gets it by a
    # roll, and the Service selects on it once no unlabelled pod is left (and from then on, even
    # while a later scale-up or roll is under way).
    routed = current.rolled_out or service_selects == current.color
    service_model = current.color if routed else None
    if current.color is None:
        # Adopted: roll it in place (the label comes with the next change), see the module docstring.
        return _in_place(desired, rollout, current, state, deployments, now, None, spec_changed)
    if rollout.strategy is RolloutStrategy.ROLLING_UPDATE or current.model == desired:
        return _in_place(desired, rollout, current, state, deployments, now, service_model, True)
    # Without an HPA count (KEDA's HPA is not ours to read), what the HPA last wrote to the
    # serving Deployment.
    target = _target_replicas(hpa_replicas if hpa_replicas is not None else current.replicas, min_replicas)
    return _blue_green(service, desired, rollout, current, state, deployments, target, now)


def _serving(
    service: str, desired: str, state: RolloutState | None, deployments: Mapping[str, DeploymentView]
) -> str:
    if state is not None and state.serving in deployments:
        return state.serving
    if service in deployments:
        return service  # from before blue-green, or its state annotation was lost
    labelled = sorted(
        (d for d in deployments.values() if d.color is not None and d.rolled_out),
        key=lambda d: (d.model != desired, d.name),
    )
    return labelled[0].name if labelled else candidate_name(service, desired)


def _in_place(
    desired: str,
    rollout: RolloutSpec,
    current: DeploymentView,
    state: RolloutState | None,
    deployments: Mapping[str, DeploymentView],
    now: float,
    service_model: str | None,
    label: bool,
) -> Plan:
    """The serving Deployment gets the desired template; a pending candidate is no longer wanted."""
    previous, delete = _drain(state, current.name, deployments, now, rollout.grace_period_seconds)
    delete += tuple(n for n in sorted(deployments) if n not in (current.name, previous) and n not in delete)
    # An adopted Deployment's pods get the label with this (or the next) rollout; until every pod
    # has it, the Service keeps selecting without it.
    color = current.color if current.color is not None else (desired if label else None)
    event: Event | None = None
    if state is not None and state.candidate is not None and state.candidate in delete:
        event = Event(
            "Normal",
            "RolloutAbandoned",
            f"candidate Deployment {state.candidate} deleted: the spec serves the model of "
            f"{current.name} again",
        )
    phase: Phase = "Draining" if previous is not None else "Stable"
    new_state = RolloutState(
        phase=phase,
        serving=current.name,
        previous=previous,
        switched_at=state.switched_at if previous is not None and state is not None else None,
    )
    return Plan(
        state=new_state,
        apply=(DeploymentPlan(current.name, desired, color=color),),
        keep=(previous,) if previous is not None else (),
        scale=(),
        delete=delete,
        service_model=service_model,
        hpa_target=current.name,
        event=event,
    )


def _drain(
    state: RolloutState | None,
    serving: str,
    deployments: Mapping[str, DeploymentView],
    now: float,
    grace_s: float,
) -> tuple[str | None, tuple[str, ...]]:
    """The previous Deployment still inside its grace period, and the one to delete if it expired."""
    if state is None or state.previous is None or state.previous == serving:
        return None, ()
    if state.previous not in deployments:
        return None, ()
    switched = state.switched_at if state.switched_at is not None else now
    if now - switched >= grace_s:
        return None, (state.previous,)
    return state.previous, ()


def _blue_green(
    service: str,
    desired: str,
    rollout: RolloutSpec,
    current: DeploymentView,
    state: RolloutState | None,
    deployments: Mapping[str, DeploymentView],
    target: int,
    now: float,
) -> Plan:
    name = candidate_name(service, desired)
    candidate = deployments.get(name)
    started = state.started_at if state is not None and state.candidate == name else None
    started = now if started is None else started
    # A candidate of an earlier edit (failed or overtaken) is replaced, never kept beside this one.
    stale = tuple(
        n
        for n in sorted(deployments)
        if n not in (current.name, name) and (state is None or n != state.previous)
    )
    previous, expired = _drain(state, current.name, deployments, now, rollout.grace_period_seconds)
    # The candidate may be the previous Deployment (a revert inside the grace period): never drop it.
    delete = tuple(n for n in stale + expired if n != name)
    if previous is not None and previous != name:
        # A second switch while the first drains: keep one fallback only, the one serving now.
        delete += (previous,)
    # The pods carry the label the Deployment was created with (color), which an in-place roll of
    # an earlier model change leaves as it was: route by it, not by the model its template runs.
    service_model = current.color
    ready = candidate.ready if candidate is not None else 0
    if rollout.gpu_budget:
        wanted, serving_size = _budget_sizes(target, ready)
        scale: tuple[tuple[str, int], ...] = ((current.name, serving_size),)
    else:
        wanted, scale = target, ()
    needs = _switch_needs(target, rollout.gpu_budget)
    if candidate is not None and candidate.rolled_out and candidate.ready >= needs:
        switched = RolloutState(
            phase="Draining" if not rollout.gpu_budget else "Stable",
            serving=name,
            previous=None if rollout.gpu_budget else current.name,
            switched_at=now,
            message=f"switched from {current.name} after {now - started:.0f}s",
        )
        # GPU budget: the old pods hold the GPUs the candidate needs to reach the HPA's count.
        drop = (current.name,) if rollout.gpu_budget else ()
        return Plan(
            state=switched,
            apply=(DeploymentPlan(name, desired, color=desired),),
            keep=() if rollout.gpu_budget else (current.name,),
            scale=(),
            delete=tuple(sorted(set(delete + drop))),
            service_model=desired,
            hpa_target=name,
            event=Event(
                "Normal",
                "Switched",
                f"Service switched to {name} ({candidate.ready} Ready pods) from {current.name}",
            ),
        )
    waited = now - started
    failed = waited >= rollout.ready_timeout_seconds
    phase: Phase = "Failed" if failed else "Progressing"
    message = (
        f"candidate {name} has {ready}/{needs} Ready pods after {waited:.0f}s "
        f"(timeout {rollout.ready_timeout_seconds}s); the Service stays on {current.name}"
    )
    event = None
    if failed and (state is None or state.phase != "Failed"):
        event = Event("Warning", "RolloutFailed", message)
    elif candidate is None:
        event = Event("Normal", "RolloutStarted", f"starting {name} with {wanted} pods beside {current.name}")
    new_state = RolloutState(
        phase=phase,
        serving=current.name,
        candidate=name,
        started_at=started,
        message=message,
    )
    return Plan(
        state=replace(new_state),
        apply=(DeploymentPlan(name, desired, color=desired, replicas=wanted),),
        keep=(current.name,),
        scale=scale,
        delete=tuple(sorted(set(delete))),
        service_model=service_model,
        hpa_target=current.name,
        event=event,
    )


def deployment_for(rendered: Manifest, plan: DeploymentPlan) -> Manifest:
    """The rendered server Deployment as ``plan`` names and labels it (a copy).

    A blue-green Deployment also selects on the model-hash label, so two of them never claim each
    other's pods; one named after the service (the first, or an adopted one) keeps the selector it
    was created with (selectors are immutable). ``spec.replicas`` is never part of it: the HPA owns
    the count, and the rollout sets a candidate's through the scale subresource, so that the apply
    never takes the field over (dropping it from a later apply would reset the Deployment to one pod).
    """
    out = copy.deepcopy(rendered)
    meta = out["metadata"]
    meta["name"] = plan.name
    meta.setdefault("annotations", {})[ANNOTATION_MODEL] = plan.model
    spec = out["spec"]
    spec.pop("replicas", None)
    template_labels = spec["template"]["metadata"]["labels"]
    selector = spec["selector"]["matchLabels"]
    selector.pop(LABEL_MODEL_HASH, None)
    if plan.color is None:
        template_labels.pop(LABEL_MODEL_HASH, None)
    else:
        template_labels[LABEL_MODEL_HASH] = plan.color
        if plan.name != meta.get("labels", {}).get(LABEL_INSTANCE):
            selector[LABEL_MODEL_HASH] = plan.color
    return out


def _select_model(selector: dict[str, Any], model: str | None) -> None:
    if model is None:
        selector.pop(LABEL_MODEL_HASH, None)
    else:
        selector[LABEL_MODEL_HASH] = model


def service_for(rendered: Manifest, model: str | None) -> Manifest:
    """The rendered Service routing to the pods of ``model`` (None: to every server pod)."""
    out = copy.deepcopy(rendered)
    _select_model(out["spec"]["selector"], model)
    return out


def hpa_for(rendered: Manifest, target: str) -> Manifest:
    """The rendered HPA (or KEDA ScaledObject: the same field) scaling the Deployment ``target``."""
    out = copy.deepcopy(rendered)
    out["spec"]["scaleTargetRef"]["name"] = target
    return out


def _is(obj: Manifest, kind: str, name: str) -> bool:
    return obj.get("kind") == kind and (obj.get("metadata") or {}).get("name") == name


def step_objects(rendered: Sequence[Manifest], service: str, plan: Plan) -> list[Manifest]:
    """The rendered objects of ``service`` as one step of ``plan`` has them (copies, same order).

    The server Deployment (the one named after the service) becomes the Deployments the plan
    applies; the Service, and an InferencePool where rendered, route to the plan's model and carry
    the rollout state; the HPA or ScaledObject scales the plan's target. Everything else is as
    rendered.
    """
    out: list[Manifest] = []
    for obj in rendered:
        if _is(obj, "Deployment", service):
            out.extend(deployment_for(obj, p) for p in plan.apply)
        elif _is(obj, "Service", service):
            routed = service_for(obj, plan.service_model)
            annotations = routed["metadata"].setdefault("annotations", {})
            annotations[ANNOTATION_ROLLOUT] = json.dumps(plan.state.document(), sort_keys=True)
            out.append(routed)
        elif _is(obj, "InferencePool", service):
            pool = copy.deepcopy(obj)
            _select_model(pool["spec"]["selector"]["matchLabels"], plan.service_model)
            out.append(pool)
        elif _is(obj, "HorizontalPodAutoscaler", service) or _is(obj, "ScaledObject", service):
            out.append(hpa_for(obj, plan.hpa_target))
        else:
            out.append(copy.deepcopy(obj))
    return out


def initial_plan(service: str, spec: TGIServiceSpec) -> Plan:
    """The step of a service nothing of which runs yet: what ``render`` prints."""
    return plan_rollout(
        service,
        model_hash(spec),
        spec.rollout,
        state=None,
        deployments={},
        hpa_replicas=None,
        min_replicas=spec.autoscaling.min_replicas,
        now=0.0,
    )


def view_of(deployment: Mapping[str, Any]) -> DeploymentView:
    """How ``plan_rollout`` sees one live server Deployment."""
    meta = deployment.get("metadata") or {}
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    replicas = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    current = int(meta.get("generation") or 0) <= int(status.get("observedGeneration") or 0)
    return DeploymentView(
        name=str(meta.get("name", "")),
        model=str((meta.get("annotations") or {}).get(ANNOTATION_MODEL, "")),
        color=template_labels.get(LABEL_MODEL_HASH),
        replicas=replicas,
        ready=int(status.get("readyReplicas") or 0),
        # No pod of an older template left (those may lack the label the Service selects on).
        rolled_out=current and updated >= replicas and int(status.get("replicas") or 0) <= updated,
    )
