"""Derived queries of a template: the data age of its samples, and the grouped form where it is exact."""

from __future__ import annotations

import pytest

from tgi_autoscaler.config.metrics import DEFAULT_METRIC_DEFINITIONS
from tgi_autoscaler.promql.shape import analyze_template, combined
from tgi_autoscaler.promql.template import compile_template

pytestmark = pytest.mark.unit


def test_demand_is_grouped_aggregation_by_aggregation() -> None:
    shape = analyze_template(compile_template("sum(rate(c{$matchers}[60s])) + sum(q{$matchers}) / 60"))
    assert shape.grouped_value('namespace!=""', ["namespace", "app"]) == (
        'sum by (namespace, app) (rate(c{namespace!=""}[60s])) + sum by (namespace, app) '
        '(q{namespace!=""}) / 60'
    )


def test_the_age_is_the_oldest_timestamp_over_every_selector() -> None:
    shape = analyze_template(compile_template("sum(rate(c{$matchers}[60s])) + sum(q{x='1', $matchers})"))
    assert shape.age('namespace="a"') == (
        'min(label_replace(timestamp(c{namespace="a"}), "tgi_autoscaler_selector", "0", "", "") or '
        'label_replace(timestamp(q{x=\'1\', namespace="a"}), "tgi_autoscaler_selector", "1", "", ""))'
    )
    single = analyze_template(compile_template("max(vllm:num_requests_waiting{$matchers})"))
    assert single.age('a="b"', ["a"]) == 'min by (a) (timestamp(vllm:num_requests_waiting{a="b"}))'


def test_every_built_in_definition_is_grouped_except_the_held_demand() -> None:
    # The scale-to-zero signal joins the engine's demand with the activator's series through `or`
    # (no demand sample while no replica is ready), a set operator the grouped prefetch refuses, so
    # those services are read by one query each.
    grouped = {d.name: d.shape.groupable for d in DEFAULT_METRIC_DEFINITIONS}
    held = {name for name in grouped if name.endswith("_demand_with_held")}
    assert held == {
        "tgi_request_demand_with_held",
        "vllm_request_demand_with_held",
        "sglang_request_demand_with_held",
    }
    assert {name for name, ok in grouped.items() if not ok} == held


@pytest.mark.parametrize(
    "query",
    [
        "histogram_quantile(0.9, sum by (le) (rate(x{$matchers}[1m])))",  # a function around it
        "sum(x{$matchers}) or vector(0)",  # set operator and a constant series
        "sum by (pod) (x{$matchers})",  # its own grouping
        "sum(x{$matchers}) by (pod)",
        "sum(max(x{$matchers}))",  # nested aggregation
        "sum(label_replace(x{$matchers}, 'a', 'b', 'c', 'd'))",  # changes labels
        "sum(a{$matchers} * on (pod) b{$matchers})",  # vector matching modifier
        "sum(x{$matchers} offset 5m)",  # the age would be of other samples
        "scalar(sum(x{$matchers}))",
        "topk(1, x{$matchers})",
    ],
)
def test_queries_whose_grouping_would_change_the_value_are_not_grouped(query: str) -> None:
    assert not analyze_template(compile_template(query)).groupable


def test_combined_tells_the_two_parts_apart() -> None:
    assert combined("sum(x)", "min(timestamp(x))") == (
        'label_replace(sum(x), "tgi_autoscaler_part", "value", "", "") or '
        'label_replace(min(timestamp(x)), "tgi_autoscaler_part", "timestamp", "", "")'
    )
