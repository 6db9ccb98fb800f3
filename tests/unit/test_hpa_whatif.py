"""The what-if command, its inputs (behavior YAML, service specs) and the generated documentation."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest
import yaml

from tgi_autoscaler.config.service import AutoscalingSpec, parse_service_yaml
from tgi_autoscaler.hpa import cli
from tgi_autoscaler.hpa.docs import BEGIN_MARKER, END_MARKER, DocsError, docs_section, update_document
from tgi_autoscaler.hpa.spec_input import (
    BehaviorInputError,
    behavior_from_autoscaling,
    behavior_to_manifest,
    hpa_spec_from_autoscaling,
    parse_behavior,
    parse_behavior_yaml,
)
from tgi_autoscaler.hpa.types import Behavior, PolicyType, ScalingPolicy, ScalingRules, SelectPolicy
from tgi_autoscaler.render.autoscaling import render_hpa
from tgi_autoscaler.render.source import ServiceSource

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[2] / "docs" / "scaling-behavior.md"

BEHAVIOR_YAML = """
behavior:
  scaleUp:
    stabilizationWindowSeconds: 30
    policies:
      - {type: Pods, value: 3, periodSeconds: 60}
    tolerance: 50m
  scaleDown:
    selectPolicy: Disabled
"""


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    return parser.parse_args(["what-if", *argv])


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.run(_parse(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def test_parse_behavior_reads_the_kubernetes_spelling() -> None:
    behavior = parse_behavior_yaml(BEHAVIOR_YAML, source="b.yaml")
    assert behavior == Behavior(
        scale_up=ScalingRules(30, None, (ScalingPolicy(PolicyType.PODS, 3, 60),), 0.05),
        scale_down=ScalingRules(select_policy=SelectPolicy.DISABLED),
    )


def test_parse_behavior_finds_the_block_in_an_hpa_manifest() -> None:
    manifest = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "spec": {"behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}},
    }
    assert parse_behavior(manifest, source="hpa") == Behavior(scale_down=ScalingRules(60))


def test_parse_behavior_reports_every_bad_field_with_its_path() -> None:
    text = """
scaleUp:
  selectPolicy: Fastest
  policies:
    - {type: Pods, value: 0, periodSeconds: 60}
    - {type: Pod, value: 1, periodSeconds: 3600}
scaleDown:
  stabilizationWindowSeconds: 7200
  windowSeconds: 5
