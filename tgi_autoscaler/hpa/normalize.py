"""Stabilization and rate limits: how a raw proposal becomes the replica count the HPA writes.

Two algorithms, chosen by whether the HPA has ``behavior``:

* without it (``normalizeDesiredReplicas``): scale down to the highest recommendation of the
  controller's downscale window, never below ``minReplicas``, and never up by more than
  ``max(2 x current, 4)`` in one step;
* with it (``normalizeDesiredReplicasWithBehaviors``): clamp the proposal between the lowest
  recommendation of the scale-up window and the highest of the scale-down window, then let the
  policies bound the change relative to the replica count at the start of each policy's period.

The history lists are immutable tuples replaced on each call, and old entries are reused exactly
as the Go code reuses slice slots, so a history built here is the one the controller would hold.
Comparisons with window edges keep Go's strictness (``After``/``Before``), which decides whether a
sample exactly one window old still counts (it does not, except in the legacy window).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

from tgi_autoscaler.hpa.behavior import ResolvedBehavior, ResolvedRules
from tgi_autoscaler.hpa.types import MAX_INT32, PolicyType, ScalingPolicy, Seconds, SelectPolicy

__all__ = [
    "LimitReason",
    "PolicyLimit",
    "RateLimit",
    "Recommendation",
    "ScaleEvent",
    "Stabilization",
    "StabilizationReason",
    "limit_legacy",
    "limit_with_behavior",
    "replicas_changed_in_period",
    "scale_down_limit",
    "scale_up_limit",
    "stabilize_legacy",
    "stabilize_with_behavior",
    "store_scale_event",
]

MIN_INT32 = -(2**31)

# calculateScaleUpLimit without behavior: "do not scale up too much to prevent incorrect rapid
# increase of the number of replicas caused by bogus metrics".
LEGACY_SCALE_UP_FACTOR = 2.0
LEGACY_SCALE_UP_MINIMUM = 4.0


@dataclass(frozen=True)
class Recommendation:
    """``timestampedRecommendation``: one unstabilized proposal and when it was made."""

    replicas: int
    time: Seconds


@dataclass(frozen=True)
class ScaleEvent:
    """``timestampedScaleEvent``: replicas added (or removed) by one rescale.

    ``outdated`` marks an event older than the longest policy period, whose slot the next event reuses.
    """

    change: int
    time: Seconds
    outdated: bool = False


class StabilizationReason(StrEnum):
    """The ``AbleToScale`` condition reason after stabilization."""

    READY_FOR_NEW_SCALE = "ReadyForNewScale"
    SCALE_UP_STABILIZED = "ScaleUpStabilized"
    SCALE_DOWN_STABILIZED = "ScaleDownStabilized"


class LimitReason(StrEnum):
    """The ``ScalingLimited`` condition reason after rate limits and min/max."""

    DESIRED_WITHIN_RANGE = "DesiredWithinRange"
    SCALE_UP_LIMIT = "ScaleUpLimit"
    SCALE_DOWN_LIMIT = "ScaleDownLimit"
    TOO_MANY_REPLICAS = "TooManyReplicas"
    TOO_FEW_REPLICAS = "TooFewReplicas"


@dataclass(frozen=True)
class Stabilization:
    """Result of a stabilization pass."""

    replicas: int
    reason: StabilizationReason
    recommendations: tuple[Recommendation, ...]


@dataclass(frozen=True)
class PolicyLimit:
    """What one policy allowed this step: the count at its period's start and the bound it gives."""

    policy: ScalingPolicy
    period_start_replicas: int
    bound: int


@dataclass(frozen=True)
class RateLimit:
    """Result of the rate-limit pass: the replicas, whether they were limited, and each policy's bound."""

    replicas: int
    reason: LimitReason
    limited: bool
    policy_limits: tuple[PolicyLimit, ...] = ()
    rate_bound: int | None = None


def _record(
    history: tuple[Recommendation, ...], old_index: int | None, new: Recommendation
) -> tuple[Recommendation, ...]:
    if old_index is None:
        return (*history, new)
    return tuple(new if i == old_index else rec for i, rec in enumerate(history))


