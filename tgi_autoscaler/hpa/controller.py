"""One HPA sync as a pure function: ``step(state, now, metric_value, spec) -> (state, Decision)``.

Mirrors ``reconcileAutoscaler`` in pkg/controller/podautoscaler/horizontal.go (Kubernetes v1.36) for
External metrics: the special cases for a target at zero, above ``maxReplicas`` or below
``minReplicas``; the largest proposal over all metrics (``computeReplicasForMetrics``), where a
missing metric blocks any scale-down but not a scale-up; then stabilization and rate limits
(legacy or ``behavior``); and the history the controller keeps between syncs (recommendations,
scale events, the ``ScaledToZero`` condition). The controller keeps that history in memory per
HPA; here it is the immutable ``HpaState`` passed in and returned, and time is whatever the
caller says it is, so any sequence of syncs can be replayed exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from tgi_autoscaler.hpa.behavior import resolve_behavior
from tgi_autoscaler.hpa.normalize import (
    LimitReason,
    PolicyLimit,
    RateLimit,
    Recommendation,
    ScaleEvent,
    Stabilization,
    StabilizationReason,
    limit_legacy,
    limit_with_behavior,
    stabilize_legacy,
    stabilize_with_behavior,
    store_scale_event,
)
from tgi_autoscaler.hpa.proposal import MetricError, MetricProposal, propose, tolerances_for
from tgi_autoscaler.hpa.types import HpaSpec, MetricTarget, Seconds, to_milli

__all__ = ["Decision", "HpaState", "MetricValues", "step"]

MetricValues = float | None | Mapping[str, float | None]
"""A sync's metric readings: one number for a single-metric HPA, or one per metric name;
``None`` means the metric could not be read (the adapter returned an error)."""


@dataclass(frozen=True)
class HpaState:
    """What the controller remembers about one HPA between syncs, plus the target's replica count.

    ``current_replicas`` is the scale subresource's ``spec.replicas``: set it (``dataclasses.replace``)
    to model someone else scaling the Deployment.
    """

    current_replicas: int
    recommendations: tuple[Recommendation, ...] = ()
    scale_up_events: tuple[ScaleEvent, ...] = ()
    scale_down_events: tuple[ScaleEvent, ...] = ()
    scaled_to_zero: bool = False

    def __post_init__(self) -> None:
        if self.current_replicas < 0:
            raise ValueError(f"current_replicas must be >= 0 (got {self.current_replicas})")

    @property
    def last_time(self) -> Seconds | None:
        """The latest time the state has seen, to refuse a clock running backwards."""
        times = [r.time for r in self.recommendations]
        times += [e.time for e in self.scale_up_events + self.scale_down_events]
        return max(times, default=None)


@dataclass(frozen=True)
class Decision:
    """Why one sync ended where it did.

    ``metric_replicas`` is the largest proposal over the metrics, ``stabilized_replicas`` what the
    windows made of it, ``desired_replicas`` what the HPA writes after policies and min/max (equal to
    ``current_replicas`` when it does not rescale). ``policy_limits`` lists each policy's bound for
    the direction of change; ``rate_bound`` is the one the select policy picked (or the legacy cap).
    """

    time: Seconds
    current_replicas: int
    desired_replicas: int
    rescale: bool
    reason: str
    proposals: tuple[MetricProposal, ...] = ()
    errors: tuple[MetricError, ...] = ()
    metric_replicas: int | None = None
    stabilized_replicas: int | None = None
    stabilization: StabilizationReason | None = None
    limit: LimitReason | None = None
    limited: bool = False
    policy_limits: tuple[PolicyLimit, ...] = ()
    rate_bound: int | None = None
    error: str | None = None

    def explain(self) -> str:
        """One line for people: proposal -> stabilized -> limited -> written."""
        if self.metric_replicas is None:
            parts = [self.reason or "no metrics computed"]
            if self.error:
                parts.append(f"error: {self.error}")
            return f"{self.current_replicas} -> {self.desired_replicas}: " + "; ".join(parts)
        metrics = ", ".join(
            f"{p.metric}={p.usage / 1000:g} ratio={p.usage_ratio:.3f}"
            + (" (within tolerance)" if p.within_tolerance else "")
            + f" -> {p.replicas}"
            for p in self.proposals
        )
        steps = [metrics, f"proposal {self.metric_replicas}"]
        if self.stabilized_replicas is not None and self.stabilized_replicas != self.metric_replicas:
            assert self.stabilization is not None
            steps.append(f"{self.stabilization.value} to {self.stabilized_replicas}")
        if self.limited and self.limit is not None:
            binding = [str(pl.policy) for pl in self.policy_limits if pl.bound == self.rate_bound]
            by = f" by {', '.join(binding)}" if binding and self.limit.value.endswith("Limit") else ""
            steps.append(f"{self.limit.value}{by}")
        if self.error:
            steps.append(f"error: {self.error}")
        return f"{self.current_replicas} -> {self.desired_replicas}: " + "; ".join(steps)


def _readings(metrics: tuple[MetricTarget, ...], values: MetricValues) -> dict[str, float | None]:
    if values is None or isinstance(values, int | float):
        if len(metrics) != 1:
            names = ", ".join(m.name for m in metrics)
            raise ValueError(f"this HPA has {len(metrics)} metrics ({names}); pass a mapping of values")
        return {metrics[0].name: values}
    unknown = sorted(set(values) - {m.name for m in metrics})
    if unknown:
        raise ValueError(f"metric value(s) for unknown metric(s): {', '.join(unknown)}")
    return {m.name: values.get(m.name) for m in metrics}


@dataclass(frozen=True)
class _MetricsResult:
    replicas: int  # -1: nothing to act on
    metric: str
    proposals: tuple[MetricProposal, ...]
    errors: tuple[MetricError, ...]
    error: str | None


def _compute_for_metrics(
    spec: HpaSpec,
    readings: dict[str, float | None],
    spec_replicas: int,
    status_replicas: int,
    ready_pods: int,
) -> _MetricsResult:
    """``computeReplicasForMetrics``: the largest proposal, or -1 if errors forbid acting."""
    tolerances = tolerances_for(spec)
    proposals: list[MetricProposal] = []
    errors: list[MetricError] = []
    replicas, metric = 0, ""
    for target in spec.metrics:
        value = readings[target.name]
        if value is None:
            errors.append(MetricError(target.name, "unable to get external metric"))
            continue
        if value < 0:
            raise ValueError(f"metric {target.name}: value must be >= 0 (got {value})")
        result = propose(
            target,
            to_milli(value),
            spec_replicas=spec_replicas,
            status_replicas=status_replicas,
            ready_pods=ready_pods,
            tolerances=tolerances,
        )
        if isinstance(result, MetricError):
            errors.append(result)
            continue
        proposals.append(result)
        if replicas == 0 or result.replicas > replicas:
            replicas, metric = result.replicas, target.name
    error = None
    if errors:
        error = (
            f"invalid metrics ({len(errors)} invalid out of {len(spec.metrics)}), first error is: "
            f"{errors[0].metric}: {errors[0].message}"
        )
    # A broken metric may not cause a scale-down: the healthy ones might be the low ones.
    if len(errors) >= len(spec.metrics) or (errors and replicas < spec_replicas):
        return _MetricsResult(-1, "", tuple(proposals), tuple(errors), error)
    return _MetricsResult(replicas, metric, tuple(proposals), tuple(errors), error)


def _store_event(state: HpaState, spec: HpaSpec, now: Seconds, previous: int, new: int) -> HpaState:
    if spec.behavior is None:
        return state  # without behavior no policy reads the events, and none are kept
    behavior = resolve_behavior(spec.behavior, spec.downscale_stabilization_seconds)
    if new > previous:
        events = store_scale_event(state.scale_up_events, behavior.scale_up, now, new - previous)
        return replace(state, scale_up_events=events)
    events = store_scale_event(state.scale_down_events, behavior.scale_down, now, previous - new)
    return replace(state, scale_down_events=events)


def _normalize(
    state: HpaState, spec: HpaSpec, now: Seconds, proposal: int
) -> tuple[Stabilization, RateLimit]:
    """``normalizeDesiredReplicas`` without behavior, ``normalizeDesiredReplicasWithBehaviors`` with it."""
    current = state.current_replicas
    if spec.behavior is None:
        stabilized = stabilize_legacy(
            state.recommendations, now, spec.downscale_stabilization_seconds, proposal
        )
        return stabilized, limit_legacy(current, stabilized.replicas, spec.min_replicas, spec.max_replicas)
    behavior = resolve_behavior(spec.behavior, spec.downscale_stabilization_seconds)
    stabilized = stabilize_with_behavior(state.recommendations, now, behavior, current, proposal)
    limited = limit_with_behavior(
        current,
        stabilized.replicas,
        spec.min_replicas,
        spec.max_replicas,
        state.scale_up_events,
        state.scale_down_events,
        behavior,
        now,
    )
    return stabilized, limited


def step(
    state: HpaState,
    now: Seconds | float,
    metric_value: MetricValues,
    spec: HpaSpec,
    *,
    status_replicas: int | None = None,
    ready_pods: int | None = None,
) -> tuple[HpaState, Decision]:
    """Run one HPA sync at ``now`` with the External metric reading(s) ``metric_value``.

    ``status_replicas`` is the target's ``status.replicas`` (pods that exist, ready or not; the
    divisor of ``AverageValue``) and ``ready_pods`` the Running and Ready pods (the multiplier of a
    ``Value`` target); both default to ``state.current_replicas``, i.e. a Deployment that has caught
    up. Returns the new state (``current_replicas`` is what the HPA wrote) and the ``Decision``.
    """
    now = Seconds(float(now))
    last = state.last_time
    if last is not None and now < last:
        raise ValueError(f"time went backwards: now={now} is before the last recorded sync at {last}")
    readings = _readings(spec.metrics, metric_value)
    current = state.current_replicas
    status = current if status_replicas is None else status_replicas
    ready = status if ready_pods is None else ready_pods
    if status < 0 or ready < 0 or ready > status:
        raise ValueError(f"need 0 <= ready_pods <= status_replicas (got {ready} and {status})")

    # recordInitialRecommendation: the first sync remembers the count it found, so a freshly
    # created HPA does not scale down before a full window has passed.
    if not state.recommendations:
        state = replace(state, recommendations=(Recommendation(current, now),))

    gates = spec.feature_gates
    scaled_to_zero_condition = gates.scale_to_zero and state.scaled_to_zero
    # Every metric here is External, which is what allows scaling from zero.
    can_scale_from_zero = scaled_to_zero_condition

    desired, reason, rescale, needs_metrics = 0, "", True, True
    if current == 0:
        if not ((spec.min_replicas != 0 and scaled_to_zero_condition) or can_scale_from_zero):
            # Scaled to zero by hand (or the gate is off): the HPA steps aside.
            needs_metrics, rescale = False, False
            reason = "scaling is disabled since the replica count of the target is zero"
            if not gates.scale_to_zero:
                state = replace(state, scaled_to_zero=False)
    elif current > spec.max_replicas:
        desired, needs_metrics = spec.max_replicas, False
        reason = "Current number of replicas above Spec.MaxReplicas"
    elif current < spec.min_replicas:
        desired, needs_metrics = spec.min_replicas, False
        reason = "Current number of replicas below Spec.MinReplicas"

    decision = Decision(
        time=now, current_replicas=current, desired_replicas=current, rescale=False, reason=reason
    )
    if needs_metrics:
        computed = _compute_for_metrics(spec, readings, current, status, ready)
        decision = replace(
            decision, proposals=computed.proposals, errors=computed.errors, error=computed.error
        )
        if computed.replicas == -1:
            return state, replace(decision, reason="failed to compute desired number of replicas")
        if computed.replicas > desired:
            desired = computed.replicas
        if desired > current:
            reason = f"{computed.metric} above target"
        if desired < current:
            reason = "All metrics below target"
        stabilized, limited = _normalize(state, spec, now, desired)
        state = replace(state, recommendations=stabilized.recommendations)
        decision = replace(
            decision,
            metric_replicas=computed.replicas,
            stabilized_replicas=stabilized.replicas,
            stabilization=stabilized.reason,
            limit=limited.reason,
            limited=limited.limited,
            policy_limits=limited.policy_limits,
            rate_bound=limited.rate_bound,
        )
        desired = limited.replicas
        if (
            current == 0
            and spec.min_replicas != 0
            and scaled_to_zero_condition
            and desired < spec.min_replicas
        ):
            desired = spec.min_replicas
            reason = reason or "Current number of replicas below Spec.MinReplicas"
        rescale = desired != current

    if not rescale:
        return state, replace(decision, reason=reason or "no change")
    state = _store_event(state, spec, now, current, desired)
    scaled_to_zero = gates.scale_to_zero and current > 0 and desired == 0 and spec.min_replicas == 0
    state = replace(state, current_replicas=desired, scaled_to_zero=scaled_to_zero)
    return state, replace(decision, desired_replicas=desired, rescale=True, reason=reason)
