"""Scaling policies as data: the ones SREs run today, each with where its numbers come from, and
the project's own.

An ``HpaPolicy`` is a plain HorizontalPodAutoscaler on one External signal (the real controller's
algorithm, ``tgi_autoscaler.hpa``); a ``KpaPolicy`` is a stable/panic-window autoscaler in the style
of Knative's KPA (and AIBrix's), which no HPA setting expresses. Targets that depend on the server
(a demand target in requests/s, a concurrency target in sequences) are resolved against the
service model by ``resolve``, so every policy meets the same servers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

from tgi_autoscaler.config.service import AutoscalingSpec, TGIServiceSpec
from tgi_autoscaler.hpa.spec_input import behavior_from_autoscaling
from tgi_autoscaler.hpa.types import Behavior, PolicyType, ScalingPolicy, ScalingRules, SelectPolicy
from tgi_autoscaler.servicemodel.capacity import slo_target_rps
from tgi_autoscaler.servicemodel.params import ServerParams
from tgi_autoscaler.signals import DEFAULT_DEMAND, DemandSignal, SignalKind

__all__ = [
    "BASELINES",
    "HpaPolicy",
    "KpaPolicy",
    "Policy",
    "Slo",
    "demand_policy",
    "policy_names",
    "resolve",
    "service_policy",
]


@dataclass(frozen=True, slots=True)
class Slo:
    """Time to first token within ``ttft_s`` for ``attainment`` of requests."""

    ttft_s: float = 2.0
    attainment: float = 0.99


@dataclass(frozen=True, slots=True)
class HpaPolicy:
    """An HPA on one signal. ``target`` is the AverageValue; ``None`` derives it (demand: from the SLO)."""

    name: str
    source: str
    signal: SignalKind
    target: float | None
    behavior: Behavior | None
    tolerance: float = 0.1
    downscale_stabilization_s: int = 300
    sync_period_s: float = 15.0
    demand: DemandSignal = DEFAULT_DEMAND
    note: str = ""
    headroom: float = 0.0  # a derived target is lowered by this fraction (0.2: 20 % spare capacity)


@dataclass(frozen=True, slots=True)
class KpaPolicy:
    """Knative-KPA-style: concurrency averaged over a stable and a panic window, evaluated every tick."""

    name: str
    source: str
    target_utilization: float = 0.7
    stable_window_s: float = 60.0
    panic_window_pct: float = 10.0
    panic_threshold: float = 2.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    tick_s: float = 2.0
    target_concurrency: float | None = None
    note: str = ""


Policy = HpaPolicy | KpaPolicy


def _rules(window: int, select: SelectPolicy, *policies: tuple[PolicyType, int, int]) -> ScalingRules:
    return ScalingRules(
        stabilization_window_seconds=window,
        select_policy=select,
        policies=tuple(ScalingPolicy(t, v, p) for t, v, p in policies),
    )


PODS, PERCENT = PolicyType.PODS, PolicyType.PERCENT
MAX, MIN = SelectPolicy.MAX, SelectPolicy.MIN

#: What the project renders by default, read from the service spec's defaults (one source).
PROJECT_BEHAVIOR: Final = behavior_from_autoscaling(AutoscalingSpec())


def demand_policy(
    name: str = "tgi-autoscaler",
    *,
    behavior: Behavior = PROJECT_BEHAVIOR,
    demand: DemandSignal = DEFAULT_DEMAND,
    target: float | None = None,
    note: str = "",
    headroom: float = 0.0,
) -> HpaPolicy:
    return HpaPolicy(
        name,
        "this project: demand signal, AverageValue target from the TTFT SLO (Erlang C)",
        SignalKind.DEMAND,
        target,
        behavior,
        demand=demand,
        note=note,
        headroom=headroom,
    )


BASELINES: Final[tuple[Policy, ...]] = (
    HpaPolicy(
        "kubernetes-defaults",
        "Kubernetes API defaults (no behavior block: up max(4 pods, 100 %)/15 s, down after 300 s) "
        "on the queue, target 10",
        SignalKind.QUEUE,
        10.0,
        None,
    ),
    HpaPolicy(
        "seed-article",
        "the seed article's HPA: queue 10 per replica, up 100 %/30 s, down 50 %/60 s after 300 s",
        SignalKind.QUEUE,
        10.0,
        Behavior(
            scale_up=_rules(0, MAX, (PERCENT, 100, 30)),
            scale_down=_rules(300, MAX, (PERCENT, 50, 60)),
        ),
        note="its CPU 70 % metric is left out: TGI's CPU use does not follow GPU load",
    ),
    HpaPolicy(
        "project-v0",
        "this project's earlier defaults: queue 10, up max(100 %, 2 pods)/60 s, down 1 pod/300 s after 600 s",
        SignalKind.QUEUE,
        10.0,
        Behavior(
            scale_up=_rules(0, MAX, (PERCENT, 100, 60), (PODS, 2, 60)),
            scale_down=_rules(600, MIN, (PODS, 1, 300)),
        ),
    ),
    HpaPolicy(
        "production-stack-keda",
        "vLLM production-stack's KEDA ScaledObject: num_requests_waiting threshold 5, polling 15 s, "
        "cooldown 360 s (only for 1 <-> 0), HPA default behavior",
        SignalKind.QUEUE,
        5.0,
        Behavior(),
    ),
    HpaPolicy(
        "llm-d",
        "llm-d's SLO-aware HPA behavior: up max(100 %, 4 pods)/60 s, down 1 pod/120 s, on waiting "
        "requests, target 5",
        SignalKind.QUEUE,
        5.0,
        Behavior(
            scale_up=_rules(0, MAX, (PERCENT, 100, 60), (PODS, 4, 60)),
            scale_down=_rules(0, MIN, (PODS, 1, 120)),
        ),
    ),
    KpaPolicy(
        "kpa-windows",
        "Knative KPA defaults (AIBrix alike): concurrency, 70 % target utilization, stable 60 s, "
        "panic 6 s, panic threshold 200 %",
    ),
)


def service_policy(service: TGIServiceSpec, name: str = "service") -> HpaPolicy:
    """The HPA a service spec renders (signal, target and behavior), as a policy."""
    scaling = service.autoscaling
    signal = SignalKind.DEMAND if scaling.signal == "demand" else SignalKind.QUEUE
    _, target = service.scaling_metric
    return HpaPolicy(
        name,
        "the service spec's autoscaling",
        signal,
        target,
        behavior_from_autoscaling(scaling),
    )


def policy_names() -> tuple[str, ...]:
    return (demand_policy().name, *(p.name for p in BASELINES))


def resolve(
    policy: Policy, params: ServerParams, slo: Slo, *, prompt_tokens: float, output_tokens: float
) -> Policy:
    """Fill in server-dependent targets: a demand target from the SLO, a KPA target from the batch."""
    if isinstance(policy, KpaPolicy):
        if policy.target_concurrency is not None:
            return policy
        return replace(policy, target_concurrency=params.max_batch_size * policy.target_utilization)
    if policy.target is not None:
        return policy
    if policy.signal is not SignalKind.DEMAND:
        raise ValueError(f"policy {policy.name}: only the demand signal derives its target")
    target = slo_target_rps(
        params,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
        ttft_slo_s=slo.ttft_s,
        attainment=slo.attainment,
    )
    return replace(policy, target=round(target * (1.0 - policy.headroom), 3))
