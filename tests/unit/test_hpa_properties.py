"""Properties of the HPA model that must hold for any behavior and any sequence of readings.

The checks are stated independently of the implementation: bounds come from the spec, the
stabilization property from the proposals the decisions report, and the policy property from the
replica timeline the decisions produce (the count in effect one period earlier), not from the
event lists the model keeps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tgi_autoscaler.hpa.behavior import resolve_behavior
from tgi_autoscaler.hpa.controller import Decision, HpaState, step
from tgi_autoscaler.hpa.types import (
    Behavior,
    HpaSpec,
    PolicyType,
    ScalingPolicy,
    ScalingRules,
    Seconds,
    SelectPolicy,
)

pytestmark = pytest.mark.unit

PERIODS = st.sampled_from([1, 15, 30, 60, 120, 300])
WINDOWS = st.sampled_from([0, 15, 30, 60, 120, 300, 600])

policies = st.builds(
    ScalingPolicy,
    type=st.sampled_from(list(PolicyType)),
    value=st.integers(1, 150),
    period_seconds=PERIODS,
)
rules = st.builds(
    ScalingRules,
    stabilization_window_seconds=st.none() | WINDOWS,
    select_policy=st.none() | st.sampled_from(list(SelectPolicy)),
    policies=st.none() | st.lists(policies, min_size=1, max_size=3).map(tuple),
    tolerance=st.none() | st.sampled_from([0.0, 0.05, 0.1, 0.5]),
)
behaviors = st.builds(Behavior, scale_up=st.none() | rules, scale_down=st.none() | rules)


@st.composite
def specs(draw: st.DrawFn, with_behavior: bool | None = None) -> HpaSpec:
    low = draw(st.integers(1, 5))
    high = draw(st.integers(low, 20))
    if with_behavior is None:
        behavior = draw(st.none() | behaviors)
    else:
        behavior = draw(behaviors) if with_behavior else None
    return HpaSpec(
        min_replicas=low,
        max_replicas=high,
        target_average_value=draw(st.sampled_from([1.0, 2.5, 10.0])),
        behavior=behavior,
        tolerance=draw(st.sampled_from([0.0, 0.1, 0.3])),
        downscale_stabilization_seconds=draw(WINDOWS),
    )


@dataclass(frozen=True)
class Run:
    spec: HpaSpec
    initial: int
    decisions: tuple[Decision, ...]


@st.composite
def runs(draw: st.DrawFn, with_behavior: bool | None = None) -> Run:
    spec = draw(specs(with_behavior))
    initial = draw(st.integers(spec.min_replicas, spec.max_replicas))
    gaps = draw(st.lists(st.sampled_from([0, 1, 5, 15, 15, 15, 30, 60, 301]), min_size=1, max_size=40))
    values = draw(st.lists(st.floats(0, 300, allow_nan=False), min_size=len(gaps), max_size=len(gaps)))
    state = HpaState(initial)
    now = 0.0
    decisions = []
    for gap, value in zip(gaps, values, strict=True):
        now += gap
        state, decision = step(state, now, round(value, 3), spec)
        assert decision.desired_replicas == state.current_replicas
        decisions.append(decision)
    return Run(spec, initial, tuple(decisions))


@settings(max_examples=150, deadline=None)
@given(runs())
def test_replicas_always_stay_within_min_and_max(run: Run) -> None:
    for decision in run.decisions:
        assert run.spec.min_replicas <= decision.desired_replicas <= run.spec.max_replicas


def _recorded_until(run: Run, decision: Decision) -> list[tuple[Seconds, int]]:
    """Every recommendation recorded up to and including ``decision``: the initial count, then each
    raw proposal (syncs at the same instant after ``decision`` are not known to it)."""
    index = run.decisions.index(decision)
    first = run.decisions[0].time
    return [(first, run.initial)] + [
        (d.time, d.metric_replicas) for d in run.decisions[: index + 1] if d.metric_replicas is not None
    ]


@settings(max_examples=150, deadline=None)
@given(runs(with_behavior=True))
def test_with_behavior_no_scale_down_below_a_proposal_of_the_window(run: Run) -> None:
    assert run.spec.behavior is not None
    window = resolve_behavior(run.spec.behavior, run.spec.downscale_stabilization_seconds).scale_down
    for decision in run.decisions:
        if decision.desired_replicas >= decision.current_replicas:
            continue
        since = decision.time - window.stabilization_window_seconds
        # The sync's own proposal always counts, earlier ones if strictly inside the window.
        assert decision.metric_replicas is not None
        recent = [decision.metric_replicas] + [r for t, r in _recorded_until(run, decision) if t > since]
        assert decision.desired_replicas >= max(recent), (decision.explain(), recent)


@settings(max_examples=150, deadline=None)
@given(runs(with_behavior=False))
def test_without_behavior_no_scale_down_below_a_proposal_of_the_window(run: Run) -> None:
    window = run.spec.downscale_stabilization_seconds
    for decision in run.decisions:
        if decision.desired_replicas >= decision.current_replicas:
            continue
        # The legacy window includes its edge.
        recent = [r for t, r in _recorded_until(run, decision) if t >= decision.time - window]
        assert decision.desired_replicas >= min(max(recent), run.spec.max_replicas)


def _replicas_at(run: Run, time: float) -> int:
    """The replica count in effect after every rescale at or before ``time``."""
    replicas = run.initial
    for decision in run.decisions:
        if decision.time > time:
            break
        replicas = decision.desired_replicas
    return replicas


def _up_bound(policy: ScalingPolicy, start: int) -> int:
    if policy.type is PolicyType.PODS:
        return start + policy.value
    return math.ceil(start * (1 + policy.value / 100))


def _down_bound(policy: ScalingPolicy, start: int) -> int:
    if policy.type is PolicyType.PODS:
        return start - policy.value
    return math.trunc(start * (1 - policy.value / 100))


def _allowed(
    run: Run,
    decision: Decision,
    policies: tuple[ScalingPolicy, ...],
    bound: Callable[[ScalingPolicy, int], int],
) -> list[int]:
    # The decision's own rescale is not yet in effect when it is computed: look strictly before it.
    index = run.decisions.index(decision)
    earlier = Run(run.spec, run.initial, run.decisions[:index])
    return [bound(p, _replicas_at(earlier, decision.time - p.period_seconds)) for p in policies]


@settings(max_examples=150, deadline=None)
@given(runs(with_behavior=True))
def test_policies_never_allow_more_change_than_their_limit_per_period(run: Run) -> None:
    assert run.spec.behavior is not None
    resolved = resolve_behavior(run.spec.behavior, run.spec.downscale_stabilization_seconds)
    for decision in run.decisions:
        if decision.metric_replicas is None or not decision.rescale:
            continue  # min/max corrections bypass the policies, as in the controller
        if decision.desired_replicas > decision.current_replicas:
            rules = resolved.scale_up
            assert rules.select_policy is not SelectPolicy.DISABLED
            allowed = _allowed(run, decision, rules.policies, _up_bound)
            limit = min(allowed) if rules.select_policy is SelectPolicy.MIN else max(allowed)
            assert decision.desired_replicas <= limit, decision.explain()
        else:
            rules = resolved.scale_down
            assert rules.select_policy is not SelectPolicy.DISABLED
            allowed = _allowed(run, decision, rules.policies, _down_bound)
            limit = max(allowed) if rules.select_policy is SelectPolicy.MIN else min(allowed)
            assert decision.desired_replicas >= limit, decision.explain()


@settings(max_examples=100, deadline=None)
@given(runs())
def test_replaying_the_same_readings_gives_the_same_decisions(run: Run) -> None:
    state = HpaState(run.initial)
    for decision in run.decisions:
        readings = decision.proposals[0].usage / 1000 if decision.proposals else None
        if readings is None:
            continue  # bypass syncs (above max / below min) do not report their reading
        state, again = step(state, decision.time, readings, run.spec)
        assert again == decision
