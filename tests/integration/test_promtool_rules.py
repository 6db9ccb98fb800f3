"""Every rendered alert rule passes ``promtool check rules`` and its generated ``promtool test rules``.

The unit test files come from ``tests/promtool/scenarios.py`` and are built from each service's own
thresholds, so changing a default in ``AlertsSpec`` is re-proven here: fires after ``for``, not
before, resolves when the condition clears, stays quiet below the threshold and for other services.
A negative control replays the seed article's metric names through the same tests and expects
promtool to report failures: a test file that passes against rules that can never fire would be
worthless.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.promtool.scenarios import (
    ServiceUnderTest,
    build_self_test_file,
    build_test_file,
    rule_file,
    self_rule_file,
)
from tgi_autoscaler.config.observability import AlertsSpec
from tgi_autoscaler.render.alerts import alert_rules, render_prometheus_rule, rule_groups
from tgi_autoscaler.render.dashboard import panel_defs
from tgi_autoscaler.render.self_monitoring import SelfMonitoringThresholds, self_alert_rules, self_panel_defs

pytestmark = pytest.mark.integration

SERVICES = {
    "tgi-defaults": ServiceUnderTest("llama-3-8b", "llm", AlertsSpec()),
    "tgi-everything-on-custom": ServiceUnderTest(
        "mistral",
        "team-a",
        AlertsSpec.model_validate(
            {
                "rateWindow": "2m",
                "labels": {"team": "ml-platform"},
                "runbookUrl": "https://runbooks.example.org/tgi",
                "latencyP95": {"threshold": 4.5, "for": "3m", "severity": "critical"},
                "queueWaitP95": {"threshold": 0.75, "for": "1m"},
                "queueBacklogPerReplica": {"threshold": 7, "for": "2m"},
                "errorRatio": {"threshold": 0.2, "for": "0s"},
                "throughputFloor": {"enabled": True, "threshold": 2.5, "for": "4m"},
                "hpaAtMax": {"for": "5m", "severity": "info"},
                "replicasNotStarting": {"for": "2m"},
                "scalingInactive": {"for": "90s"},
                "scalingMetricAbsent": {"for": "1m"},
            }
        ),
    ),
    "vllm": ServiceUnderTest(
        "qwen", "llm", AlertsSpec.model_validate({"throughputFloor": {"enabled": True}}), engine="vllm"
    ),
    "sglang": ServiceUnderTest("gemma", "llm", AlertsSpec(), engine="sglang"),
}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool not found: install Debian's prometheus package (scripts/setup.sh does)")
    return path


def _run(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120, check=False)


def _write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.mark.parametrize("case", sorted(SERVICES))
def test_rendered_rule_file_passes_promtool_check(promtool: str, tmp_path: Path, case: str) -> None:
    svc = SERVICES[case]
    rules = _write(tmp_path / "rules.yaml", rule_file(svc))
    result = _run(promtool, "check", "rules", str(rules))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(svc.rules())} rules found" in result.stdout


@pytest.mark.parametrize("case", sorted(SERVICES))
def test_prometheus_rule_object_carries_the_checked_groups(promtool: str, tmp_path: Path, case: str) -> None:
    svc = SERVICES[case]
    obj = render_prometheus_rule(
        svc.name, svc.namespace, svc.spec, {"app.kubernetes.io/instance": svc.name}, engine=svc.engine
    )
    assert obj is not None
    assert obj["kind"] == "PrometheusRule"
    assert obj["metadata"]["namespace"] == svc.namespace
    # What the operator would load is exactly the spec's groups: promtool must accept them as a file.
    rules = _write(tmp_path / "from-object.yaml", {"groups": obj["spec"]["groups"]})
    result = _run(promtool, "check", "rules", str(rules))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("case", sorted(SERVICES))
def test_every_alert_fires_after_for_resolves_and_stays_quiet_below_threshold(
    promtool: str, tmp_path: Path, case: str
) -> None:
    svc = SERVICES[case]
    _write(tmp_path / "rules.yaml", rule_file(svc))
    test_doc = build_test_file(svc, "rules.yaml")
    tests = _write(tmp_path / "tests.yaml", test_doc)
    # Every rule has a firing scenario and at least one quiet scenario.
    for rule in svc.rules():
        names = [t["name"] for t in test_doc["tests"] if t["name"].startswith(f"{rule.alert}: ")]
        assert any("fires" in n for n in names), rule.alert
        assert any("quiet" in n for n in names), rule.alert
    result = _run(promtool, "test", "rules", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_generated_tests_fail_for_the_seed_articles_metric_names(promtool: str, tmp_path: Path) -> None:
    """Negative control: with the seed's ``_seconds``/``_total`` names the alerts never fire."""
    svc = ServiceUnderTest("llama", "llm", AlertsSpec.model_validate({"throughputFloor": {"enabled": True}}))
    text = yaml.safe_dump(rule_file(svc), sort_keys=False)
    seed_text = text.replace("tgi_request_duration_bucket", "tgi_request_duration_seconds_bucket").replace(
        "tgi_request_success{", "tgi_request_success_total{"
    )
    assert seed_text != text
    (tmp_path / "rules.yaml").write_text(seed_text)
    only = ("TGIRequestLatencyHigh", "TGIThroughputLow")
    tests = _write(tmp_path / "tests.yaml", build_test_file(svc, "rules.yaml", only=only))
    result = _run(promtool, "test", "rules", str(tests))
    assert result.returncode != 0
    assert "TGIRequestLatencyHigh: fires-and-resolves" in result.stdout + result.stderr


