"""The configuration base: one model base, one YAML loader and one error translator for every document."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field, ValidationError, model_validator

from tgi_autoscaler.cli import main
from tgi_autoscaler.config.base import (
    ConfigModel,
    issue,
    issues_from,
    load_yaml,
    load_yaml_documents,
    raise_issues,
    validate,
)
from tgi_autoscaler.config.errors import ConfigError, ConfigIssue
from tgi_autoscaler.config.metrics import MetricsConfigError, parse_metrics_yaml
from tgi_autoscaler.config.service import parse_service_yaml

pytestmark = pytest.mark.unit

BROKEN_YAML = "model: {id: m\nengine: [\n"


class _Limits(ConfigModel):
    lower: int = Field(default=1, ge=0)
    upper: int = 2

    @model_validator(mode="after")
    def _ordered(self) -> _Limits:
        problems = []
        if self.lower > self.upper:
            problems.append(issue("lower", f"must be <= upper ({self.lower} > {self.upper})"))
        if self.upper > 100:
            problems.append(issue("upper", "must be <= 100"))
        raise_issues(problems)
        return self


class _Doc(ConfigModel):
    limits: _Limits = Field(default_factory=_Limits)
    items: list[_Limits] = []


def _issues(data: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        validate(_Doc, data, source="doc", what="test document")
    assert str(caught.value).startswith("doc: invalid test document")
    return [str(found) for found in caught.value.issues]


def test_cross_field_issues_each_get_their_own_key_path() -> None:
    assert _issues({"limits": {"lower": 300, "upper": 200}, "items": [{"lower": 3}]}) == [
        "limits.lower: must be <= upper (300 > 200)",
        "limits.upper: must be <= 100",
        "items[0].lower: must be <= upper (3 > 2)",
    ]


def test_unknown_keys_get_a_did_you_mean_with_the_allowed_keys() -> None:
    assert _issues({"limits": {"lowr": 1}}) == [
        "limits.lowr: unknown key; did you mean lower? (allowed: lower, upper)"
    ]


def test_field_errors_use_the_same_words_in_every_document() -> None:
    assert _issues({"limits": {"lower": -1}, "items": {}}) == [
        "limits.lower: must be >= 0",
        "items: must be a list",
    ]


def test_camel_case_only_documents_refuse_python_names() -> None:
    class _Camel(ConfigModel):
        max_value: int = 1

    assert validate(_Camel, {"maxValue": 3}, source="s", what="w").max_value == 3
    with pytest.raises(ConfigError, match="max_value: unknown key; did you mean maxValue"):
        validate(_Camel, {"max_value": 3}, source="s", what="w", by_name=False)


def test_issues_from_names_the_document_root() -> None:
    with pytest.raises(ValidationError) as caught:
        _Doc.model_validate([])
    assert issues_from(caught.value, _Doc) == [ConfigIssue("<root>", "must be a mapping")]


@pytest.mark.parametrize(
    ("text", "empty", "message"),
    [
        (BROKEN_YAML, None, "<root>: not valid YAML: line 2, column 7:"),
        ("- a", None, "<root>: must be a mapping of keys, found list"),
        ("", None, "<root>: must be a mapping of keys, found an empty document"),
    ],
)
def test_yaml_problems_are_issues_with_line_and_column(text: str, empty: None, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_yaml(text, source="f.yaml", what="test document", empty=empty)
    (found,) = caught.value.issues
    assert str(found).startswith(message)


def test_an_empty_document_can_stand_for_defaults_and_streams_skip_empty_documents() -> None:
    assert load_yaml("", source="f", what="w", empty={}) == {}
    assert load_yaml_documents("a: 1\n---\n---\nb: 2\n", source="f", what="w") == [{"a": 1}, {"b": 2}]


def test_every_document_reports_broken_yaml_in_the_same_words() -> None:
    messages = []
    for parse, error in (
        (parse_service_yaml, ConfigError),
        (parse_metrics_yaml, MetricsConfigError),
    ):
        with pytest.raises(error) as caught:
            parse(BROKEN_YAML, source="f.yaml")
        messages.append(str(caught.value.issues[0]).split(":")[:3])
    assert messages[0] == messages[1]


def test_backtest_reports_a_broken_service_file_like_render(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(BROKEN_YAML, encoding="utf-8")
    assert main(["render", "-f", str(broken), "--name", "llm"]) == 1
    render_err = capsys.readouterr().err
    assert main(["backtest", "--service", str(broken), "--quiet", "--plot", ""]) == 2
    what_if = capsys.readouterr()
    assert what_if.out == ""
    assert "Traceback" not in what_if.err
    problem = "<root>: not valid YAML: line 2, column 7"
    assert problem in render_err
    assert problem in what_if.err
