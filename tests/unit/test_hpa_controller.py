"""Whole HPA syncs through ``step``, pinned to reconcileAutoscaler in horizontal.go (v1.36)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from tgi_autoscaler.hpa.controller import Decision, HpaState, MetricValues, step
from tgi_autoscaler.hpa.normalize import LimitReason, Recommendation, StabilizationReason
from tgi_autoscaler.hpa.types import (
    Behavior,
    FeatureGates,
    HpaSpec,
    HpaSpecError,
    MetricTarget,
    PolicyType,
    ScalingPolicy,
    ScalingRules,
    Seconds,
    SelectPolicy,
    TargetType,
)

pytestmark = pytest.mark.unit

LEGACY = HpaSpec(min_replicas=1, max_replicas=10, target_average_value=10)
API_DEFAULTS = replace(LEGACY, behavior=Behavior())


def _run(
    spec: HpaSpec, replicas: int, readings: Sequence[tuple[float, MetricValues]]
) -> tuple[HpaState, list[Decision]]:
    state = HpaState(replicas)
    decisions = []
    for now, value in readings:
        state, decision = step(state, now, value, spec)
        decisions.append(decision)
    return state, decisions


def test_three_pods_at_150_percent_of_target_scale_to_five() -> None:
    # 45 queued / (10 x 3 pods) = 1.5 > 1.1: ceil(45 / 10) = 5, within max(2 x 3, 4) = 6.
    state, decision = step(HpaState(3), 0, 45, LEGACY)
    assert (state.current_replicas, decision.metric_replicas, decision.rescale) == (5, 5, True)
    assert decision.reason == "tgi_queue_size above target"


def test_a_new_hpa_does_not_scale_down_before_its_first_window_passes() -> None:
    # recordInitialRecommendation stores the current 5 at the first sync; the legacy window
    # (300 s, edge included) keeps it, so an empty queue only scales down after 300 s.
    readings = [(float(t), 0.0) for t in range(0, 331, 15)]
    state, decisions = _run(LEGACY, 5, readings)
    downs = [d for d in decisions if d.rescale]
    assert [(d.time, d.desired_replicas) for d in downs] == [(315.0, 1)]
    assert decisions[0].stabilization is StabilizationReason.SCALE_DOWN_STABILIZED
    assert state.current_replicas == 1


def test_legacy_scale_up_is_capped_at_twice_the_current_count() -> None:
    state, decisions = _run(LEGACY, 2, [(0, 1000), (15, 1000)])
    assert [d.desired_replicas for d in decisions] == [4, 8]
    assert decisions[0].limit is LimitReason.SCALE_UP_LIMIT
    assert state.scale_up_events == ()  # without behavior no events are kept


def test_api_default_behavior_adds_four_pods_then_doubles_each_period() -> None:
    # Default scale-up: max(4 pods, 100%) per 15 s. 1 -> 5; 15 s later the first event is exactly
    # one period old and no longer counts, so 5 -> 10 (100%), then maxReplicas holds.
    _state, decisions = _run(API_DEFAULTS, 1, [(0, 1000), (15, 1000), (30, 1000)])
    assert [d.desired_replicas for d in decisions] == [5, 10, 10]
    assert decisions[0].limit is LimitReason.SCALE_UP_LIMIT
    assert decisions[2].limit is LimitReason.TOO_MANY_REPLICAS


def test_a_second_sync_inside_the_period_cannot_add_more() -> None:
    _state, decisions = _run(API_DEFAULTS, 1, [(0, 1000), (10, 1000), (15, 1000)])
    assert [d.desired_replicas for d in decisions] == [5, 5, 10]


def test_scale_down_keeps_the_highest_recommendation_of_the_window() -> None:
    spec = replace(LEGACY, behavior=Behavior(scale_down=ScalingRules(stabilization_window_seconds=120)))
    readings: list[tuple[float, MetricValues]] = [(0, 80), (30, 60), (60, 20), (90, 20), (135, 20), (181, 20)]
    _state, decisions = _run(spec, 8, readings)
    # Proposals 8, 6, 2, 2, 2, 2. At 135 the 8 (t=0) is out, the 6 (t=30) still in: hold at 6.
    assert [d.metric_replicas for d in decisions] == [8, 6, 2, 2, 2, 2]
    assert [d.desired_replicas for d in decisions] == [8, 8, 8, 8, 6, 2]
    assert decisions[4].stabilization is StabilizationReason.SCALE_DOWN_STABILIZED


def test_scale_up_window_waits_until_every_recent_proposal_is_high() -> None:
    spec = replace(LEGACY, behavior=Behavior(scale_up=ScalingRules(stabilization_window_seconds=60)))
    readings = [(float(t), 50.0) for t in range(0, 76, 15)]
    _state, decisions = _run(spec, 1, readings)
    # The initial recommendation (1 at t=0) is in the window until it is exactly 60 s old.
    assert [d.desired_replicas for d in decisions] == [1, 1, 1, 1, 5, 5]
    assert decisions[0].stabilization is StabilizationReason.SCALE_UP_STABILIZED


def test_one_pod_per_period_scale_down_spaces_removals_by_the_period() -> None:
    down = ScalingRules(0, SelectPolicy.MIN, (ScalingPolicy(PolicyType.PODS, 1, 300),))
    spec = replace(LEGACY, behavior=Behavior(scale_down=down))
    readings = [(float(t), 0.0) for t in range(0, 1201, 15)]
    _state, decisions = _run(spec, 5, readings)
    assert [(d.time, d.desired_replicas) for d in decisions if d.rescale] == [
        (0.0, 4),
        (300.0, 3),
        (600.0, 2),
        (900.0, 1),
    ]


def test_disabled_scale_down_never_removes_pods() -> None:
    spec = replace(LEGACY, behavior=Behavior(scale_down=ScalingRules(0, SelectPolicy.DISABLED)))
    state, decisions = _run(spec, 6, [(float(t), 0.0) for t in range(0, 601, 15)])
    assert state.current_replicas == 6
    assert all(d.limit is LimitReason.SCALE_DOWN_LIMIT for d in decisions)


def test_above_max_goes_to_max_without_reading_metrics() -> None:
    state, decision = step(HpaState(14), 0, None, LEGACY)
    assert (state.current_replicas, decision.metric_replicas) == (10, None)
    assert decision.reason == "Current number of replicas above Spec.MaxReplicas"


def test_below_min_goes_to_min_and_records_a_scale_event() -> None:
    spec = replace(LEGACY, min_replicas=3, behavior=Behavior())
    state, decision = step(HpaState(1), 0, 0, spec)
    assert state.current_replicas == 3
    assert decision.reason == "Current number of replicas below Spec.MinReplicas"
    assert [e.change for e in state.scale_up_events] == [2]


def test_a_target_at_zero_disables_the_hpa_without_the_scale_to_zero_gate() -> None:
    state, decision = step(HpaState(0), 0, 500, LEGACY)
    assert (state.current_replicas, decision.rescale) == (0, False)
    assert "scaling is disabled" in decision.reason


def test_scale_to_zero_gate_scales_to_zero_and_back_from_zero() -> None:
    spec = HpaSpec(
        min_replicas=0,
        max_replicas=10,
        target_average_value=10,
        behavior=Behavior(scale_down=ScalingRules(stabilization_window_seconds=0)),
        feature_gates=FeatureGates(scale_to_zero=True),
    )
    state, down = step(HpaState(2), 0, 0, spec)
    assert (state.current_replicas, state.scaled_to_zero) == (0, True)
    # From zero the AverageValue ratio divides by zero pods (+Inf): proposal ceil(25 / 10) = 3.
    state, up = step(state, 15, 25, spec)
    assert (down.desired_replicas, up.metric_replicas, up.desired_replicas) == (0, 3, 3)
    assert state.scaled_to_zero is False


def test_scaled_to_zero_by_hand_stays_disabled_even_with_the_gate() -> None:
    spec = HpaSpec(0, 10, 10, feature_gates=FeatureGates(scale_to_zero=True))
    state, decision = step(HpaState(0), 0, 500, spec)
    assert (state.current_replicas, decision.rescale) == (0, False)


def test_raising_min_replicas_while_scaled_to_zero_wakes_to_min() -> None:
    gates = FeatureGates(scale_to_zero=True)
    spec = HpaSpec(2, 10, 10, behavior=Behavior(), feature_gates=gates)
    state = HpaState(0, scaled_to_zero=True)
    state, decision = step(state, 0, 0, spec)
    assert (decision.metric_replicas, state.current_replicas) == (0, 2)


def test_minimum_zero_needs_the_scale_to_zero_gate() -> None:
    with pytest.raises(HpaSpecError, match="minReplicas"):
        HpaSpec(0, 10, 10)


TWO_METRICS = replace(
    LEGACY, extra_metrics=(MetricTarget("tgi_batch_current_size", TargetType.AVERAGE_VALUE, 8),)
)


def test_the_largest_metric_proposal_wins() -> None:
    state, decision = step(HpaState(2), 0, {"tgi_queue_size": 5, "tgi_batch_current_size": 40}, TWO_METRICS)
    assert [p.replicas for p in decision.proposals] == [1, 5]
    assert (decision.metric_replicas, state.current_replicas) == (5, 4)
    assert decision.reason == "tgi_batch_current_size above target"


def test_a_missing_metric_still_allows_a_scale_up() -> None:
    state, decision = step(
        HpaState(2), 0, {"tgi_queue_size": 60, "tgi_batch_current_size": None}, TWO_METRICS
    )
    assert state.current_replicas == 4
    assert decision.error is not None
    assert "1 invalid out of 2" in decision.error


def test_a_missing_metric_blocks_a_scale_down_and_records_nothing() -> None:
    start = HpaState(4, recommendations=(Recommendation(4, Seconds(0.0)),))
    state, decision = step(start, 15, {"tgi_queue_size": 0, "tgi_batch_current_size": None}, TWO_METRICS)
    assert state == start
    assert (decision.rescale, decision.metric_replicas) == (False, None)


def test_an_unreadable_single_metric_never_becomes_zero() -> None:
    state, decisions = _run(LEGACY, 3, [(float(t), None) for t in range(0, 901, 15)])
    assert state.current_replicas == 3
    assert all(d.error is not None and not d.rescale for d in decisions)


def test_average_value_divides_by_existing_pods_not_ready_ones() -> None:
    # 2 Ready out of 6 pods: the HPA compares 66 / (10 x 6) = 1.1, inside the band, and holds.
    state, decision = step(HpaState(6), 0, 66, LEGACY, status_replicas=6, ready_pods=2)
    assert (state.current_replicas, decision.proposals[0].within_tolerance) == (6, True)


def test_value_target_scales_with_ready_pods() -> None:
    spec = HpaSpec(1, 20, extra_metrics=(MetricTarget("requests", TargetType.VALUE, 100),))
    state, decision = step(HpaState(4), 0, 300, spec, status_replicas=4, ready_pods=2)
    # ratio 3.0, times 2 Ready pods = 6.
    assert (decision.metric_replicas, state.current_replicas) == (6, 6)


def test_time_must_not_run_backwards() -> None:
    state, _ = step(HpaState(2), 100, 20, LEGACY)
    with pytest.raises(ValueError, match="backwards"):
        step(state, 99, 20, LEGACY)


def test_several_metrics_need_named_values() -> None:
    with pytest.raises(ValueError, match="pass a mapping"):
        step(HpaState(2), 0, 20, TWO_METRICS)
    with pytest.raises(ValueError, match="unknown metric"):
        step(HpaState(2), 0, {"nope": 1}, LEGACY)


def test_negative_metric_values_are_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        step(HpaState(2), 0, -1, LEGACY)


def test_explain_names_the_limiting_policy() -> None:
    up = ScalingRules(0, SelectPolicy.MAX, (ScalingPolicy(PolicyType.PODS, 2, 60),))
    _state, decision = step(HpaState(1), 0, 200, replace(LEGACY, behavior=Behavior(scale_up=up)))
    assert decision.desired_replicas == 3
    assert "ScaleUpLimit by 2 pods per 60s" in decision.explain()
