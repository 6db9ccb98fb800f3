"""Templates are checked at load: every selector carries $matchers, nothing else can be spliced."""

from __future__ import annotations

import pytest

from tgi_autoscaler.promql import TemplateError, compile_template

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "template",
    [
        "sum(tgi_queue_size{$matchers})",
        "sum(vllm:num_requests_waiting{$matchers})",
        "sum(tgi_queue_size{ $matchers })",
        'sum(x{job="tgi",$matchers})',
        'sum(x{$matchers, job="tgi"})',
        "sum by (pod) (rate(tgi_request_count{$matchers}[1m]))",
        "SUM BY (pod) (x{$matchers})",
        "sum(x{$matchers}) / on(pod) group_left(instance) sum(y{$matchers}) # comment {bare}",
        "sum(rate(x{$matchers}[5m:30s] offset 1m))",
        'label_replace(sum(x{$matchers}), "a", "$1", "b", "(.*)")',
        'count_values("v", x{$matchers})',
        "max(x{$matchers}) > bool 0.5e-3",
        "sum(x{$matchers} @ start())",
        'sum(x{a="#", $matchers})',
        "sum(x{$matchers}) or vector(0)",
        "sum(x{$matchers}) + Inf - NaN",
    ],
)
def test_well_formed_templates_compile(template: str) -> None:
    compiled = compile_template(template)
    assert compiled.render("M") == template.replace("$matchers", "M")


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("", "empty"),
        ("sum(x)", "series selector 'x' has no {$matchers}"),
        ("sum(x{$matchers}) + y", "series selector 'y'"),
        ("sum(x{$matchers}) / count(up{job='a'})", "series selector has no $matchers"),
        ('sum({__name__="x"})', "series selector has no $matchers"),
        ("$matchers", "inside a series selector's braces"),
        ('x{a="b" $matchers}', "must follow '{' or ','"),
        ('x{$matchers a="b"}', "must be followed by '}' or ','"),
        ("x{$matcherz}", "unknown placeholder '$matcherz'"),
        ("x{${matchers}}", "unknown placeholder"),
        ('x{namespace="a",$matchers}', "namespace label"),
        ("sum(x{$matchers}", "'(' is never closed"),
        ("sum(x{$matchers}))", "unbalanced ')'"),
        ('sum(x{$matchers, a="b})', "unterminated string literal"),
        ("x{$matchers}[5m", "'[' is never closed"),
        ("x{y{$matchers}}", "'{' inside a selector"),
        ("# only a comment $matchers", "never uses $matchers"),
    ],
)
def test_unsafe_or_malformed_templates_are_refused(template: str, fragment: str) -> None:
    with pytest.raises(TemplateError) as caught:
        compile_template(template)
    assert fragment in str(caught.value)


def test_template_error_points_at_the_offset() -> None:
    with pytest.raises(TemplateError) as caught:
        compile_template("sum(x{$matchers}) + y")
    assert caught.value.offset == 20
