"""Generate ``promtool test rules`` files for every alert of a service, from its own thresholds.

For each alert rule three behaviours are proven on the real rule engine:

- **fires**: input series that break the threshold from t=0; at ``for - interval`` the alert is at
  most pending (no firing alert), at ``window + for + interval`` it fires once, with the expected
  labels and the annotations rendered from the expected value (which proves ``$value`` is the
  aggregated figure, e.g. the p95 over all replicas, not one pod's);
- **resolves**: the same series return to normal; one window later no alert fires;
- **stays quiet**: series just on the good side of the threshold (and the same bad series for
  another service or namespace, which proves the scoping) never fire.

The expected values are computed here from the scenario design, independently of the renderer:
histogram_quantile interpolation inside one bucket, rate() of linear counters, plain gauges.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tgi_autoscaler.config.observability import AlertsSpec, parse_duration_seconds
from tgi_autoscaler.engines import EngineMetrics, engine_metrics
from tgi_autoscaler.render.alerts import AlertRule, alert_rules, rule_groups
from tgi_autoscaler.render.selectors import SERVICE_LABEL
from tgi_autoscaler.render.self_monitoring import SelfMonitoringThresholds, self_alert_rules, self_rule_groups

__all__ = ["ServiceUnderTest", "build_self_test_file", "build_test_file", "rule_file", "self_rule_file"]

Values = list[float | None]  # one sample per interval; None = no sample


@dataclass(frozen=True)
class ServiceUnderTest:
    name: str
    namespace: str
    spec: AlertsSpec
    engine: str = "tgi"

    @property
    def metrics(self) -> EngineMetrics:
        return engine_metrics(self.engine)

    def rules(self) -> list[AlertRule]:
        return alert_rules(self.name, self.namespace, self.spec, engine=self.engine)


@dataclass(frozen=True)
class Timeline:
    """Sample times (in steps of ``interval_s``) for one alert's scenarios."""

    interval_s: int
    window_s: int
    for_s: int

    @property
    def fire_at(self) -> int:
        return self.steps(self.window_s + self.for_s) + 1

    @property
    def clear_at(self) -> int:
        return self.fire_at + 2

    @property
    def resolved_at(self) -> int:
        return self.clear_at + self.steps(self.window_s) + 2

    @property
    def length(self) -> int:
        return self.resolved_at + 1

    @property
    def pending_at(self) -> int | None:
        """A time inside ``for`` where the condition holds but the alert must not fire yet."""
        steps = self.steps(self.for_s)
        return steps - 1 if steps >= 2 else None

    def steps(self, seconds: int) -> int:
        return -(-seconds // self.interval_s)

    def phase(self, bad: float, good: float) -> Values:
        """A gauge that is ``bad`` until ``clear_at`` and ``good`` from then on."""
        return [bad if t < self.clear_at else good for t in range(self.length)]

    def counter(self, bad_per_step: float, good_per_step: float) -> Values:
        """A counter increasing by ``bad_per_step`` until ``clear_at``, then by ``good_per_step``."""
        values: Values = []
        total = 0.0
        for t in range(self.length):
            values.append(total)
            total += bad_per_step if t < self.clear_at else good_per_step
        return values

    def constant(self, value: float) -> Values:
        return [value] * self.length


@dataclass
class Scenario:
    """One promtool test case: input series and the alerts expected at given steps."""

    name: str
    series: list[tuple[str, Values]] = field(default_factory=list)
    # step -> expected firing alerts as (labels, value); an empty list means "nothing fires"
    expect: dict[int, list[tuple[dict[str, str], float]]] = field(default_factory=dict)

    def add(self, metric: str, labels: Mapping[str, str], values: Values) -> None:
        body = ", ".join(f'{key}="{value}"' for key, value in labels.items())
        self.series.append((f"{metric}{{{body}}}", values))


def _values_text(values: Values) -> str:
    return " ".join("_" if v is None else repr(float(v)) for v in values)


@dataclass(frozen=True)
class _Ctx:
    svc: ServiceUnderTest
    rule: AlertRule
    tl: Timeline

    @property
    def pod_labels(self) -> dict[str, str]:
        return {"namespace": self.svc.namespace, SERVICE_LABEL: self.svc.name}

    def other_pod_labels(self) -> list[dict[str, str]]:
        """The same service name in another namespace, and another service in the same one."""
        return [
            {"namespace": self.svc.namespace + "-other", SERVICE_LABEL: self.svc.name},
            {"namespace": self.svc.namespace, SERVICE_LABEL: self.svc.name + "-other"},
        ]

    @property
    def hpa_labels(self) -> dict[str, str]:
        return {"namespace": self.svc.namespace, "horizontalpodautoscaler": self.svc.name}

    @property
    def deployment_labels(self) -> dict[str, str]:
        return {"namespace": self.svc.namespace, "deployment": self.svc.name}

    def alert_labels(self, **series_labels: str) -> dict[str, str]:
        return {
            **self.svc.spec.labels,
            "severity": self.rule.severity,
            "service": self.svc.name,
            **series_labels,
        }

    def rule_threshold(self) -> float:
        """The threshold of this rule's AlertsSpec entry (looked up by its YAML key)."""
        for attr, info in AlertsSpec.model_fields.items():
            if info.alias == self.rule.spec_key:
                return float(getattr(self.svc.spec, attr).threshold)
        raise KeyError(self.rule.spec_key)

    def expect_fire(self, scenario: Scenario, labels: dict[str, str], value: float) -> None:
        """Pending (not firing) inside ``for``, firing after it, resolved one window after clearing."""
        if self.tl.pending_at is not None:
            scenario.expect[self.tl.pending_at] = []
        scenario.expect[self.tl.fire_at] = [(labels, value)]
        scenario.expect[self.tl.resolved_at] = []

    def expect_quiet(self, scenario: Scenario) -> None:
        scenario.expect[self.tl.fire_at] = []
        scenario.expect[self.tl.resolved_at] = []


# --- per-alert scenario builders --------------------------------------------------------------


def _histogram(
    scenario: Scenario,
    ctx: _Ctx,
    base: str,
    labels: Mapping[str, str],
    per_step: Mapping[float, tuple[int, int]],
) -> None:
    """Cumulative buckets; ``per_step[le] = (bad, good)`` observations landing in bucket ``le``."""
    bounds = sorted(per_step)
    for i, le in enumerate([*bounds, float("inf")]):
        below = [b for b in bounds[: i + 1]]
        bad = sum(per_step[b][0] for b in below)
        good = sum(per_step[b][1] for b in below)
        le_text = "+Inf" if le == float("inf") else repr(le)
        scenario.add(
            f"{base}_bucket",
            {**labels, "le": le_text, "pod": labels.get("pod", "p")},
            ctx.tl.counter(bad, good),
        )


def _quantile_scenarios(ctx: _Ctx, base: str) -> list[Scenario]:
    threshold = ctx.rule_threshold()
    low, mid, high = threshold / 2, threshold, threshold * 2
    # Two replicas: one slow (observations in (T, 2T]), one fine (in (T/2, T]). Aggregated over both,
    # rank 0.95 * 20 = 19 falls in (T, 2T] with 10 below: p95 = T + T * (19 - 10) / 10 = 1.9 T.
    # Per pod the fine one would never fire and the slow one alone would give 1.95 T.
    fires = Scenario("fires-and-resolves")
    pods = [("slow", {high: (10, 0), mid: (0, 10)}), ("fine", {high: (0, 0), mid: (10, 10)})]
    for pod, buckets in pods:
        _histogram(fires, ctx, base, {**ctx.pod_labels, "pod": pod}, {low: (0, 0), **buckets})
    ctx.expect_fire(fires, ctx.alert_labels(**ctx.pod_labels), 1.9 * threshold)

    quiet = Scenario("quiet-just-below-threshold")
    # All observations in (T/2, T]: p95 = T/2 + T/2 * 0.95 = 0.975 T, just below the threshold.
    for pod in ("a", "b"):
        _histogram(
            quiet, ctx, base, {**ctx.pod_labels, "pod": pod}, {low: (0, 0), mid: (10, 10), high: (0, 0)}
        )
    ctx.expect_quiet(quiet)

    other = Scenario("quiet-for-other-services")
    for labels in ctx.other_pod_labels():
        _histogram(other, ctx, base, {**labels, "pod": "slow"}, {low: (0, 0), mid: (0, 0), high: (10, 10)})
    ctx.expect_quiet(other)
    return [fires, quiet, other]


def _backlog_scenarios(ctx: _Ctx) -> list[Scenario]:
    threshold = ctx.rule_threshold()
    queue = ctx.svc.metrics.queue_size
    fires = Scenario("fires-and-resolves")
    # One replica at 3T and one idle average 1.5T per replica: the alert is about the service.
    fires.add(queue, {**ctx.pod_labels, "pod": "a"}, ctx.tl.phase(3 * threshold, 0))
    fires.add(queue, {**ctx.pod_labels, "pod": "b"}, ctx.tl.phase(0, 0))
    ctx.expect_fire(fires, ctx.alert_labels(**ctx.pod_labels), 1.5 * threshold)

    quiet = Scenario("quiet-when-average-below-threshold")
    # One replica above the threshold but the average per replica (0.95 T) below it.
    quiet.add(queue, {**ctx.pod_labels, "pod": "a"}, ctx.tl.constant(1.5 * threshold))
    quiet.add(queue, {**ctx.pod_labels, "pod": "b"}, ctx.tl.constant(0.4 * threshold))
    ctx.expect_quiet(quiet)

    other = Scenario("quiet-for-other-services")
    for labels in ctx.other_pod_labels():
        other.add(queue, {**labels, "pod": "a"}, ctx.tl.constant(3 * threshold))
    ctx.expect_quiet(other)
    return [fires, quiet, other]


# The label values a success and a failure carry, per engine: what the rule's matchers select.
_OUTCOME_LABELS: Mapping[str, tuple[Mapping[str, str], Mapping[str, str]]] = {
    "tgi": ({}, {"err": "generation"}),
    "vllm": ({"finished_reason": "length"}, {"finished_reason": "abort"}),
    "sglang": ({}, {}),
}


def _error_ratio_scenarios(ctx: _Ctx) -> list[Scenario]:
    threshold = ctx.rule_threshold()
    m = ctx.svc.metrics
    assert m.failures is not None
    assert m.error_base is not None
    failures, base = m.failures.name, m.error_base  # narrowed, for the closure below
    # vLLM counts aborts as one finished_reason of the counter the ratio divides by; SGLang and TGI
    # count failures in a counter of their own, and the base counts every request.
    same_family = failures == base
    ok_labels, failed_labels = _OUTCOME_LABELS[ctx.svc.engine]
    bad_ratio = (1 + threshold) / 2
    per_step = 100.0

    def add(scenario: Scenario, labels: Mapping[str, str], bad: Values, total: Values, ok: Values) -> None:
        scenario.add(base, {**labels, **ok_labels}, ok if same_family else total)
        scenario.add(failures, {**labels, **failed_labels}, bad)

    def traffic(scenario: Scenario, labels: Mapping[str, str], ratio_bad: float, ratio_good: float) -> None:
        for pod in ("a", "b"):
            pod_labels = {**labels, "pod": pod}
            add(
                scenario,
                pod_labels,
                ctx.tl.counter(per_step * ratio_bad, per_step * ratio_good),
                ctx.tl.counter(per_step, per_step),
                ctx.tl.counter(per_step * (1 - ratio_bad), per_step * (1 - ratio_good)),
            )

    fires = Scenario("fires-and-resolves")
    traffic(fires, ctx.pod_labels, bad_ratio, 0.0)
    ctx.expect_fire(fires, ctx.alert_labels(**ctx.pod_labels), bad_ratio)

    quiet = Scenario("quiet-below-threshold")
    traffic(quiet, ctx.pod_labels, threshold / 2, threshold / 2)
    ctx.expect_quiet(quiet)

    idle = Scenario("quiet-without-traffic")
    # Flat counters: 0 failures / 0 requests must be "no data", not NaN or +Inf breaking the rule.
    for pod in ("a", "b"):
        flat = ctx.tl.constant(50)
        add(idle, {**ctx.pod_labels, "pod": pod}, flat, flat, flat)
    ctx.expect_quiet(idle)

    other = Scenario("quiet-for-other-services")
    for labels in ctx.other_pod_labels():
        traffic(other, labels, 1.0, 1.0)
    ctx.expect_quiet(other)
    return [fires, quiet, idle, other]


def _throughput_scenarios(ctx: _Ctx) -> list[Scenario]:
    threshold = ctx.rule_threshold()
    m = ctx.svc.metrics
    assert m.successes is not None
    successes = m.successes.name
    ok_labels, _ = _OUTCOME_LABELS[ctx.svc.engine]
    step = ctx.tl.interval_s
    fires = Scenario("fires-and-resolves")
    # Two replicas each at T/4 req/s: T/2 in total, below the floor; afterwards 2T in total.
    for pod in ("a", "b"):
        fires.add(
            successes,
            {**ctx.pod_labels, **ok_labels, "pod": pod},
            ctx.tl.counter(threshold / 4 * step, threshold * step),
        )
        fires.add(m.queue_size, {**ctx.pod_labels, "pod": pod}, ctx.tl.constant(0))
    ctx.expect_fire(fires, ctx.alert_labels(**ctx.pod_labels), threshold / 2)

    never = Scenario("fires-when-no-request-ever-succeeded")
    # The success counter does not exist yet; the running replicas (queue gauge) make it count as 0/s.
    never.add(m.queue_size, {**ctx.pod_labels, "pod": "a"}, ctx.tl.constant(3))
    never.expect[ctx.tl.fire_at] = [(ctx.alert_labels(**ctx.pod_labels), 0.0)]

    quiet = Scenario("quiet-above-floor")
    for pod in ("a", "b"):
        quiet.add(
            successes,
            {**ctx.pod_labels, **ok_labels, "pod": pod},
            ctx.tl.counter(threshold * step, threshold * step),
        )
    ctx.expect_quiet(quiet)
    return [fires, never, quiet]


def _ksm_hpa(scenario: Scenario, labels: Mapping[str, str], values: Mapping[str, Values]) -> None:
    for field_name, series in values.items():
        scenario.add(f"kube_horizontalpodautoscaler_{field_name}", labels, series)


def _other_hpa_labels(ctx: _Ctx) -> list[dict[str, str]]:
    return [
        {"namespace": ctx.svc.namespace + "-other", "horizontalpodautoscaler": ctx.svc.name},
        {"namespace": ctx.svc.namespace, "horizontalpodautoscaler": ctx.svc.name + "-other"},
    ]


def _hpa_at_max_scenarios(ctx: _Ctx) -> list[Scenario]:
    tl = ctx.tl

    def hpa(current: Values, desired: Values, lo: float, hi: float) -> dict[str, Values]:
        return {
            "status_current_replicas": current,
            "status_desired_replicas": desired,
            "spec_min_replicas": tl.constant(lo),
            "spec_max_replicas": tl.constant(hi),
        }

    fires = Scenario("fires-and-resolves")
    _ksm_hpa(fires, ctx.hpa_labels, hpa(tl.phase(5, 3), tl.phase(5, 3), 1, 5))
    ctx.expect_fire(fires, ctx.alert_labels(**ctx.hpa_labels), 5)

    quiet = Scenario("quiet-below-max")
    _ksm_hpa(quiet, ctx.hpa_labels, hpa(tl.constant(4), tl.constant(4), 1, 5))
    ctx.expect_quiet(quiet)

    pinned = Scenario("quiet-when-min-equals-max")
    _ksm_hpa(pinned, ctx.hpa_labels, hpa(tl.constant(5), tl.constant(5), 5, 5))
    ctx.expect_quiet(pinned)

    other = Scenario("quiet-for-other-services")
    for labels in _other_hpa_labels(ctx):
        _ksm_hpa(other, labels, hpa(tl.constant(5), tl.constant(5), 1, 5))
    ctx.expect_quiet(other)
    return [fires, quiet, pinned, other]


def _not_starting_scenarios(ctx: _Ctx) -> list[Scenario]:
    tl = ctx.tl
    fires = Scenario("fires-and-resolves")
    _ksm_hpa(fires, ctx.hpa_labels, {"status_desired_replicas": tl.constant(3)})
    fires.add("kube_deployment_status_replicas_available", ctx.deployment_labels, tl.phase(1, 3))
    ctx.expect_fire(fires, ctx.alert_labels(**ctx.hpa_labels), 3)

    quiet = Scenario("quiet-when-all-available")
    _ksm_hpa(quiet, ctx.hpa_labels, {"status_desired_replicas": tl.constant(3)})
    quiet.add("kube_deployment_status_replicas_available", ctx.deployment_labels, tl.constant(3))
    ctx.expect_quiet(quiet)

    other = Scenario("quiet-for-other-services")
    for labels in _other_hpa_labels(ctx):
        _ksm_hpa(other, labels, {"status_desired_replicas": tl.constant(3)})
        deployment = {"namespace": labels["namespace"], "deployment": labels["horizontalpodautoscaler"]}
        other.add("kube_deployment_status_replicas_available", deployment, tl.constant(0))
    # Our own service is healthy; the others' trouble must not leak into our alert.
    _ksm_hpa(other, ctx.hpa_labels, {"status_desired_replicas": tl.constant(2)})
    other.add("kube_deployment_status_replicas_available", ctx.deployment_labels, tl.constant(2))
    ctx.expect_quiet(other)
    return [fires, quiet, other]


def _scaling_inactive_scenarios(ctx: _Ctx) -> list[Scenario]:
    tl = ctx.tl

    def conditions(scenario: Scenario, labels: Mapping[str, str], inactive: Values) -> None:
        active = [None if v is None else 1.0 - v for v in inactive]
        series = "kube_horizontalpodautoscaler_status_condition"
        for status, values in (("false", inactive), ("true", active), ("unknown", tl.constant(0))):
            scenario.add(series, {**labels, "condition": "ScalingActive", "status": status}, values)
        # A limited HPA is healthy for this alert.
        scenario.add(series, {**labels, "condition": "ScalingLimited", "status": "true"}, tl.constant(1))

    fires = Scenario("fires-and-resolves")
    conditions(fires, ctx.hpa_labels, tl.phase(1, 0))
    ctx.expect_fire(fires, ctx.alert_labels(**ctx.hpa_labels), 1)

    quiet = Scenario("quiet-when-scaling-active")
    conditions(quiet, ctx.hpa_labels, tl.constant(0))
    ctx.expect_quiet(quiet)

    other = Scenario("quiet-for-other-services")
    for labels in _other_hpa_labels(ctx):
        conditions(other, labels, tl.constant(1))
    ctx.expect_quiet(other)
    return [fires, quiet, other]


def _metric_absent_scenarios(ctx: _Ctx) -> list[Scenario]:
    tl = ctx.tl
    queue = ctx.svc.metrics.queue_size
    fires = Scenario("fires-and-resolves")
    fires.add("kube_deployment_status_replicas_available", ctx.deployment_labels, tl.constant(2))
    # No queue series until clear_at, then both replicas are scraped.
    appears: Values = [None if t < tl.clear_at else 0.0 for t in range(tl.length)]
    for pod in ("a", "b"):
        fires.add(queue, {**ctx.pod_labels, "pod": pod}, appears)
    # Another service's queue series must not hide the absence of ours.
    for labels in ctx.other_pod_labels():
        fires.add(queue, {**labels, "pod": "x"}, tl.constant(0))
    ctx.expect_fire(fires, ctx.alert_labels(namespace=ctx.svc.namespace), 2)

    quiet = Scenario("quiet-when-metric-present")
    quiet.add("kube_deployment_status_replicas_available", ctx.deployment_labels, tl.constant(2))
    quiet.add(queue, {**ctx.pod_labels, "pod": "a"}, tl.constant(4))
    ctx.expect_quiet(quiet)

    scaled_to_zero = Scenario("quiet-without-available-replicas")
    scaled_to_zero.add("kube_deployment_status_replicas_available", ctx.deployment_labels, tl.constant(0))
    ctx.expect_quiet(scaled_to_zero)
    return [fires, quiet, scaled_to_zero]


_BUILDERS: dict[str, Callable[[_Ctx], list[Scenario]]] = {
    "latencyP95": lambda ctx: _quantile_scenarios(ctx, ctx.svc.metrics.request_duration or ""),
    "queueWaitP95": lambda ctx: _quantile_scenarios(ctx, ctx.svc.metrics.queue_duration or ""),
    "queueBacklogPerReplica": _backlog_scenarios,
    "errorRatio": _error_ratio_scenarios,
    "throughputFloor": _throughput_scenarios,
    "hpaAtMax": _hpa_at_max_scenarios,
    "replicasNotStarting": _not_starting_scenarios,
    "scalingInactive": _scaling_inactive_scenarios,
    "scalingMetricAbsent": _metric_absent_scenarios,
}


def _timeline(window: str, rule: AlertRule) -> Timeline:
    window_s = int(parse_duration_seconds(window))
    # At least 5 samples per rate window, at most one per minute.
    interval_s = max(1, min(60, window_s // 5))
    return Timeline(interval_s=interval_s, window_s=window_s, for_s=int(parse_duration_seconds(rule.for_)))


def timeline(spec: AlertsSpec, rule: AlertRule) -> Timeline:
    return _timeline(spec.rate_window, rule)


def scenarios_for(svc: ServiceUnderTest, rule: AlertRule) -> list[Scenario]:
    ctx = _Ctx(svc=svc, rule=rule, tl=timeline(svc.spec, rule))
    return _BUILDERS[rule.spec_key](ctx)


def rule_file(svc: ServiceUnderTest) -> dict[str, Any]:
    return {"groups": rule_groups(svc.name, svc.namespace, svc.spec, engine=svc.engine)}


def _promtool_tests(
    rule: AlertRule, tl: Timeline, scenarios: Sequence[Scenario], runbook_url: str | None
) -> list[dict[str, Any]]:
    tests: list[dict[str, Any]] = []
    for scenario in scenarios:
        checks = [
            {
                "eval_time": f"{step * tl.interval_s}s",
                "alertname": rule.alert,
                "exp_alerts": [
                    {"exp_labels": labels, "exp_annotations": rule.expected_annotations(value, runbook_url)}
                    for labels, value in alerts
                ],
            }
            for step, alerts in sorted(scenario.expect.items())
        ]
        tests.append(
            {
                "name": f"{rule.alert}: {scenario.name}",
                "interval": f"{tl.interval_s}s",
                "input_series": [
                    {"series": series, "values": _values_text(values)} for series, values in scenario.series
                ],
                "alert_rule_test": checks,
            }
        )
    return tests


def build_test_file(svc: ServiceUnderTest, rule_file_name: str, only: Sequence[str] = ()) -> dict[str, Any]:
    """A promtool unit test document covering every alert rule of ``svc`` (or the ``only`` ones)."""
    tests: list[dict[str, Any]] = []
    for rule in svc.rules():
        if not only or rule.alert in only:
            tests += _promtool_tests(
                rule, timeline(svc.spec, rule), scenarios_for(svc, rule), svc.spec.runbook_url
            )
    # Rules are evaluated once per sample step: finer evaluation adds nothing but run time.
    step = timeline(svc.spec, svc.rules()[0]).interval_s if svc.rules() else 60
    return {"rule_files": [rule_file_name], "evaluation_interval": f"{step}s", "tests": tests}


# --- the adapter's and controller's own alerts -----------------------------------------------


@dataclass(frozen=True)
class _SelfCtx:
    namespace: str
    t: SelfMonitoringThresholds
    rule: AlertRule
    tl: Timeline

    @property
    def ns(self) -> dict[str, str]:
        return {"namespace": self.namespace}

    @property
    def other_ns(self) -> dict[str, str]:
        return {"namespace": self.namespace + "-other"}

    def alert_labels(self) -> dict[str, str]:
        return {"severity": self.rule.severity, "service": "tgi-autoscaler", "namespace": self.namespace}

    def expect_fire(self, scenario: Scenario, value: float) -> None:
        if self.tl.pending_at is not None:
            scenario.expect[self.tl.pending_at] = []
        scenario.expect[self.tl.fire_at] = [(self.alert_labels(), value)]
        scenario.expect[self.tl.resolved_at] = []

    def expect_quiet(self, scenario: Scenario) -> None:
        scenario.expect[self.tl.fire_at] = []
        scenario.expect[self.tl.resolved_at] = []


def _self_absent(metric: str) -> Callable[[_SelfCtx], list[Scenario]]:
    def build(ctx: _SelfCtx) -> list[Scenario]:
        tl = ctx.tl
        fires = Scenario("fires-and-resolves")
        # Present only in another namespace until clear_at: another install must not hide ours.
        fires.add(metric, {**ctx.other_ns, "pod": "x"}, tl.constant(1))
        fires.add(
            metric, {**ctx.ns, "pod": "a"}, [None if t < tl.clear_at else 1.0 for t in range(tl.length)]
        )
        ctx.expect_fire(fires, 1)
        quiet = Scenario("quiet-when-scraped")
        quiet.add(metric, {**ctx.ns, "pod": "a"}, tl.constant(0))
        ctx.expect_quiet(quiet)
        return [fires, quiet]

    return build


def _self_ratio(
    numerator: tuple[str, dict[str, str]],
    rest: tuple[str, dict[str, str]],
    threshold: Callable[[SelfMonitoringThresholds], float],
    numerator_in_total: bool,
) -> Callable[[_SelfCtx], list[Scenario]]:
    """Errors / all: ``numerator_in_total`` when the error series is part of the denominator's."""

    def traffic(ctx: _SelfCtx, scenario: Scenario, labels: dict[str, str], bad: float, good: float) -> None:
        per_step = 100.0
        scenario.add(
            numerator[0], {**labels, **numerator[1]}, ctx.tl.counter(per_step * bad, per_step * good)
        )
        rest_bad = per_step * (1 - bad) if numerator_in_total else per_step
        rest_good = per_step * (1 - good) if numerator_in_total else per_step
        scenario.add(rest[0], {**labels, **rest[1]}, ctx.tl.counter(rest_bad, rest_good))

    def build(ctx: _SelfCtx) -> list[Scenario]:
        limit = threshold(ctx.t)
        fires = Scenario("fires-and-resolves")
        traffic(ctx, fires, ctx.ns, (1 + limit) / 2, 0)
        traffic(ctx, fires, ctx.other_ns, 0, 0)
        ctx.expect_fire(fires, (1 + limit) / 2)
        quiet = Scenario("quiet-below-threshold")
        traffic(ctx, quiet, ctx.ns, limit / 2, limit / 2)
        traffic(ctx, quiet, ctx.other_ns, 1, 1)
        ctx.expect_quiet(quiet)
        idle = Scenario("quiet-without-traffic")
        traffic(ctx, idle, ctx.ns, 0, 0)
        idle.series = [(name, ctx.tl.constant(7)) for name, _ in idle.series]
        ctx.expect_quiet(idle)
        return [fires, quiet, idle]

    return build


def _self_data_age(ctx: _SelfCtx) -> list[Scenario]:
    limit = ctx.t.data_age_seconds
    base = "tgi_autoscaler_adapter_data_age_seconds"
    served = {
        "metric": "tgi_request_demand",
        "metric_namespace": "llm",
        "selector": "app.kubernetes.io/instance=llama",
    }
    fresh = {**served, "selector": "app.kubernetes.io/instance=other"}
    tl = ctx.tl
    fires = Scenario("fires-and-resolves")
    # One selector's data ages past the limit (frozen samples) while another's stays fresh.
    fires.add(base, {**ctx.ns, **served}, tl.phase(1.5 * limit, 2.0))
    fires.add(base, {**ctx.ns, **fresh}, tl.constant(3))
    fires.add(base, {**ctx.other_ns, **served}, tl.constant(3))
    if tl.pending_at is not None:
        fires.expect[tl.pending_at] = []
    fires.expect[tl.fire_at] = [({**ctx.alert_labels(), **served}, 1.5 * limit)]
    fires.expect[tl.resolved_at] = []
    quiet = Scenario("quiet-at-the-threshold")
    quiet.add(base, {**ctx.ns, **served}, tl.constant(limit))
    quiet.add(base, {**ctx.other_ns, **served}, tl.constant(10 * limit))
    ctx.expect_quiet(quiet)
    return [fires, quiet]


def _self_gauge(
    metric: str,
    pods: Callable[[SelfMonitoringThresholds], tuple[tuple[float, float], ...]],
    value: float | None,
) -> Callable[[_SelfCtx], list[Scenario]]:
    """``pods(t)`` gives per-replica (bad, good) values; ``value`` the expected alert value."""

    def build(ctx: _SelfCtx) -> list[Scenario]:
        fires = Scenario("fires-and-resolves")
        for i, (bad, good) in enumerate(pods(ctx.t)):
            fires.add(metric, {**ctx.ns, "pod": f"p{i}"}, ctx.tl.phase(bad, good))
        ctx.expect_fire(fires, value if value is not None else sum(b for b, _ in pods(ctx.t)))
        quiet = Scenario("quiet-when-healthy")
        for i, (_, good) in enumerate(pods(ctx.t)):
            quiet.add(metric, {**ctx.ns, "pod": f"p{i}"}, ctx.tl.constant(good))
        for i, (bad, _) in enumerate(pods(ctx.t)):
            quiet.add(metric, {**ctx.other_ns, "pod": f"p{i}"}, ctx.tl.constant(bad))
        ctx.expect_quiet(quiet)
        return [fires, quiet]

    return build


def _self_reconcile_errors(ctx: _SelfCtx) -> list[Scenario]:
    metric = "tgi_autoscaler_controller_reconciles_total"
    step = ctx.tl.interval_s
    fires = Scenario("fires-and-resolves")
    fires.add(metric, {**ctx.ns, "result": "error"}, ctx.tl.counter(0.1 * step, 0))
    fires.add(metric, {**ctx.ns, "result": "applied"}, ctx.tl.counter(1 * step, 1 * step))
    ctx.expect_fire(fires, 0.1)
    quiet = Scenario("quiet-without-errors")
    quiet.add(metric, {**ctx.ns, "result": "error"}, ctx.tl.constant(3))
    quiet.add(metric, {**ctx.ns, "result": "invalid"}, ctx.tl.counter(1 * step, 1 * step))
    quiet.add(metric, {**ctx.other_ns, "result": "error"}, ctx.tl.counter(1 * step, 1 * step))
    ctx.expect_quiet(quiet)
    return [fires, quiet]


_ADAPTER = "tgi_autoscaler_adapter"
_SELF_BUILDERS: dict[str, Callable[[_SelfCtx], list[Scenario]]] = {
    "TGIAutoscalerAdapterDown": _self_absent(f"{_ADAPTER}_metric_definitions"),
    "TGIAutoscalerAdapterErrors": _self_ratio(
        (f"{_ADAPTER}_request_duration_seconds_count", {"code": "503", "endpoint": "metric", "metric": "m"}),
        (f"{_ADAPTER}_request_duration_seconds_count", {"code": "200", "endpoint": "metric", "metric": "m"}),
        lambda t: t.adapter_error_ratio,
        numerator_in_total=True,
    ),
    "TGIAutoscalerAdapterPrometheusErrors": _self_ratio(
        (f"{_ADAPTER}_prometheus_query_errors_total", {"reason": "timeout"}),
        (f"{_ADAPTER}_prometheus_query_duration_seconds_count", {"outcome": "success"}),
        lambda t: t.query_error_ratio,
        numerator_in_total=False,
    ),
    "TGIAutoscalerAdapterStaleSamples": _self_data_age,
    "TGIAutoscalerAdapterConfigReloadFailed": _self_gauge(
        f"{_ADAPTER}_config_last_reload_success", lambda t: ((0, 1),), 0
    ),
    "TGIAutoscalerControllerDown": _self_absent("tgi_autoscaler_controller_leader"),
    "TGIAutoscalerControllerNoLeader": _self_gauge(
        "tgi_autoscaler_controller_leader", lambda t: ((0, 1), (0, 0)), 0
    ),
    "TGIAutoscalerReconcileErrors": _self_reconcile_errors,
    "TGIAutoscalerReconcileBacklog": _self_gauge(
        "tgi_autoscaler_controller_queue_depth", lambda t: ((2 * t.queue_depth, t.queue_depth),), None
    ),
}


def self_rule_file(namespace: str, t: SelfMonitoringThresholds | None = None) -> dict[str, Any]:
    return {"groups": self_rule_groups(namespace, t)}


def build_self_test_file(
    namespace: str, rule_file_name: str, t: SelfMonitoringThresholds | None = None
) -> dict[str, Any]:
    """A promtool unit test document covering every self-monitoring alert."""
    t = t or SelfMonitoringThresholds()
    tests: list[dict[str, Any]] = []
    rules = self_alert_rules(namespace, t)
    for rule in rules:
        ctx = _SelfCtx(namespace=namespace, t=t, rule=rule, tl=_timeline(t.window, rule))
        tests += _promtool_tests(rule, ctx.tl, _SELF_BUILDERS[rule.alert](ctx), None)
    step = _timeline(t.window, rules[0]).interval_s
    return {"rule_files": [rule_file_name], "evaluation_interval": f"{step}s", "tests": tests}
