"""Per-service alert rules: real metric names, scoping, labels, annotations, and spec validation."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from tgi_autoscaler.config.observability import AlertsSpec, parse_duration_seconds
from tgi_autoscaler.config.service import TGIServiceSpec
from tgi_autoscaler.render.alerts import alert_rules, render_prometheus_rule, rule_groups, skipped_alerts

pytestmark = pytest.mark.unit

ALL_ON = AlertsSpec.model_validate({"throughputFloor": {"enabled": True}})
SELECTOR = re.compile(r"\{([^{}]*)\}")


@pytest.mark.parametrize("engine", ["tgi", "vllm", "sglang"])
def test_every_selector_is_scoped_to_the_services_namespace_and_identity(engine: str) -> None:
    for rule in alert_rules("llama", "team-a", ALL_ON, engine=engine):
        # A regex quantifier ({10}, in the Deployment name pattern) is not a selector.
        selectors = SELECTOR.findall(re.sub(r"\{\d+\}", "", rule.expr))
        assert selectors, rule.alert
        for selector in selectors:
            assert 'namespace="team-a"' in selector, (rule.alert, selector)
            assert any(
                key in selector
                for key in (
                    'app_kubernetes_io_instance="llama"',
                    'horizontalpodautoscaler="llama"',
                    # the service's Deployment, or after a switch the one with a model suffix
                    'deployment=~"llama(-[0-9a-f])?"',
                )
            ), (rule.alert, selector)


def test_tgi_rules_use_the_names_tgi_exports_not_the_seed_articles() -> None:
    text = "\n".join(rule.expr for rule in alert_rules("llama", "ns", ALL_ON))
    assert "tgi_request_duration_bucket" in text
    assert "tgi_request_queue_duration_bucket" in text
    assert "tgi_request_success{" in text
    assert "_seconds_bucket" not in text
    assert "_total" not in text


def test_every_alert_has_severity_service_and_actionable_annotations() -> None:
    spec = AlertsSpec.model_validate({"throughputFloor": {"enabled": True}, "labels": {"team": "ml"}})
    rules = rule_groups("llama", "ns", spec)[0]["rules"]
    assert len(rules) == 9
    for rule in rules:
        assert rule["labels"]["severity"] in ("info", "warning", "critical")
        assert rule["labels"]["service"] == "llama"
        assert rule["labels"]["team"] == "ml"
        assert "$value" in rule["annotations"]["summary"] or "$value" in rule["annotations"]["description"]
        assert "$value" in rule["annotations"]["description"]
        assert "Check first" in rule["annotations"]["description"]
        assert "ns/llama" in rule["annotations"]["summary"]
        parse_duration_seconds(rule["for"])


def test_aggregations_collapse_replicas_before_comparing() -> None:
    for rule in alert_rules("llama", "ns", ALL_ON):
        assert re.search(r"\b(sum|avg|max|count) by \(", rule.expr), rule.alert


def test_error_ratio_guards_against_a_zero_denominator() -> None:
    (rule,) = [r for r in alert_rules("llama", "ns", AlertsSpec()) if r.alert == "TGIErrorRatioHigh"]
    assert re.search(r"/ \(sum by \([^)]*\) \(rate\(tgi_request_count\{[^}]*\}\[5m\]\)\) > 0\)", rule.expr)


def test_thresholds_durations_and_severities_come_from_the_spec() -> None:
    spec = AlertsSpec.model_validate(
        {
            "rateWindow": "2m",
            "latencyP95": {"threshold": 7.5, "for": "3m", "severity": "critical"},
            "hpaAtMax": {"enabled": False},
        }
    )
    rules = {r.alert: r for r in alert_rules("llama", "ns", spec)}
    latency = rules["TGIRequestLatencyHigh"]
    assert latency.expr.endswith("> 7.5")
    assert "[2m]" in latency.expr
    assert (latency.for_, latency.severity) == ("3m", "critical")
    assert "TGIAutoscalerAtMaxReplicas" not in rules
    assert "TGIThroughputLow" not in rules  # off by default


def test_partial_overrides_keep_the_other_defaults() -> None:
    spec = AlertsSpec.model_validate({"errorRatio": {"for": "1m"}, "throughputFloor": {"enabled": True}})
    assert spec.error_ratio.threshold == 0.05
    assert spec.error_ratio.severity == "critical"
    assert spec.throughput_floor.threshold == 0.1


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ({"latencyP95": {"for": "ten minutes"}}, "latencyP95.for"),
        ({"errorRatio": {"threshold": 1}}, "errorRatio.threshold"),
        ({"queueBacklogPerReplica": {"threshold": 0}}, "queueBacklogPerReplica.threshold"),
        ({"hpaAtMax": {"severity": "page"}}, "hpaAtMax.severity"),
        ({"rateWindow": "0s"}, "rateWindow"),
        ({"labels": {"bad-label": "x"}}, "labels.bad-label"),
        ({"latencyP95": {"treshold": 3}}, "latencyP95.treshold"),
    ],
)
def test_invalid_alert_settings_are_rejected_naming_the_field(document: dict[str, object], path: str) -> None:
    with pytest.raises(ValidationError) as info:
        AlertsSpec.model_validate(document)
    locations = [".".join(str(p) for p in error["loc"]) for error in info.value.errors()]
    assert any(loc.startswith(path) for loc in locations), locations


def test_vllm_and_sglang_error_ratio_is_aborted_over_finished_requests() -> None:
    expected = {
        "vllm": (
            "vllm:num_requests_waiting",
            'rate(vllm:request_success_total{namespace="ns", app_kubernetes_io_instance="q", '
            'finished_reason="abort"}[5m])',
            'rate(vllm:request_success_total{namespace="ns", app_kubernetes_io_instance="q"}[5m])',
        ),
        "sglang": (
            "sglang:num_queue_reqs",
            'rate(sglang:num_aborted_requests_total{namespace="ns", app_kubernetes_io_instance="q"}[5m])',
            'rate(sglang:num_requests_total{namespace="ns", app_kubernetes_io_instance="q"}[5m])',
        ),
    }
    for engine, (queue, failed, finished) in expected.items():
        assert skipped_alerts(engine) == []
        rules = {r.alert: r for r in alert_rules("q", "ns", ALL_ON, engine=engine)}
        numerator, denominator = rules["TGIErrorRatioHigh"].expr.split("\n  / ")
        assert failed in numerator
        assert finished in denominator
        assert "`err` label" not in rules["TGIErrorRatioHigh"].description
        assert queue in rules["TGIQueueBacklogHigh"].expr
        assert queue in rules["TGIScalingMetricAbsent"].expr
    assert skipped_alerts("tgi") == []


def test_successes_leave_the_aborts_out() -> None:
    vllm = {r.alert: r for r in alert_rules("q", "ns", ALL_ON, engine="vllm")}["TGIThroughputLow"].expr
    assert 'finished_reason!="abort"' in vllm
    sglang = {r.alert: r for r in alert_rules("q", "ns", ALL_ON, engine="sglang")}["TGIThroughputLow"].expr
    # Finished minus aborted, the aborts counting as zero before the first one creates the series.
    assert "sglang:num_requests_total" in sglang.split(" - ")[0]
    assert "sglang:num_aborted_requests_total" in sglang.split(" - ")[1]
    assert " or 0 * " in sglang


def test_unknown_engine_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="'triton'"):
        alert_rules("llama", "ns", AlertsSpec(), engine="triton")


def test_prometheus_rule_object_carries_labels_owner_and_groups() -> None:
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "llama", "uid": "u-1", "controller": True}
    labels = {"app.kubernetes.io/instance": "llama"}
    obj = render_prometheus_rule("llama", "ns", AlertsSpec(), labels, [owner])
    assert obj is not None
    assert obj["apiVersion"] == "monitoring.coreos.com/v1"
    assert obj["metadata"]["ownerReferences"] == [owner]
    assert obj["metadata"]["labels"] == labels
    assert obj["spec"]["groups"] == rule_groups("llama", "ns", AlertsSpec())
    assert obj["spec"]["groups"][0]["name"] == "tgi-autoscaler.ns.llama"


def test_the_service_spec_supplies_alerts_and_engine() -> None:
    spec = TGIServiceSpec.model_validate(
        {"model": {"id": "org/model"}, "engine": {"kind": "vllm"}, "alerts": {"latencyP95": {"threshold": 9}}}
    )
    rules = {r.alert: r for r in alert_rules("llama", "ns", spec)}
    assert rules["TGIRequestLatencyHigh"].expr.endswith("> 9.0")
    assert "vllm:e2e_request_latency_seconds_bucket" in rules["TGIRequestLatencyHigh"].expr


def test_label_values_are_quoted_safely() -> None:
    (rule,) = [r for r in alert_rules('we"ird', "ns", AlertsSpec()) if r.alert == "TGIQueueBacklogHigh"]
    assert 'app_kubernetes_io_instance="we\\"ird"' in rule.expr
