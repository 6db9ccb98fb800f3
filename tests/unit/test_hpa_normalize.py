"""Stabilization, policies and scale-event history, pinned to horizontal.go (Kubernetes v1.36)."""

from __future__ import annotations

import pytest

from tgi_autoscaler.hpa.behavior import ResolvedBehavior, ResolvedRules, resolve_behavior
from tgi_autoscaler.hpa.normalize import (
    LimitReason,
    Recommendation,
    ScaleEvent,
    StabilizationReason,
    limit_legacy,
    limit_with_behavior,
    replicas_changed_in_period,
    scale_down_limit,
    scale_up_limit,
    stabilize_legacy,
    stabilize_with_behavior,
    store_scale_event,
)
from tgi_autoscaler.hpa.types import (
    Behavior,
    PolicyType,
    ScalingPolicy,
    ScalingRules,
    Seconds,
    SelectPolicy,
)

pytestmark = pytest.mark.unit

NOW = Seconds(10_000.0)
PODS, PERCENT = PolicyType.PODS, PolicyType.PERCENT


def _at(seconds_ago: float) -> Seconds:
    return Seconds(NOW - seconds_ago)


def _recs(*pairs: tuple[int, float]) -> tuple[Recommendation, ...]:
    return tuple(Recommendation(replicas, _at(ago)) for replicas, ago in pairs)


def _rules(
    *policies: tuple[PolicyType, int, int], select: SelectPolicy = SelectPolicy.MAX, window: int = 0
) -> ResolvedRules:
    return ResolvedRules(window, select, tuple(ScalingPolicy(t, v, p) for t, v, p in policies), None)


def _behavior(up_window: int = 0, down_window: int = 300) -> ResolvedBehavior:
    return resolve_behavior(
        Behavior(ScalingRules(stabilization_window_seconds=up_window), ScalingRules(down_window)), 300
    )


# --- stabilizeRecommendation (no behavior): highest proposal of the downscale window -------------


@pytest.mark.parametrize(
    ("history", "proposal", "expected", "length"),
    [
        ((), 5, 5, 1),
        # A higher proposal 1 and 2 minutes ago holds a scale-down to 3 at 5.
        (((4, 120), (5, 60)), 3, 5, 3),
        (((1, 120), (2, 60)), 3, 3, 3),
        # Entries older than 5 minutes no longer count, and the new one reuses a slot (length stays 2).
        (((10, 600), (9, 540)), 3, 3, 2),
        # The legacy window includes its edge: a sample exactly 300 s old still counts (Before(cutoff)).
        (((7, 300),), 3, 7, 2),
        (((7, 300.001),), 3, 3, 1),
    ],
)
def test_legacy_stabilization_takes_the_highest_recent_proposal(
    history: tuple[tuple[int, float], ...], proposal: int, expected: int, length: int
) -> None:
    result = stabilize_legacy(_recs(*history), NOW, 300, proposal)
    assert result.replicas == expected
    assert len(result.recommendations) == length
    assert Recommendation(proposal, NOW) in result.recommendations


def test_legacy_stabilization_reuses_the_last_old_slot() -> None:
    result = stabilize_legacy(_recs((10, 600), (4, 60), (9, 540)), NOW, 300, 3)
    # Both index 0 and 2 are old; like the Go loop, the last one found is overwritten.
    assert result.recommendations == (
        Recommendation(10, _at(600)),
        Recommendation(4, _at(60)),
        Recommendation(3, NOW),
    )
    assert result.reason is StabilizationReason.SCALE_DOWN_STABILIZED


# --- stabilizeRecommendationWithBehaviors ---------------------------------------------------------


