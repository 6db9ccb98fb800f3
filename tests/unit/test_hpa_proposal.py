"""Per-metric proposals and tolerances, pinned to replica_calculator.go (Kubernetes v1.36)."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from tgi_autoscaler.hpa.proposal import (
    MetricError,
    MetricProposal,
    Tolerances,
    average_value_proposal,
    propose,
    tolerances_for,
    value_proposal,
)
from tgi_autoscaler.hpa.types import (
    MAX_INT32,
    Behavior,
    FeatureGates,
    HpaSpec,
    HpaSpecError,
    MetricTarget,
    MilliValue,
    ScalingRules,
    TargetType,
    to_milli,
)

pytestmark = pytest.mark.unit

DEFAULT = Tolerances(0.1, 0.1)


def _m(value: float) -> MilliValue:
    return to_milli(value)


# GetExternalPerPodMetricReplicas: ratio = usage / (target * statusReplicas); inside
# [1 - tolerance, 1 + tolerance] the proposal is statusReplicas, else ceil(usage / target).
@pytest.mark.parametrize(
    ("status", "target", "usage", "expected", "within"),
    [
        # 3 pods, 45 queued, target 10 each: ratio 1.5 is outside the band, ceil(45 / 10) = 5.
        (3, 10, 45, 5, False),
        # Ratio exactly 1.1 (33000 / 30000 == 1.0 + 0.1 in doubles): the band is closed, keep 3.
        (3, 10, 33, 3, True),
        # One milli-request more and the ratio leaves the band: ceil(3.3001) = 4.
        (3, 10, 33.001, 4, False),
        # Ratio exactly 0.9 is inside the band too.
        (3, 10, 27, 3, True),
        # Just below the band: outside, but ceil(2.6999) is still 3, so no scale-down either.
        (3, 10, 26.999, 3, False),
        (3, 10, 20, 2, False),
        # An empty queue proposes zero; min/max clamping happens later.
        (3, 10, 0, 0, False),
        # The proposal ignores how many pods exist once outside the band: 1 pod or 7, 420 / 10 = 42.
        (1, 10, 420, 42, False),
        (7, 10, 420, 42, False),
        # Fractional targets: 2.5 per pod, 11 queued on 4 pods -> ratio 1.1 -> within.
        (4, 2.5, 11, 4, True),
    ],
)
def test_average_value_proposal_matches_replica_calculator(
    status: int, target: float, usage: float, expected: int, within: bool
) -> None:
    replicas, ratio, is_within = average_value_proposal(status, _m(target), _m(usage), DEFAULT)
    assert (replicas, is_within) == (expected, within)
    assert ratio == pytest.approx(usage / (target * status))


def test_average_value_with_no_pods_follows_go_float_division() -> None:
    # statusReplicas 0: Go divides by zero to +Inf (or NaN for 0/0); neither is within tolerance.
    assert average_value_proposal(0, _m(10), _m(25), DEFAULT)[0] == 3
    replicas, ratio, within = average_value_proposal(0, _m(10), _m(0), DEFAULT)
    assert (replicas, within) == (0, False)
    assert math.isnan(ratio)


def test_average_value_proposal_is_capped_at_int32() -> None:
    assert average_value_proposal(1, _m(0.001), _m(10**12), DEFAULT)[0] == MAX_INT32


# GetExternalMetricReplicas / getUsageRatioReplicaCount: ratio = usage / target; outside the band
# the proposal is ceil(ratio * readyPods); from zero replicas it is ceil(ratio), tolerance ignored.
@pytest.mark.parametrize(
    ("spec_replicas", "ready", "target", "usage", "expected", "within"),
    [
        (2, 2, 100, 300, 6, False),
        # Unready pods do not count: only 1 of 2 is Ready, ceil(3.0 * 1) = 3.
        (2, 1, 100, 300, 3, False),
        (2, 2, 100, 105, 2, True),
        # From zero: ceil(2.5) = 3 and even a ratio of exactly 1.0 gives 1 (no tolerance check).
        (0, 0, 100, 250, 3, False),
        (0, 0, 100, 100, 1, False),
        (0, 0, 100, 0, 0, False),
    ],
)
def test_value_proposal_matches_replica_calculator(
    spec_replicas: int, ready: int, target: float, usage: float, expected: int, within: bool
) -> None:
    replicas, _ratio, is_within = value_proposal(spec_replicas, ready, _m(target), _m(usage), DEFAULT)
    assert (replicas, is_within) == (expected, within)


def test_value_target_without_pods_is_a_metric_error() -> None:
    target = MetricTarget("requests", TargetType.VALUE, 100)
    result = propose(target, _m(300), spec_replicas=2, status_replicas=0, ready_pods=0, tolerances=DEFAULT)
    assert isinstance(result, MetricError)
    assert "no pods" in result.message


def test_value_target_within_tolerance_needs_no_pods() -> None:
    # getUsageRatioReplicaCount returns before listing pods when the ratio is inside the band.
    target = MetricTarget("requests", TargetType.VALUE, 100)
    result = propose(target, _m(100), spec_replicas=2, status_replicas=0, ready_pods=0, tolerances=DEFAULT)
    assert isinstance(result, MetricProposal)
    assert result.replicas == 2


@pytest.mark.parametrize(
    ("ratio", "within"),
    [(0.9, True), (1.1, True), (1.0, True), (0.8999999, False), (1.1000001, False), (math.nan, False)],
)
def test_tolerance_band_is_closed_and_rejects_nan(ratio: float, within: bool) -> None:
    assert DEFAULT.is_within(ratio) is within


def _spec(behavior: Behavior | None, gates: FeatureGates | None = None) -> HpaSpec:
    return HpaSpec(1, 10, 10, behavior=behavior, tolerance=0.1, feature_gates=gates or FeatureGates())


@pytest.mark.parametrize(
    ("behavior", "gates", "expected"),
    [
        (None, None, Tolerances(0.1, 0.1)),
        (Behavior(), None, Tolerances(0.1, 0.1)),
        (Behavior(scale_up=ScalingRules(tolerance=0.02)), None, Tolerances(0.1, 0.02)),
        (Behavior(scale_down=ScalingRules(tolerance=0.5)), None, Tolerances(0.5, 0.1)),
        # tolerancesForHpa ignores behavior tolerances when HPAConfigurableTolerance is off.
        (
            Behavior(ScalingRules(tolerance=0.0), ScalingRules(tolerance=0.5)),
            FeatureGates(configurable_tolerance=False),
            Tolerances(0.1, 0.1),
        ),
    ],
)
def test_tolerances_come_from_the_flag_and_per_direction_overrides(
    behavior: Behavior | None, gates: FeatureGates | None, expected: Tolerances
) -> None:
    assert tolerances_for(_spec(behavior, gates)) == expected


def test_per_direction_tolerance_changes_the_proposal() -> None:
    # 31.5 queued on 3 pods at target 10: ratio 1.05. Within the default 10% band, but not within a
    # 2% scale-up tolerance, where ceil(3.15) = 4.
    target = MetricTarget("q", TargetType.AVERAGE_VALUE, 10)
    loose = propose(target, _m(31.5), spec_replicas=3, status_replicas=3, ready_pods=3, tolerances=DEFAULT)
    tight = propose(
        target, _m(31.5), spec_replicas=3, status_replicas=3, ready_pods=3, tolerances=Tolerances(0.1, 0.02)
    )
    assert isinstance(loose, MetricProposal)
    assert isinstance(tight, MetricProposal)
    assert (loose.replicas, tight.replicas) == (3, 4)


@pytest.mark.parametrize(
    ("value", "milli"),
    [(10, 10000), (0.1, 100), (0.3, 300), (10.0001, 10001), (Decimal("0.0005"), 1), (2.5, 2500), (0, 0)],
)
def test_values_are_rounded_up_to_milli_units_like_quantity_milli_value(value: float, milli: int) -> None:
    assert to_milli(value) == milli


def test_non_finite_metric_values_are_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        to_milli(math.inf)


def test_targets_below_one_milli_unit_are_refused() -> None:
    with pytest.raises(HpaSpecError, match=r"at least 0\.001"):
        MetricTarget("q", TargetType.AVERAGE_VALUE, 0)