def stabilize_legacy(
    history: tuple[Recommendation, ...], now: Seconds, window_seconds: float, proposal: int
) -> Stabilization:
    """``stabilizeRecommendation``: the highest proposal not older than the window (inclusive edge)."""
    cutoff = now - window_seconds
    highest = proposal
    old_index: int | None = None
    for i, rec in enumerate(history):
        if rec.time < cutoff:
            old_index = i
        elif rec.replicas > highest:
            highest = rec.replicas
    reason = (
        StabilizationReason.SCALE_DOWN_STABILIZED
        if highest != proposal
        else StabilizationReason.READY_FOR_NEW_SCALE
    )
    return Stabilization(highest, reason, _record(history, old_index, Recommendation(proposal, now)))


def stabilize_with_behavior(
    history: tuple[Recommendation, ...],
    now: Seconds,
    behavior: ResolvedBehavior,
    current: int,
    proposal: int,
) -> Stabilization:
    """``stabilizeRecommendationWithBehaviors``.

    Scale-up follows the lowest proposal of its window (a short spike is not chased), scale-down
    the highest of its window (a short dip does not remove pods); samples exactly one window old
    are outside. The result is the current count pulled into [lowest-up, highest-down].
    """
    up_cutoff = now - behavior.scale_up.stabilization_window_seconds
    down_cutoff = now - behavior.scale_down.stabilization_window_seconds
    up_recommendation = proposal
    down_recommendation = proposal
    old_index: int | None = None
    for i, rec in enumerate(history):
        if rec.time > up_cutoff:
            up_recommendation = min(rec.replicas, up_recommendation)
        if rec.time > down_cutoff:
            down_recommendation = max(rec.replicas, down_recommendation)
        if rec.time < up_cutoff and rec.time < down_cutoff:
            old_index = i
    recommendation = max(current, up_recommendation)
    recommendation = min(recommendation, down_recommendation)
    if recommendation == proposal:
        reason = StabilizationReason.READY_FOR_NEW_SCALE
    elif proposal >= current:
        reason = StabilizationReason.SCALE_UP_STABILIZED
    else:
        reason = StabilizationReason.SCALE_DOWN_STABILIZED
    return Stabilization(recommendation, reason, _record(history, old_index, Recommendation(proposal, now)))


def replicas_changed_in_period(period_seconds: int, events: tuple[ScaleEvent, ...], now: Seconds) -> int:
    """``getReplicasChangePerPeriod``: replicas changed by events strictly inside the last period."""
    cutoff = now - period_seconds
    return sum(event.change for event in events if event.time > cutoff)


def _policy_bounds(
    current: int,
    up_events: tuple[ScaleEvent, ...],
    down_events: tuple[ScaleEvent, ...],
    rules: ResolvedRules,
    now: Seconds,
    bound: Callable[[ScalingPolicy, int], int],
) -> tuple[PolicyLimit, ...]:
    limits = []
    for policy in rules.policies:
        added = replicas_changed_in_period(policy.period_seconds, up_events, now)
        removed = replicas_changed_in_period(policy.period_seconds, down_events, now)
        # The count the period started with: changes made inside the period are undone.
        start = current - added + removed
        limits.append(PolicyLimit(policy, start, bound(policy, start)))
    return tuple(limits)


def _up_bound(policy: ScalingPolicy, start: int) -> int:
    if policy.type is PolicyType.PODS:
        return start + policy.value
    # Rounded up so that a small percentage of a small count still allows one more pod.
    return math.ceil(float(start) * (1 + float(policy.value) / 100))


def _down_bound(policy: ScalingPolicy, start: int) -> int:
    if policy.type is PolicyType.PODS:
        return start - policy.value
    # int32(float) truncates toward zero: removing 50% of 3 pods leaves 1 (1.5 -> 1).
    return math.trunc(float(start) * (1 - float(policy.value) / 100))


def scale_up_limit(
    current: int,
    up_events: tuple[ScaleEvent, ...],
    down_events: tuple[ScaleEvent, ...],
    rules: ResolvedRules,
    now: Seconds,
) -> tuple[int, tuple[PolicyLimit, ...]]:
    """``calculateScaleUpLimitWithScalingRules``: the highest count the policies allow now.

    ``Max`` takes the most permissive policy, ``Min`` the most restrictive, ``Disabled`` the
    current count.
    """
    if rules.select_policy is SelectPolicy.DISABLED:
        return current, ()
    limits = _policy_bounds(current, up_events, down_events, rules, now, _up_bound)
    bounds = [limit.bound for limit in limits]
    result = (
        min([MAX_INT32, *bounds]) if rules.select_policy is SelectPolicy.MIN else max([MIN_INT32, *bounds])
    )
    return result, limits