@pytest.mark.parametrize(
    ("history", "up_window", "down_window", "current", "proposal", "expected", "reason"),
    [
        # Scale-down holds at the highest proposal of the last 300 s.
        (((5, 200), (8, 299)), 0, 300, 8, 2, 8, StabilizationReason.SCALE_DOWN_STABILIZED),
        # The behavior windows exclude their edge (After(cutoff)): 8 from exactly 300 s ago is gone.
        (((5, 200), (8, 300)), 0, 300, 8, 2, 5, StabilizationReason.SCALE_DOWN_STABILIZED),
        # Scale-up follows the lowest proposal of its window: 4 from 30 s ago caps a jump to 10.
        (((4, 30),), 60, 0, 2, 10, 4, StabilizationReason.SCALE_UP_STABILIZED),
        # ... but never below the current count: the result is clamped into [current, ...].
        (((1, 30),), 60, 0, 2, 10, 2, StabilizationReason.SCALE_UP_STABILIZED),
        (((3, 30),), 60, 300, 3, 3, 3, StabilizationReason.READY_FOR_NEW_SCALE),
        # A zero window takes the proposal at once in both directions.
        (((9, 1),), 0, 0, 5, 2, 2, StabilizationReason.READY_FOR_NEW_SCALE),
    ],
)
def test_behavior_stabilization_clamps_between_the_window_extremes(
    history: tuple[tuple[int, float], ...],
    up_window: int,
    down_window: int,
    current: int,
    proposal: int,
    expected: int,
    reason: StabilizationReason,
) -> None:
    result = stabilize_with_behavior(
        _recs(*history), NOW, _behavior(up_window, down_window), current, proposal
    )
    assert (result.replicas, result.reason) == (expected, reason)


def test_behavior_stabilization_reuses_a_slot_only_when_older_than_both_windows() -> None:
    history = _recs((6, 100), (7, 400))
    result = stabilize_with_behavior(history, NOW, _behavior(60, 300), 5, 5)
    # 100 s old is past the up window but inside the down window: kept; 400 s old is reused.
    assert result.recommendations == (Recommendation(6, _at(100)), Recommendation(5, NOW))


# --- getReplicasChangePerPeriod -------------------------------------------------------------------


def test_replicas_changed_in_period_counts_events_strictly_inside_the_period() -> None:
    events = (ScaleEvent(2, _at(61)), ScaleEvent(3, _at(60)), ScaleEvent(4, _at(59)), ScaleEvent(1, NOW))
    assert replicas_changed_in_period(60, events, NOW) == 5


# --- calculateScaleUpLimitWithScalingRules --------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "up_events", "down_events", "rules", "expected"),
    [
        # The API default (4 pods or 100% per 15 s, Max): from 10 the larger is 100% -> 20.
        (10, (), (), _rules((PODS, 4, 15), (PERCENT, 100, 15)), 20),
        # ... from 1 the larger is +4 pods -> 5.
        (1, (), (), _rules((PODS, 4, 15), (PERCENT, 100, 15)), 5),
        # Min picks the smaller bound.
        (10, (), (), _rules((PODS, 4, 15), (PERCENT, 100, 15), select=SelectPolicy.MIN), 14),
        # Percent rounds up so a small count can still grow: ceil(3 * 1.1) = 4.
        (3, (), (), _rules((PERCENT, 10, 60)), 4),
        (1, (), (), _rules((PODS, 2, 60), (PERCENT, 50, 60), select=SelectPolicy.MIN), 2),
        # 6 pods added 30 s ago: the period started at 4, so +4 pods allows 8 (below current 10).
        (10, ((6, 30),), (), _rules((PODS, 4, 60)), 8),
        # The same event exactly one period ago is outside the period: the start is 10 again.
        (10, ((6, 60),), (), _rules((PODS, 4, 60)), 14),
        # 4 pods removed 30 s ago count back: the period started at 10, so +4 allows 14 from 6.
        (6, (), ((4, 30),), _rules((PODS, 4, 60)), 14),
        # Each policy looks at its own period: +2 per 15 s sees no events, 100% per 60 s sees +5.
        (10, ((5, 30),), (), _rules((PODS, 2, 15), (PERCENT, 100, 60)), 12),
        (10, (), (), _rules((PODS, 4, 15), select=SelectPolicy.DISABLED), 10),
    ],
)
def test_scale_up_limit_matches_calculate_scale_up_limit_with_scaling_rules(
    current: int,
    up_events: tuple[tuple[int, float], ...],
    down_events: tuple[tuple[int, float], ...],
    rules: ResolvedRules,
    expected: int,
) -> None:
    ups = tuple(ScaleEvent(change, _at(ago)) for change, ago in up_events)
    downs = tuple(ScaleEvent(change, _at(ago)) for change, ago in down_events)
    assert scale_up_limit(current, ups, downs, rules, NOW)[0] == expected


