"""The inputs of the HPA model: an autoscaling/v2 HorizontalPodAutoscaler spec as plain frozen values.

Field names follow the Kubernetes API (``stabilizationWindowSeconds`` becomes
``stabilization_window_seconds``) so a reader can map every value to the manifest it comes from.
Optional behavior fields stay ``None`` here exactly as they are absent from a manifest; the API
server's defaults are applied later by ``tgi_autoscaler.hpa.behavior.resolve_behavior``, because
"omitted" and "set to the default" differ for the scale-down window (its default is a controller
flag, not an API default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from enum import StrEnum
from typing import Final, NewType

__all__ = [
    "DEFAULT_DOWNSCALE_STABILIZATION_SECONDS",
    "DEFAULT_TOLERANCE",
    "MAX_INT32",
    "MAX_PERIOD_SECONDS",
    "MAX_STABILIZATION_WINDOW_SECONDS",
    "Behavior",
    "FeatureGates",
    "HpaSpec",
    "HpaSpecError",
    "MetricTarget",
    "MilliValue",
    "PolicyType",
    "Replicas",
    "ScalingPolicy",
    "ScalingRules",
    "Seconds",
    "SelectPolicy",
    "TargetType",
    "to_milli",
]

Seconds = NewType("Seconds", float)
"""A point in time or a duration, in seconds; the caller chooses the epoch (no clock is read)."""

Replicas = NewType("Replicas", int)
"""A replica count (the controller's int32)."""

MilliValue = NewType("MilliValue", int)
"""A metric value in thousandths, as the controller compares them (``Quantity.MilliValue()``)."""

MAX_INT32: Final = 2**31 - 1
# kube-controller-manager defaults: --horizontal-pod-autoscaler-tolerance and
# --horizontal-pod-autoscaler-downscale-stabilization.
DEFAULT_TOLERANCE: Final = 0.1
DEFAULT_DOWNSCALE_STABILIZATION_SECONDS: Final = 300
# API validation limits (pkg/apis/autoscaling/validation).
MAX_PERIOD_SECONDS: Final = 1800
MAX_STABILIZATION_WINDOW_SECONDS: Final = 3600


class HpaSpecError(ValueError):
    """An HPA spec the API server would reject; the message names the field and the value."""


def to_milli(value: float | int | Decimal) -> MilliValue:
    """A quantity in milli-units, rounded up like ``resource.Quantity.MilliValue()``.

    Floats are read through their shortest decimal spelling (``0.1`` is 100m, not the binary
    0.1000000000000000055...), which is what a quantity serialized as text carries.
    """
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"metric value must be finite, got {value!r}")
    number = value if isinstance(value, Decimal) else Decimal(repr(value))
    return MilliValue(int((number * 1000).to_integral_value(rounding=ROUND_CEILING)))


class PolicyType(StrEnum):
    """``HPAScalingPolicyType``: a change in absolute pods or in percent of the period's start count."""

    PODS = "Pods"
    PERCENT = "Percent"


class SelectPolicy(StrEnum):
    """``ScalingPolicySelect``: which policy wins when several apply."""

    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


class TargetType(StrEnum):
    """External metric target types (``Utilization`` does not apply to External metrics)."""

    AVERAGE_VALUE = "AverageValue"
    VALUE = "Value"


@dataclass(frozen=True)
class ScalingPolicy:
    """``HPAScalingPolicy``: at most ``value`` pods (or percent) of change per ``period_seconds``."""

    type: PolicyType
    value: int
    period_seconds: int

    def __post_init__(self) -> None:
        if self.value <= 0:
            raise HpaSpecError(f"policies[].value: must be greater than zero (got {self.value})")
        if not 0 < self.period_seconds <= MAX_PERIOD_SECONDS:
            raise HpaSpecError(
                f"policies[].periodSeconds: must be in 1..{MAX_PERIOD_SECONDS} (got {self.period_seconds})"
            )

    def __str__(self) -> str:
        amount = (
            f"{self.value}%"
            if self.type is PolicyType.PERCENT
            else f"{self.value} pod{'' if self.value == 1 else 's'}"
        )
        return f"{amount} per {self.period_seconds}s"