def scale_down_limit(
    current: int,
    up_events: tuple[ScaleEvent, ...],
    down_events: tuple[ScaleEvent, ...],
    rules: ResolvedRules,
    now: Seconds,
) -> tuple[int, tuple[PolicyLimit, ...]]:
    """``calculateScaleDownLimitWithBehaviors``: the lowest count the policies allow now.

    For scale-down the "least change" (``Min``) is the highest bound.
    """
    if rules.select_policy is SelectPolicy.DISABLED:
        return current, ()
    limits = _policy_bounds(current, up_events, down_events, rules, now, _down_bound)
    bounds = [limit.bound for limit in limits]
    result = (
        max([MIN_INT32, *bounds]) if rules.select_policy is SelectPolicy.MIN else min([MAX_INT32, *bounds])
    )
    return result, limits


def limit_with_behavior(
    current: int,
    desired: int,
    min_replicas: int,
    max_replicas: int,
    up_events: tuple[ScaleEvent, ...],
    down_events: tuple[ScaleEvent, ...],
    behavior: ResolvedBehavior,
    now: Seconds,
) -> RateLimit:
    """``convertDesiredReplicasWithBehaviorRate``: policies and min/max bound the stabilized count."""
    if desired > current:
        bound, limits = scale_up_limit(current, up_events, down_events, behavior.scale_up, now)
        # Events still inside the period may put the limit below the current count: hold, don't shrink.
        bound = max(bound, current)
        if max_replicas > bound:
            allowed, reason = bound, LimitReason.SCALE_UP_LIMIT
        else:
            allowed, reason = max_replicas, LimitReason.TOO_MANY_REPLICAS
        if desired > allowed:
            return RateLimit(allowed, reason, True, limits, bound)
        return RateLimit(desired, LimitReason.DESIRED_WITHIN_RANGE, False, limits, bound)
    if desired < current:
        bound, limits = scale_down_limit(current, up_events, down_events, behavior.scale_down, now)
        bound = min(bound, current)
        if min_replicas < bound:
            allowed, reason = bound, LimitReason.SCALE_DOWN_LIMIT
        else:
            allowed, reason = min_replicas, LimitReason.TOO_FEW_REPLICAS
        if desired < allowed:
            return RateLimit(allowed, reason, True, limits, bound)
        return RateLimit(desired, LimitReason.DESIRED_WITHIN_RANGE, False, limits, bound)
    return RateLimit(desired, LimitReason.DESIRED_WITHIN_RANGE, False)


def limit_legacy(current: int, desired: int, min_replicas: int, max_replicas: int) -> RateLimit:
    """``convertDesiredReplicasWithRules``: min/max and the ``max(2 x current, 4)`` scale-up cap."""
    bound = int(max(LEGACY_SCALE_UP_FACTOR * float(current), LEGACY_SCALE_UP_MINIMUM))
    if max_replicas > bound:
        maximum, reason = bound, LimitReason.SCALE_UP_LIMIT
    else:
        maximum, reason = max_replicas, LimitReason.TOO_MANY_REPLICAS
    if desired < min_replicas:
        return RateLimit(min_replicas, LimitReason.TOO_FEW_REPLICAS, True, (), bound)
    if desired > maximum:
        return RateLimit(maximum, reason, True, (), bound)
    return RateLimit(desired, LimitReason.DESIRED_WITHIN_RANGE, False, (), bound)


def store_scale_event(
    events: tuple[ScaleEvent, ...], rules: ResolvedRules, now: Seconds, change: int
) -> tuple[ScaleEvent, ...]:
    """``storeScaleEvent`` for one direction: mark events older than the longest period outdated,
    then put the new event into the last outdated slot (or append it)."""
    cutoff = now - rules.longest_period_seconds
    marked = tuple(replace(e, outdated=True) if e.time < cutoff else e for e in events)
    old_index = max((i for i, e in enumerate(marked) if e.outdated), default=None)
    new = ScaleEvent(change, now)
    if old_index is None:
        return (*marked, new)
    return tuple(new if i == old_index else e for i, e in enumerate(marked))
