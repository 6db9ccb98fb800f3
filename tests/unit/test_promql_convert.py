"""Selector -> PromQL goes through the explicit table, always pins the namespace, refuses the rest."""

from __future__ import annotations

import pytest

from tgi_autoscaler.promql import (
    QueryBuilder,
    SelectorParseError,
    SelectorUnsupportedError,
    compile_template,
)

pytestmark = pytest.mark.unit

BUILDER = QueryBuilder(
    template=compile_template("sum(tgi_queue_size{$matchers})"),
    namespace_label="namespace",
    label_map={"example.com/team": "team_name"},
)


@pytest.mark.parametrize(
    ("selector", "promql"),
    [
        ("", 'sum(tgi_queue_size{namespace="ns"})'),
        (
            "app.kubernetes.io/instance=llama",
            'sum(tgi_queue_size{namespace="ns",app_kubernetes_io_instance="llama"})',
        ),
        ("a==b", 'sum(tgi_queue_size{namespace="ns",a="b"})'),
        ("a!=b", 'sum(tgi_queue_size{namespace="ns",a!="b"})'),
        ("a in (b)", 'sum(tgi_queue_size{namespace="ns",a="b"})'),
        ("a in (c,b.x)", 'sum(tgi_queue_size{namespace="ns",a=~"^(?:b\\\\.x|c)$"})'),
        ("a notin (b)", 'sum(tgi_queue_size{namespace="ns",a!="b"})'),
        ("a notin (b,c)", 'sum(tgi_queue_size{namespace="ns",a!~"^(?:b|c)$"})'),
        ("a", 'sum(tgi_queue_size{namespace="ns",a!=""})'),
        ("!a", 'sum(tgi_queue_size{namespace="ns",a=""})'),
        ("a=", 'sum(tgi_queue_size{namespace="ns",a=""})'),
        ("example.com/team=ml", 'sum(tgi_queue_size{namespace="ns",team_name="ml"})'),
        ("b=1,a=2", 'sum(tgi_queue_size{namespace="ns",a="2",b="1"})'),
        ("a=1,a==1,a in (1)", 'sum(tgi_queue_size{namespace="ns",a="1"})'),
    ],
)
def test_selector_converts_through_the_table(selector: str, promql: str) -> None:
    assert BUILDER.build(namespace="ns", selector=selector).promql == promql


def test_equal_selectors_written_differently_share_one_query() -> None:
    first = BUILDER.build(namespace="ns", selector="b=1, a in (y,x)").promql
    second = BUILDER.build(namespace="ns", selector="a in (x,y,x),b==1").promql
    assert first == second


@pytest.mark.parametrize(
    ("selector", "part", "fragment"),
    [
        ("replicas>1", "replicas>1", "integer comparison"),
        ("replicas<1", "replicas<1", "integer comparison"),
        ("namespace=other", "namespace=other", "namespace label"),
        ("namespace", "namespace", "namespace label"),
        ("1abc=x", "1abc=x", "not a valid, non-reserved label name"),
        ("9.example/x=1", "9.example/x=1", "not a valid, non-reserved label name"),
    ],
)
def test_requirements_without_an_exact_matcher_are_refused_by_name(
    selector: str, part: str, fragment: str
) -> None:
    with pytest.raises(SelectorUnsupportedError) as caught:
        BUILDER.build(namespace="ns", selector=selector)
    assert caught.value.part == part
    assert fragment in str(caught.value)
    assert repr(part) in str(caught.value)


def test_a_configured_namespace_label_is_the_one_protected() -> None:
    builder = QueryBuilder(
        template=compile_template("sum(x{$matchers})", namespace_label="kubernetes_namespace"),
        namespace_label="kubernetes_namespace",
        label_map={},
    )
    assert builder.build(namespace="ns", selector="namespace=a").promql == (
        'sum(x{kubernetes_namespace="ns",namespace="a"})'
    )
    with pytest.raises(SelectorUnsupportedError):
        builder.build(namespace="ns", selector="kubernetes_namespace=a")


def test_metric_labels_are_the_selectors_exact_matches() -> None:
    built = BUILDER.build(namespace="ns", selector="app.kubernetes.io/instance=x,b in (y),c in (1,2),!d,e!=f")
    assert built.metric_labels == {"app.kubernetes.io/instance": "x", "b": "y"}


def test_parse_errors_propagate_unchanged() -> None:
    with pytest.raises(SelectorParseError, match="expected: in, notin"):
        BUILDER.build(namespace="ns", selector="a b")


def test_every_placeholder_gets_the_same_matchers() -> None:
    builder = QueryBuilder(
        template=compile_template('sum(a{$matchers}) / clamp_min(sum(b{job="x",$matchers}), 1)'),
        namespace_label="namespace",
        label_map={},
    )
    assert builder.build(namespace="n", selector="k=v").promql == (
        'sum(a{namespace="n",k="v"}) / clamp_min(sum(b{job="x",namespace="n",k="v"}), 1)'
    )