# --- calculateScaleDownLimitWithBehaviors ---------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "up_events", "down_events", "rules", "expected"),
    [
        # The project's style of rule: one pod per 5 minutes.
        (10, (), (), _rules((PODS, 1, 300)), 9),
        # Percent truncates toward zero like int32(float): 50% of 3 leaves 1 (1.5 -> 1).
        (3, (), (), _rules((PERCENT, 50, 60)), 1),
        # Max = the most change = the lowest bound; Min = the least change = the highest bound.
        (10, (), (), _rules((PODS, 1, 300), (PERCENT, 50, 60)), 5),
        (10, (), (), _rules((PODS, 1, 300), (PERCENT, 50, 60), select=SelectPolicy.MIN), 9),
        (5, (), (), _rules((PODS, 2, 60), (PERCENT, 50, 60), select=SelectPolicy.MIN), 3),
        # One pod already removed 100 s ago: the 300 s period started at 10, the bound is 9 = current.
        (9, (), ((1, 100),), _rules((PODS, 1, 300)), 9),
        # After the period has passed the next pod may go.
        (9, (), ((1, 300),), _rules((PODS, 1, 300)), 8),
        # The default API rule removes up to 100% per 15 s: the bound is 0 (min clamps later).
        (7, (), (), _rules((PERCENT, 100, 15)), 0),
        (7, (), (), _rules((PODS, 1, 15), select=SelectPolicy.DISABLED), 7),
    ],
)
def test_scale_down_limit_matches_calculate_scale_down_limit_with_behaviors(
    current: int,
    up_events: tuple[tuple[int, float], ...],
    down_events: tuple[tuple[int, float], ...],
    rules: ResolvedRules,
    expected: int,
) -> None:
    ups = tuple(ScaleEvent(change, _at(ago)) for change, ago in up_events)
    downs = tuple(ScaleEvent(change, _at(ago)) for change, ago in down_events)
    assert scale_down_limit(current, ups, downs, rules, NOW)[0] == expected


# --- convertDesiredReplicasWithBehaviorRate --------------------------------------------------------


def _limits(up: ResolvedRules, down: ResolvedRules) -> ResolvedBehavior:
    return ResolvedBehavior(up, down)


