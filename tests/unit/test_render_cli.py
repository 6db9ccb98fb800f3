"""The ``render`` command prints exactly what ``render_service`` returns, via the real CLI entry point."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tgi_autoscaler.cli import main
from tgi_autoscaler.render import RenderOptions, render_service, source_from_configmap, to_yaml

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).parents[2] / "manifests" / "examples" / "llama2-7b-chat.yaml"


def _expected(options: RenderOptions, **overrides: str) -> str:
    configmap = yaml.safe_load(EXAMPLE.read_text())
    configmap["metadata"].update(overrides)
    return to_yaml(render_service(source_from_configmap(configmap, set_owner=False), options))


def test_render_prints_render_service_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "-f", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out == _expected(RenderOptions())


def test_render_without_operator_matches_render_service(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "-f", str(EXAMPLE), "--no-prometheus-operator"]) == 0
    out = capsys.readouterr().out
    assert out == _expected(RenderOptions(prometheus_operator=False))
    assert "kind: PodMonitor" not in out


def test_name_and_namespace_override_the_configmap(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "-f", str(EXAMPLE), "--name", "chat", "--namespace", "staging"]) == 0
    assert capsys.readouterr().out == _expected(RenderOptions(), name="chat", namespace="staging")


def test_bare_spec_needs_a_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "service.yaml"
    spec.write_text("model: {id: m}\n")
    assert main(["render", "-f", str(spec)]) == 1
    assert "a bare service spec needs --name" in capsys.readouterr().err
    assert main(["render", "-f", str(spec), "--name", "llm", "--namespace", "serving"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert {d["metadata"]["namespace"] for d in docs} == {"serving"}
    assert any(d["kind"] == "HorizontalPodAutoscaler" for d in docs)


def test_invalid_spec_prints_every_issue_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("model: {id: m}\nengine: {numShard: 2}\nautoscaling: {minReplicas: 3, maxReplicas: 1}\n")
    assert main(["render", "-f", str(spec), "--name", "llm"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "autoscaling.minReplicas: must be <= maxReplicas (3 > 1)" in captured.err


def test_missing_file_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "-f", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err
