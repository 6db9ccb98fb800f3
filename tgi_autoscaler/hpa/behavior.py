"""The behavior an HPA actually runs with once the API server and the controller fill in omitted fields.

Mirrors ``SetDefaults_HorizontalPodAutoscalerBehavior`` (pkg/apis/autoscaling/v2/defaults.go): a
behavior that is present gets every absent field from the defaults below, field by field, while an
HPA without ``behavior`` keeps the legacy algorithm (no behavior at all). The scale-down window is
the one default the API leaves empty: the controller fills it from its
``--horizontal-pod-autoscaler-downscale-stabilization`` flag
(``maybeInitScaleDownStabilizationWindow`` in horizontal.go).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tgi_autoscaler.hpa.types import (
    Behavior,
    PolicyType,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
)

__all__ = [
    "DEFAULT_SCALE_DOWN",
    "DEFAULT_SCALE_UP",
    "ResolvedBehavior",
    "ResolvedRules",
    "resolve_behavior",
    "resolve_rules",
]

# The API defaults reproduce the pre-behavior HPA: scale up by max(4 pods, 100%) per 15 s with no
# window; scale down by up to 100% per 15 s after the controller's downscale window.
DEFAULT_SCALE_UP: Final = ScalingRules(
    stabilization_window_seconds=0,
    select_policy=SelectPolicy.MAX,
    policies=(
        ScalingPolicy(PolicyType.PODS, 4, 15),
        ScalingPolicy(PolicyType.PERCENT, 100, 15),
    ),
)
DEFAULT_SCALE_DOWN: Final = ScalingRules(
    stabilization_window_seconds=None,
    select_policy=SelectPolicy.MAX,
    policies=(ScalingPolicy(PolicyType.PERCENT, 100, 15),),
)


@dataclass(frozen=True)
class ResolvedRules:
    """Scaling rules with every field set, as the controller reads them."""

    stabilization_window_seconds: int
    select_policy: SelectPolicy
    policies: tuple[ScalingPolicy, ...]
    tolerance: float | None

    @property
    def longest_period_seconds(self) -> int:
        """``getLongestPolicyPeriod``: how long a scale event can still matter to a policy."""
        return max((p.period_seconds for p in self.policies), default=0)


@dataclass(frozen=True)
class ResolvedBehavior:
    """Both directions resolved."""

    scale_up: ResolvedRules
    scale_down: ResolvedRules


def resolve_rules(rules: ScalingRules | None, defaults: ScalingRules, default_window: int) -> ResolvedRules:
    """``copyHPAScalingRules``: each present field wins over the default, one field at a time."""
    given = rules or ScalingRules()
    window = given.stabilization_window_seconds
    if window is None:
        window = defaults.stabilization_window_seconds
    select = given.select_policy or defaults.select_policy
    policies = given.policies if given.policies is not None else defaults.policies
    # The defaults always set both.
    assert select is not None
    assert policies is not None
    return ResolvedRules(
        stabilization_window_seconds=default_window if window is None else window,
        select_policy=select,
        policies=policies,
        tolerance=given.tolerance,
    )


def resolve_behavior(behavior: Behavior, downscale_stabilization_seconds: int) -> ResolvedBehavior:
    """The behavior in effect for an HPA whose spec has ``behavior`` set (possibly empty)."""
    return ResolvedBehavior(
        scale_up=resolve_rules(behavior.scale_up, DEFAULT_SCALE_UP, 0),
        scale_down=resolve_rules(behavior.scale_down, DEFAULT_SCALE_DOWN, downscale_stabilization_seconds),
    )