def test_a_wrong_threshold_is_caught_by_the_generated_tests(promtool: str, tmp_path: Path) -> None:
    """Negative control: rules rendered with a threshold 10x higher than the tests assume must fail."""
    tested = ServiceUnderTest("llama", "llm", AlertsSpec())
    lax = AlertsSpec.model_validate({"queueBacklogPerReplica": {"threshold": 200}})
    _write(tmp_path / "rules.yaml", {"groups": rule_groups("llama", "llm", lax)})
    tests = _write(
        tmp_path / "tests.yaml", build_test_file(tested, "rules.yaml", only=("TGIQueueBacklogHigh",))
    )
    result = _run(promtool, "test", "rules", str(tests))
    assert result.returncode != 0


def test_disabled_alerts_render_nothing() -> None:
    spec = AlertsSpec.model_validate({"enabled": False})
    assert rule_groups("llama", "llm", spec) == []
    assert render_prometheus_rule("llama", "llm", spec, {}) is None
    assert alert_rules("llama", "llm", spec) == []


@pytest.mark.parametrize("namespace", ["tgi-autoscaler", "platform"])
def test_self_monitoring_alerts_fire_resolve_and_stay_quiet(
    promtool: str, tmp_path: Path, namespace: str
) -> None:
    rules = _write(tmp_path / "self.yaml", self_rule_file(namespace))
    checked = _run(promtool, "check", "rules", str(rules))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(self_alert_rules(namespace))} rules found" in checked.stdout
    tests = _write(tmp_path / "self-tests.yaml", build_self_test_file(namespace, "self.yaml"))
    result = _run(promtool, "test", "rules", str(tests))
    assert result.returncode == 0, result.stdout + result.stderr


def test_self_monitoring_tests_catch_a_wrong_threshold(promtool: str, tmp_path: Path) -> None:
    """Negative control: rules with lax thresholds fail the tests generated for the defaults."""
    lax = SelfMonitoringThresholds(adapter_error_ratio=0.9, data_age_seconds=600, queue_depth=500)
    _write(tmp_path / "self.yaml", self_rule_file("tgi-autoscaler", lax))
    tests = _write(tmp_path / "self-tests.yaml", build_self_test_file("tgi-autoscaler", "self.yaml"))
    result = _run(promtool, "test", "rules", str(tests))
    assert result.returncode != 0
    output = result.stdout + result.stderr
    for alert in (
        "TGIAutoscalerAdapterErrors",
        "TGIAutoscalerAdapterStaleSamples",
        "TGIAutoscalerReconcileBacklog",
    ):
        assert f"{alert}: fires-and-resolves" in output


@pytest.mark.parametrize("engine", ["tgi", "vllm", "sglang"])
def test_every_dashboard_expression_is_valid_promql(promtool: str, tmp_path: Path, engine: str) -> None:
    """Dashboard targets (variables substituted as Grafana would) pass promtool's PromQL parser."""
    exprs = [q.expr for p in panel_defs(engine) for q in p.queries] + [
        q.expr for p in self_panel_defs() for q in p.queries
    ]
    rules = [
        {
            "record": f"dashboard:target_{index}",
            "expr": expr.replace("$namespace", "ns")
            .replace("$service", "llama")
            .replace("$__rate_interval", "1m"),
        }
        for index, expr in enumerate(exprs)
    ]
    path = _write(tmp_path / "dashboard.yaml", {"groups": [{"name": "dashboard", "rules": rules}]})
    result = _run(promtool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
