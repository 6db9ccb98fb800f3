"""Where the reconciler meets the rollout plan: the cluster's server Deployments and state in, a step out.

The plan itself (``render/rollout.py``) is a pure function of what the cluster holds. This module
reads that from the watch caches (the service's server Deployments, the rollout state on its
Service, the HPA's count) and says what a step needs besides the apply: which replica counts to
write through the scale subresource, which objects the prune must leave alone, and when to look
again, since a candidate turning Ready changes no field the controller manages and so triggers no
reconcile by itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tgi_autoscaler.config.constants import (
    ANNOTATION_ROLLOUT,
    COMPONENT_SERVER,
    LABEL_COMPONENT,
    LABEL_MODEL_HASH,
)
from tgi_autoscaler.config.service import TGIServiceSpec
from tgi_autoscaler.render.rollout import (
    DeploymentView,
    Plan,
    RolloutState,
    model_hash,
    plan_rollout,
    view_of,
)

__all__ = ["Step", "plan_step", "requeue_after", "server_deployments"]

# How often a rollout in progress is looked at: the switch follows the candidate's last Ready pod
# by at most this long.
PROGRESS_POLL_S = 2.0
FAILED_POLL_S = 30.0


@dataclass(frozen=True)
class Step:
    plan: Plan
    # Deployment -> replica count to write through the scale subresource (when it differs).
    scale: Mapping[str, int]
    keep: frozenset[str]  # Deployments the prune must leave as they are


def server_deployments(owned: Iterable[Mapping[str, Any]]) -> dict[str, DeploymentView]:
    """The service's server Deployments (not the activator's or the auth proxy's), by name."""
    views: dict[str, DeploymentView] = {}
    for obj in owned:
        meta = obj.get("metadata") or {}
        if obj.get("kind") != "Deployment" or meta.get("deletionTimestamp"):
            continue
        if (meta.get("labels") or {}).get(LABEL_COMPONENT) != COMPONENT_SERVER:
            continue
        view = view_of(obj)
        views[view.name] = view
    return views


def rollout_state(service: Mapping[str, Any] | None) -> RolloutState | None:
    if service is None:
        return None
    annotations = (service.get("metadata") or {}).get("annotations") or {}
    return RolloutState.parse(annotations.get(ANNOTATION_ROLLOUT))


def plan_step(
    name: str,
    spec: TGIServiceSpec,
    *,
    owned: Iterable[Mapping[str, Any]],
    service: Mapping[str, Any] | None,
    hpa: Mapping[str, Any] | None,
    now: float,
    spec_changed: bool,
) -> Step:
    """The next rollout step of service ``name`` from the cached objects (pure)."""
    views = server_deployments(owned)
    hpa_replicas = None
    if hpa is not None:
        desired = (hpa.get("status") or {}).get("desiredReplicas")
        hpa_replicas = desired if isinstance(desired, int) and desired > 0 else None
    selector = ((service or {}).get("spec") or {}).get("selector") or {}
    plan = plan_rollout(
        name,
        model_hash(spec),
        spec.rollout,
        state=rollout_state(service),
        deployments=views,
        hpa_replicas=hpa_replicas,
        min_replicas=spec.autoscaling.min_replicas,
        now=now,
        spec_changed=spec_changed,
        service_selects=selector.get(LABEL_MODEL_HASH),
    )
    wanted = {d.name: d.replicas for d in plan.apply if d.replicas is not None}
    wanted.update(dict(plan.scale))
    scale = {
        deployment: replicas
        for deployment, replicas in sorted(wanted.items())
        if deployment not in views or views[deployment].replicas != replicas
    }
    return Step(plan=plan, scale=scale, keep=frozenset(plan.keep))


def requeue_after(plan: Plan, now: float, grace_s: float) -> float | None:
    """Seconds until the rollout must be looked at again; None when nothing is pending."""
    state = plan.state
    if state.phase == "Progressing":
        return PROGRESS_POLL_S
    if state.phase == "Failed":
        return FAILED_POLL_S
    if state.phase == "Draining":
        switched = state.switched_at if state.switched_at is not None else now
        return max(1.0, switched + grace_s - now + 0.5)
    return None