@dataclass(frozen=True)
class ScalingRules:
    """``HPAScalingRules`` for one direction; ``None`` means the field is absent from the manifest."""

    stabilization_window_seconds: int | None = None
    select_policy: SelectPolicy | None = None
    policies: tuple[ScalingPolicy, ...] | None = None
    tolerance: float | None = None

    def __post_init__(self) -> None:
        window = self.stabilization_window_seconds
        if window is not None and not 0 <= window <= MAX_STABILIZATION_WINDOW_SECONDS:
            raise HpaSpecError(
                f"stabilizationWindowSeconds: must be in 0..{MAX_STABILIZATION_WINDOW_SECONDS} (got {window})"
            )
        if self.policies is not None and not self.policies:
            raise HpaSpecError("policies: must specify at least one policy")
        if self.tolerance is not None and not (math.isfinite(self.tolerance) and self.tolerance >= 0):
            raise HpaSpecError(f"tolerance: must be a non-negative number (got {self.tolerance})")


@dataclass(frozen=True)
class Behavior:
    """``HorizontalPodAutoscalerBehavior``; a missing direction gets the API defaults."""

    scale_up: ScalingRules | None = None
    scale_down: ScalingRules | None = None


@dataclass(frozen=True)
class MetricTarget:
    """One External metric of the HPA and its target (``AverageValue`` per replica, or a total ``Value``)."""

    name: str
    type: TargetType
    value: float

    def __post_init__(self) -> None:
        if not self.name:
            raise HpaSpecError("metrics[].external.metric.name: must not be empty")
        if not (math.isfinite(self.value) and to_milli(self.value) > 0):
            raise HpaSpecError(
                f"metrics[{self.name}].target: must be positive and at least 0.001 (got {self.value})"
            )

    @property
    def milli(self) -> MilliValue:
        """The target as the controller uses it (``MilliValue()`` of the quantity)."""
        return to_milli(self.value)


@dataclass(frozen=True)
class FeatureGates:
    """The kube-controller-manager feature gates that change the replica computation.

    Defaults are those of Kubernetes v1.36: ``HPAConfigurableTolerance`` is beta and on,
    ``HPAScaleToZero`` is alpha and off.
    """

    configurable_tolerance: bool = True
    scale_to_zero: bool = False


@dataclass(frozen=True)
class HpaSpec:
    """What the replica computation reads from an HPA and from the controller's flags.

    ``target_average_value`` is the per-replica target of the primary External metric
    (``metric_name``, the queue); ``extra_metrics`` adds more External metrics, the HPA follows the
    largest proposal. ``tolerance`` and ``downscale_stabilization_seconds`` are controller flags
    (``--horizontal-pod-autoscaler-tolerance``, ``--horizontal-pod-autoscaler-downscale-stabilization``).
    """

    min_replicas: int
    max_replicas: int
    target_average_value: float | None = None
    behavior: Behavior | None = None
    tolerance: float = DEFAULT_TOLERANCE
    metric_name: str = "tgi_queue_size"
    extra_metrics: tuple[MetricTarget, ...] = ()
    downscale_stabilization_seconds: int = DEFAULT_DOWNSCALE_STABILIZATION_SECONDS
    feature_gates: FeatureGates = field(default_factory=FeatureGates)

    def __post_init__(self) -> None:
        lowest = 0 if self.feature_gates.scale_to_zero else 1
        if not lowest <= self.min_replicas <= MAX_INT32:
            raise HpaSpecError(
                f"minReplicas: must be >= {lowest} (got {self.min_replicas})"
                + ("" if lowest == 0 else "; 0 needs the HPAScaleToZero feature gate")
            )
        if not 1 <= self.max_replicas <= MAX_INT32:
            raise HpaSpecError(f"maxReplicas: must be at least 1 (got {self.max_replicas})")
        if self.max_replicas < self.min_replicas:
            raise HpaSpecError(
                f"maxReplicas: must be >= minReplicas ({self.max_replicas} < {self.min_replicas})"
            )
        if not (math.isfinite(self.tolerance) and self.tolerance >= 0):
            raise HpaSpecError(f"tolerance: must be a non-negative number (got {self.tolerance})")
        if self.downscale_stabilization_seconds < 0:
            raise HpaSpecError(
                f"downscaleStabilizationSeconds: must be >= 0 (got {self.downscale_stabilization_seconds})"
            )
        metrics = self.metrics  # validates the primary target
        if not metrics:
            raise HpaSpecError("metrics: set target_average_value or at least one extra metric")
        names = [m.name for m in metrics]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise HpaSpecError(f"metrics: duplicate metric name(s) {', '.join(duplicates)}")

    @property
    def metrics(self) -> tuple[MetricTarget, ...]:
        """All metrics in spec order: the primary queue metric first, then ``extra_metrics``."""
        if self.target_average_value is None:
            return self.extra_metrics
        primary = MetricTarget(self.metric_name, TargetType.AVERAGE_VALUE, self.target_average_value)
        return (primary, *self.extra_metrics)
