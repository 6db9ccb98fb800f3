"""A pure model of the Kubernetes HorizontalPodAutoscaler's replica computation (v1.36).

The HPA decides how many GPU servers a service runs; its ``behavior`` settings decide how fast. This
package reproduces the controller's algorithm for External metrics exactly (``step``), so the
effect of a configuration can be seen offline (``replay`` against a load trace, the ``what-if``
command) and so documentation numbers come from the same arithmetic the cluster runs. No I/O, no
clock: time is passed in.
"""

from tgi_autoscaler.hpa.behavior import ResolvedBehavior, ResolvedRules, resolve_behavior
from tgi_autoscaler.hpa.controller import Decision, HpaState, MetricValues, step
from tgi_autoscaler.hpa.normalize import (
    LimitReason,
    PolicyLimit,
    Recommendation,
    ScaleEvent,
    StabilizationReason,
)
from tgi_autoscaler.hpa.proposal import MetricError, MetricProposal, Tolerances
from tgi_autoscaler.hpa.types import (
    Behavior,
    FeatureGates,
    HpaSpec,
    HpaSpecError,
    MetricTarget,
    MilliValue,
    PolicyType,
    Replicas,
    ScalingPolicy,
    ScalingRules,
    Seconds,
    SelectPolicy,
    TargetType,
)

__all__ = [
    "Behavior",
    "Decision",
    "FeatureGates",
    "HpaSpec",
    "HpaSpecError",
    "HpaState",
    "LimitReason",
    "MetricError",
    "MetricProposal",
    "MetricTarget",
    "MetricValues",
    "MilliValue",
    "PolicyLimit",
    "PolicyType",
    "Recommendation",
    "Replicas",
    "ResolvedBehavior",
    "ResolvedRules",
    "ScaleEvent",
    "ScalingPolicy",
    "ScalingRules",
    "Seconds",
    "SelectPolicy",
    "StabilizationReason",
    "TargetType",
    "Tolerances",
    "resolve_behavior",
    "step",
]
