"""Build ``HpaSpec``/``Behavior`` values from what people already have: YAML or a service spec.

``parse_behavior`` reads the ``behavior`` block of an autoscaling/v2 HPA in its Kubernetes spelling
(camelCase keys), given bare, under a ``behavior`` key, or inside a whole HPA manifest, and reports
every bad field with its path. ``hpa_spec_from_autoscaling`` turns the project's own
``AutoscalingSpec`` into the spec the rendered HPA will have, so backtests use exactly the
numbers the controller deploys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tgi_autoscaler.config.base import parse_yaml
from tgi_autoscaler.config.errors import ConfigError
from tgi_autoscaler.config.service import AutoscalingSpec, ScaleDownSpec, ScaleUpSpec
from tgi_autoscaler.hpa.types import (
    Behavior,
    HpaSpec,
    HpaSpecError,
    PolicyType,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
)
from tgi_autoscaler.k8s.quantity import parse_quantity

__all__ = [
    "BehaviorInputError",
    "behavior_from_autoscaling",
    "behavior_to_manifest",
    "hpa_spec_from_autoscaling",
    "parse_behavior",
    "parse_behavior_yaml",
]


class BehaviorInputError(ValueError):
    """A behavior block that cannot be used; lists every problem as ``path: message``."""

    def __init__(self, source: str, issues: list[str]) -> None:
        self.source = source
        self.issues = tuple(issues)
        super().__init__(f"{source}: invalid HPA behavior:\n" + "\n".join(f"  - {i}" for i in issues))


_RULE_KEYS = {"stabilizationWindowSeconds", "selectPolicy", "policies", "tolerance"}
_POLICY_KEYS = {"type", "value", "periodSeconds"}


def _int(value: Any, path: str, issues: list[str]) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        issues.append(f"{path}: {value!r} is not an integer")
        return None
    return value


def _policy(data: Any, path: str, issues: list[str]) -> ScalingPolicy | None:
    if not isinstance(data, Mapping):
        issues.append(f"{path}: must be a mapping with type, value and periodSeconds")
        return None
    for key in sorted(set(data) - _POLICY_KEYS):
        issues.append(f"{path}.{key}: unknown key (allowed: periodSeconds, type, value)")
    kind = data.get("type")
    if kind not in {p.value for p in PolicyType}:
        issues.append(f"{path}.type: {kind!r} is not one of Pods, Percent")
    value = _int(data.get("value"), f"{path}.value", issues)
    period = _int(data.get("periodSeconds"), f"{path}.periodSeconds", issues)
    if kind not in {p.value for p in PolicyType} or value is None or period is None:
        return None
    try:
        return ScalingPolicy(PolicyType(kind), value, period)
    except HpaSpecError as exc:
        issues.append(f"{path}.{str(exc).removeprefix('policies[].')}")
        return None


def _tolerance(value: Any, path: str, issues: list[str]) -> float | None:
    try:
        return float(parse_quantity(str(value)))
    except ValueError as exc:
        issues.append(f"{path}: {exc}")
        return None


def _rules(data: Any, path: str, issues: list[str]) -> ScalingRules | None:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        issues.append(f"{path}: must be a mapping")
        return None
    for key in sorted(set(data) - _RULE_KEYS):
        issues.append(f"{path}.{key}: unknown key (allowed: {', '.join(sorted(_RULE_KEYS))})")
    window = None
    if "stabilizationWindowSeconds" in data:
        window = _int(data["stabilizationWindowSeconds"], f"{path}.stabilizationWindowSeconds", issues)
    select = None
    if "selectPolicy" in data:
        raw = data["selectPolicy"]
        if raw in {s.value for s in SelectPolicy}:
            select = SelectPolicy(raw)
        else:
            issues.append(f"{path}.selectPolicy: {raw!r} is not one of Max, Min, Disabled")
    policies: tuple[ScalingPolicy, ...] | None = None
    if "policies" in data:
        raw_policies = data["policies"]
        if not isinstance(raw_policies, list):
            issues.append(f"{path}.policies: must be a list")
        else:
            parsed = [_policy(p, f"{path}.policies[{i}]", issues) for i, p in enumerate(raw_policies)]
            # A list with broken entries is already reported; don't also call it empty.
            policies = tuple(p for p in parsed if p is not None) if all(parsed) else None
    tolerance = _tolerance(data["tolerance"], f"{path}.tolerance", issues) if "tolerance" in data else None
    try:
        return ScalingRules(window, select, policies, tolerance)
    except HpaSpecError as exc:
        # Range rules live in ScalingRules; report them alongside the key errors found above.
        issues.append(f"{path}.{exc}")
        return None


def _behavior_block(data: Any) -> tuple[Any, str]:
    """Find the behavior inside an HPA manifest, a ``behavior:`` wrapper, or a bare block."""
    if isinstance(data, Mapping) and isinstance(data.get("spec"), Mapping) and "kind" in data:
        return data["spec"].get("behavior"), "spec.behavior"
    if isinstance(data, Mapping) and set(data) == {"behavior"}:
        return data["behavior"], "behavior"
    return data, "behavior"


def parse_behavior(data: Any, *, source: str) -> Behavior:
    """A ``Behavior`` from decoded YAML/JSON; raises ``BehaviorInputError`` naming each bad path."""
    block, path = _behavior_block(data)
    if block is None:
        block = {}
    if not isinstance(block, Mapping):
        raise BehaviorInputError(source, [f"{path}: must be a mapping with scaleUp and/or scaleDown"])
    issues = [
        f"{path}.{key}: unknown key (allowed: scaleDown, scaleUp)"
        for key in sorted(set(block) - {"scaleUp", "scaleDown"})
    ]
    scale_up = _rules(block.get("scaleUp"), f"{path}.scaleUp", issues)
    scale_down = _rules(block.get("scaleDown"), f"{path}.scaleDown", issues)
    if issues:
        raise BehaviorInputError(source, issues)
    return Behavior(scale_up=scale_up, scale_down=scale_down)


def parse_behavior_yaml(text: str, *, source: str) -> Behavior:
    """``parse_behavior`` of a YAML document."""
    try:
        data = parse_yaml(text, source=source, what="HPA behavior")
    except ConfigError as exc:
        raise BehaviorInputError(source, [str(issue) for issue in exc.issues]) from None
    return parse_behavior(data, source=source)


def _rules_to_manifest(rules: ScalingRules) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if rules.stabilization_window_seconds is not None:
        out["stabilizationWindowSeconds"] = rules.stabilization_window_seconds
    if rules.select_policy is not None:
        out["selectPolicy"] = rules.select_policy.value
    if rules.policies is not None:
        out["policies"] = [
            {"type": p.type.value, "value": p.value, "periodSeconds": p.period_seconds}
            for p in rules.policies
        ]
    if rules.tolerance is not None:
        out["tolerance"] = repr(rules.tolerance)  # a decimal string is a valid quantity
    return out


def behavior_to_manifest(behavior: Behavior) -> dict[str, Any]:
    """The ``spec.behavior`` block of an HPA manifest for ``behavior`` (absent fields stay absent),
    so a real HPA can be created with exactly the behavior a model run used."""
    out: dict[str, Any] = {}
    if behavior.scale_up is not None:
        out["scaleUp"] = _rules_to_manifest(behavior.scale_up)
    if behavior.scale_down is not None:
        out["scaleDown"] = _rules_to_manifest(behavior.scale_down)
    return out


def _rules_from(spec: ScaleUpSpec | ScaleDownSpec) -> ScalingRules:
    return ScalingRules(
        stabilization_window_seconds=spec.stabilization_window_seconds,
        select_policy=SelectPolicy(spec.select_policy),
        policies=tuple(ScalingPolicy(PolicyType(p.type), p.value, p.period_seconds) for p in spec.policies),
        tolerance=spec.tolerance,
    )


def behavior_from_autoscaling(autoscaling: AutoscalingSpec) -> Behavior:
    """The ``behavior`` the renderer writes for a service (both directions always set)."""
    return Behavior(
        scale_up=_rules_from(autoscaling.scale_up), scale_down=_rules_from(autoscaling.scale_down)
    )


def hpa_spec_from_autoscaling(
    autoscaling: AutoscalingSpec | None = None,
    *,
    metric_name: str = "tgi_queue_size",
    behavior: Behavior | None = None,
    use_behavior: bool = True,
) -> HpaSpec:
    """The queue-metric HPA the renderer produces for ``autoscaling`` (default: the project defaults).

    ``behavior`` replaces the service's behavior; ``use_behavior=False`` models an HPA without a
    ``behavior`` block (the legacy algorithm).
    """
    autoscaling = autoscaling or AutoscalingSpec()
    chosen = behavior if behavior is not None else behavior_from_autoscaling(autoscaling)
    return HpaSpec(
        min_replicas=autoscaling.min_replicas,
        max_replicas=autoscaling.max_replicas,
        target_average_value=autoscaling.queue.target_per_replica,
        behavior=chosen if use_behavior else None,
        metric_name=metric_name,
    )
