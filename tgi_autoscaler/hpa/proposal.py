"""Per-metric replica proposals, as ``replica_calculator.go`` computes them for External metrics.

For an ``AverageValue`` target (``GetExternalPerPodMetricReplicas``) the usage ratio is
``usage / (target * statusReplicas)``; inside the tolerance band the proposal is the current
``statusReplicas``, outside it is ``ceil(usage / target)``. The proposal does not depend on how many
pods are ready: replicas still loading a model count as if they already served, which is why a queue
that keeps growing while new pods start drives the proposal further up.

For a ``Value`` target (``GetExternalMetricReplicas``) the ratio is ``usage / target`` and the
proposal ``ceil(ratio * readyPods)``, or ``ceil(ratio)`` when the target is at zero replicas.

All arithmetic is done on milli-values and IEEE doubles in the same order as the Go code, so the
tolerance edges (e.g. a ratio of exactly 1.1) fall on the same side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tgi_autoscaler.hpa.behavior import resolve_behavior
from tgi_autoscaler.hpa.types import (
    MAX_INT32,
    HpaSpec,
    MetricTarget,
    MilliValue,
    TargetType,
)

__all__ = [
    "MetricError",
    "MetricProposal",
    "Tolerances",
    "average_value_proposal",
    "propose",
    "tolerances_for",
    "value_proposal",
]


@dataclass(frozen=True)
class Tolerances:
    """How far below and above 1.0 the usage ratio may be before the HPA acts."""

    scale_down: float
    scale_up: float

    def is_within(self, usage_ratio: float) -> bool:
        """``Tolerances.isWithin``: the band is closed; NaN is never within."""
        return (1.0 - self.scale_down) <= usage_ratio <= (1.0 + self.scale_up)


def tolerances_for(spec: HpaSpec) -> Tolerances:
    """``tolerancesForHpa``: the controller flag, overridden per direction by ``behavior.*.tolerance``.

    The overrides only apply with the ``HPAConfigurableTolerance`` gate (beta, on in v1.36).
    """
    base = Tolerances(spec.tolerance, spec.tolerance)
    if spec.behavior is None or not spec.feature_gates.configurable_tolerance:
        return base
    resolved = resolve_behavior(spec.behavior, spec.downscale_stabilization_seconds)
    return Tolerances(
        scale_down=base.scale_down
        if resolved.scale_down.tolerance is None
        else resolved.scale_down.tolerance,
        scale_up=base.scale_up if resolved.scale_up.tolerance is None else resolved.scale_up.tolerance,
    )


@dataclass(frozen=True)
class MetricProposal:
    """One metric's proposal with the numbers it came from."""

    metric: str
    target: MetricTarget
    usage: MilliValue
    usage_ratio: float
    within_tolerance: bool
    replicas: int


@dataclass(frozen=True)
class MetricError:
    """A metric that produced no proposal (unavailable, or no pods to relate it to)."""

    metric: str
    message: str


def _ratio(numerator: float, denominator: float) -> float:
    """Go's float64 division: x/0 is +Inf (or -Inf), 0/0 is NaN, instead of an exception."""
    if denominator == 0:
        if numerator == 0:
            return math.nan
        return math.copysign(math.inf, numerator)
    return numerator / denominator


def _ceil_int32(value: float) -> int:
    if value > MAX_INT32:
        return MAX_INT32
    return math.ceil(value)


def average_value_proposal(
    status_replicas: int, target: MilliValue, usage: MilliValue, tolerances: Tolerances
) -> tuple[int, float, bool]:
    """``GetExternalPerPodMetricReplicas``: (replicas, usage ratio, within tolerance)."""
    ratio = _ratio(float(usage), float(target) * float(status_replicas))
    if tolerances.is_within(ratio):
        return status_replicas, ratio, True
    return _ceil_int32(float(usage) / float(target)), ratio, False


def value_proposal(
    spec_replicas: int, ready_pods: int, target: MilliValue, usage: MilliValue, tolerances: Tolerances
) -> tuple[int, float, bool]:
    """``GetExternalMetricReplicas`` / ``getUsageRatioReplicaCount``: (replicas, ratio, within)."""
    ratio = float(usage) / float(target)
    if spec_replicas == 0:
        # From zero the tolerance is ignored so the first request can wake the target up.
        return math.ceil(ratio), ratio, False
    if tolerances.is_within(ratio):
        return spec_replicas, ratio, True
    return _ceil_int32(ratio * float(ready_pods)), ratio, False


def propose(
    target: MetricTarget,
    usage: MilliValue,
    *,
    spec_replicas: int,
    status_replicas: int,
    ready_pods: int,
    tolerances: Tolerances,
) -> MetricProposal | MetricError:
    """The proposal of one External metric whose summed value is ``usage``."""
    if target.type is TargetType.AVERAGE_VALUE:
        replicas, ratio, within = average_value_proposal(status_replicas, target.milli, usage, tolerances)
    else:
        if spec_replicas != 0 and status_replicas == 0 and not tolerances.is_within(usage / target.milli):
            # getReadyPodsCount lists the pods only outside the tolerance band, and fails on none.
            return MetricError(target.name, "no pods returned by selector while calculating replica count")
        replicas, ratio, within = value_proposal(spec_replicas, ready_pods, target.milli, usage, tolerances)
    return MetricProposal(target.name, target, usage, ratio, within, replicas)