@pytest.mark.parametrize(
    ("current", "desired", "min_r", "max_r", "behavior", "down_events", "expected", "reason"),
    [
        (5, 7, 3, 8, _limits(_rules((PODS, 4, 15)), _rules((PODS, 1, 15))), (), 7, "DesiredWithinRange"),
        # Policy bound (5 + 4 = 9) below maxReplicas: limited by the policy.
        (5, 20, 1, 100, _limits(_rules((PODS, 4, 15)), _rules((PODS, 1, 15))), (), 9, "ScaleUpLimit"),
        # maxReplicas below the policy bound: limited by max.
        (5, 20, 1, 8, _limits(_rules((PODS, 4, 15)), _rules((PODS, 1, 15))), (), 8, "TooManyReplicas"),
        (10, 2, 1, 10, _limits(_rules((PODS, 4, 15)), _rules((PODS, 1, 300))), (), 9, "ScaleDownLimit"),
        # minReplicas above the policy bound: limited by min.
        (10, 2, 6, 10, _limits(_rules((PODS, 4, 15)), _rules((PERCENT, 100, 15))), (), 6, "TooFewReplicas"),
        # A pod removed within the period: the bound (9) is above current 8 and is pulled down to 8.
        (
            8,
            2,
            1,
            10,
            _limits(_rules((PODS, 4, 15)), _rules((PODS, 1, 300))),
            ((2, 10),),
            8,
            "ScaleDownLimit",
        ),
        # 30 pods removed inside the period: trunc((100 + 30) x 0.9) = 117 > 100, hold at 100.
        (
            100,
            0,
            1,
            1000,
            _limits(_rules((PODS, 4, 15)), _rules((PERCENT, 10, 120))),
            ((10, 100), (10, 60), (10, 20)),
            100,
            "ScaleDownLimit",
        ),
        # A bound below zero ((10 + 30) x (1 - 10) = -360) falls back to minReplicas; 5 is allowed.
        (
            10,
            5,
            1,
            1000,
            _limits(_rules((PODS, 4, 15)), _rules((PERCENT, 1000, 120))),
            ((10, 100), (10, 60), (10, 20)),
            5,
            "DesiredWithinRange",
        ),
        (
            10,
            2,
            1,
            10,
            _limits(_rules((PODS, 4, 15)), _rules((PODS, 1, 15), select=SelectPolicy.DISABLED)),
            (),
            10,
            "ScaleDownLimit",
        ),
    ],
)
def test_behavior_rate_limit_picks_policy_or_bounds(
    current: int,
    desired: int,
    min_r: int,
    max_r: int,
    behavior: ResolvedBehavior,
    down_events: tuple[tuple[int, float], ...],
    expected: int,
    reason: str,
) -> None:
    downs = tuple(ScaleEvent(change, _at(ago)) for change, ago in down_events)
    result = limit_with_behavior(current, desired, min_r, max_r, (), downs, behavior, NOW)
    assert (result.replicas, result.reason.value) == (expected, reason)
    assert result.limited is (expected != desired)


# --- convertDesiredReplicasWithRules (no behavior) ------------------------------------------------


@pytest.mark.parametrize(
    ("current", "desired", "min_r", "max_r", "expected", "reason"),
    [
        (5, 7, 3, 8, 7, LimitReason.DESIRED_WITHIN_RANGE),
        (3, 1, 2, 8, 2, LimitReason.TOO_FEW_REPLICAS),
        # maxReplicas 10 is below max(2 x 20, 4): TooManyReplicas.
        (20, 1000, 1, 10, 10, LimitReason.TOO_MANY_REPLICAS),
        # scaleUpLimit = max(2 x 3, 4) = 6.
        (3, 1000, 1, 2000, 6, LimitReason.SCALE_UP_LIMIT),
        # From one replica the floor of 4 applies.
        (1, 42, 1, 10, 4, LimitReason.SCALE_UP_LIMIT),
    ],
)
def test_legacy_limit_matches_convert_desired_replicas_with_rules(
    current: int, desired: int, min_r: int, max_r: int, expected: int, reason: LimitReason
) -> None:
    result = limit_legacy(current, desired, min_r, max_r)
    assert (result.replicas, result.reason) == (expected, reason)


# --- storeScaleEvent -------------------------------------------------------------------------------


def test_store_scale_event_appends_while_all_events_are_recent() -> None:
    rules = _rules((PODS, 4, 60))
    events = (ScaleEvent(2, _at(30)),)
    assert store_scale_event(events, rules, NOW, 3) == (ScaleEvent(2, _at(30)), ScaleEvent(3, NOW))


def test_store_scale_event_overwrites_the_last_event_older_than_the_longest_period() -> None:
    rules = _rules((PODS, 4, 15), (PERCENT, 100, 60))  # longest period 60 s
    events = (ScaleEvent(1, _at(120)), ScaleEvent(2, _at(90)), ScaleEvent(5, _at(30)))
    assert store_scale_event(events, rules, NOW, 3) == (
        ScaleEvent(1, _at(120), outdated=True),
        ScaleEvent(3, NOW),
        ScaleEvent(5, _at(30)),
    )