"""
    with pytest.raises(BehaviorInputError) as caught:
        parse_behavior_yaml(text, source="b.yaml")
    issues = "\n".join(caught.value.issues)
    assert "behavior.scaleUp.selectPolicy: 'Fastest' is not one of Max, Min, Disabled" in issues
    assert "behavior.scaleUp.policies[0].value: must be greater than zero" in issues
    assert "behavior.scaleUp.policies[1].type: 'Pod' is not one of Pods, Percent" in issues
    assert "behavior.scaleDown.windowSeconds: unknown key" in issues
    assert "behavior.scaleDown.stabilizationWindowSeconds: must be in 0..3600 (got 7200)" in issues
    assert str(caught.value).startswith("b.yaml: invalid HPA behavior")


@pytest.mark.parametrize(
    "behavior",
    [
        Behavior(),
        Behavior(scale_down=ScalingRules(select_policy=SelectPolicy.DISABLED)),
        Behavior(
            ScalingRules(0, SelectPolicy.MAX, (ScalingPolicy(PolicyType.PERCENT, 100, 15),), 0.02),
            ScalingRules(600, SelectPolicy.MIN, (ScalingPolicy(PolicyType.PODS, 1, 300),), 0.3),
        ),
    ],
)
def test_behavior_manifest_round_trips(behavior: Behavior) -> None:
    manifest = behavior_to_manifest(behavior)
    assert parse_behavior(yaml.safe_load(yaml.safe_dump({"behavior": manifest})), source="x") == behavior


def test_rendered_hpa_behavior_parses_back_to_the_service_behavior() -> None:
    spec = parse_service_yaml("model:\n  id: org/model\n", source="test")
    hpa = render_hpa(ServiceSource(name="llm", namespace="ns", spec=spec, owner_uid=None))
    assert parse_behavior(hpa, source="rendered") == behavior_from_autoscaling(spec.autoscaling)


def test_hpa_spec_uses_the_service_defaults() -> None:
    defaults = AutoscalingSpec()
    spec = hpa_spec_from_autoscaling()
    assert (spec.min_replicas, spec.max_replicas) == (defaults.min_replicas, defaults.max_replicas)
    assert spec.target_average_value == defaults.queue.target_per_replica
    assert spec.behavior is not None
    assert spec.behavior.scale_down is not None
    assert (
        spec.behavior.scale_down.stabilization_window_seconds
        == defaults.scale_down.stabilization_window_seconds
    )
    assert hpa_spec_from_autoscaling(use_behavior=False).behavior is None


def test_what_if_prints_a_summary_and_a_table() -> None:
    code, out, _err = _run(["--trace", "spike", "--target-queue", "10", "--min", "1", "--max", "10"])
    assert code == 0
    assert "replicas peak at 10 (maxReplicas)" in out
    assert any(line.split()[:3] == ["time", "rate", "queue"] for line in out.splitlines())


def test_what_if_uses_a_behavior_file(tmp_path: Path) -> None:
    path = tmp_path / "hpa-behavior.yaml"
    path.write_text(BEHAVIOR_YAML, encoding="utf-8")
    code, out, _err = _run(["--max", "10", "--behavior-file", str(path), "--explain"])
    assert code == 0
    # Scale-down is Disabled in the file: the count never comes down.
    assert "0 step(s)" not in out
    assert "scale-down starts" not in out
    assert "ScaleUpLimit by 3 pods per 60s" in out


def test_what_if_reads_a_service_configmap(tmp_path: Path) -> None:
    service = {"model": {"id": "org/model"}, "autoscaling": {"minReplicas": 2, "maxReplicas": 3}}
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"service.yaml": yaml.safe_dump(service)}}
    path = tmp_path / "svc.yaml"
    path.write_text(yaml.safe_dump(configmap), encoding="utf-8")
    code, out, _err = _run(["--service", str(path), "--format", "csv", "--every", "300"])
    assert code == 0
    currents = {int(line.split(",")[4]) for line in out.splitlines()[1:]}
    assert currents <= {2, 3}
    assert 3 in currents


def test_what_if_writes_csv_and_markdown(tmp_path: Path) -> None:
    target = tmp_path / "replay.csv"
    code, out, _err = _run(["--duration", "1800", "--format", "markdown", "--csv", str(target)])
    assert code == 0
    assert out.startswith("> load rises")
    assert len(target.read_text(encoding="utf-8").splitlines()) == 1802  # header + t=0..1800


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--min", "5", "--max", "2"], "maxReplicas: must be >= minReplicas"),
        (["--trace-file", "/nonexistent/rates.csv"], "No such file"),
        (["--capacity", "0"], "capacity_per_replica"),
        (["--spike-start", "0"], "start"),
    ],
)
def test_what_if_reports_bad_input_without_a_traceback(argv: list[str], message: str) -> None:
    code, out, err = _run(argv)
    assert code == 2
    assert out == ""
    assert message in err


def test_what_if_reports_a_bad_behavior_file(tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    path.write_text("scaleUp:\n  selectPolicy: Sometimes\n", encoding="utf-8")
    code, _out, err = _run(["--behavior-file", str(path)])
    assert code == 2
    assert "behavior.scaleUp.selectPolicy" in err


def test_the_committed_scaling_document_matches_the_current_defaults() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert update_document(text, docs_section()) == text, (
        "docs/scaling-behavior.md is stale: regenerate it with "
        "`tgi-autoscaler what-if --update-docs docs/scaling-behavior.md`"
    )


def test_docs_section_follows_the_service_defaults() -> None:
    slower = AutoscalingSpec.model_validate({"scaleDown": {"stabilizationWindowSeconds": 1200}})
    assert "window 1200 s" in docs_section(slower)
    assert docs_section(slower) != docs_section()


def test_update_docs_rewrites_only_the_marked_section(tmp_path: Path) -> None:
    path = tmp_path / "doc.md"
    path.write_text(f"# Title\n\n{BEGIN_MARKER}\nold\n{END_MARKER}\n\nTail\n", encoding="utf-8")
    code, out, _err = _run(["--update-docs", str(path)])
    assert (code, out.strip()) == (0, f"{path}: updated")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Title\n\n")
    assert text.endswith("\n\nTail\n")
    assert "old" not in text
    assert _run(["--update-docs", str(path)])[1].strip() == f"{path}: already up to date"


def test_update_docs_needs_the_markers() -> None:
    with pytest.raises(DocsError, match="no generated section"):
        update_document("# nothing here\n", docs_section())
