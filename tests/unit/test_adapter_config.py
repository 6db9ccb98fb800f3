"""Adapter configuration: defaults, camelCase YAML, and errors that name every bad field."""

from __future__ import annotations

import pytest

from tgi_autoscaler.config.metrics import (
    DEFAULT_METRIC_DEFINITIONS,
    MetricsConfigError,
    parse_adapter_settings_yaml,
    parse_metrics_yaml,
)

pytestmark = pytest.mark.unit


def test_shipped_defaults_sum_each_engine_queue_over_the_selected_pods() -> None:
    queries = {
        d.name: d.builder.build(namespace="ns", selector="app.kubernetes.io/instance=s").promql
        for d in DEFAULT_METRIC_DEFINITIONS
    }
    labels = 'namespace="ns",app_kubernetes_io_instance="s"'
    held = {name: queries.pop(name) for name in list(queries) if name.endswith("_with_held")}
    assert held["tgi_request_demand_with_held"] == (
        f"((sum(rate(tgi_request_count{{{labels}}}[60s])) + sum(tgi_queue_size{{{labels}}}) / 60)"
        f" or (max(tgi_autoscaler_activator_upstream_ready{{{labels}}}) == 0))"
        f" + sum(tgi_autoscaler_activator_held_requests{{{labels}}}) / 60"
        f" + max(tgi_autoscaler_activator_active{{{labels}}}) * 0.001"
    )
    assert sorted(held) == [
        "sglang_request_demand_with_held",
        "tgi_request_demand_with_held",
        "vllm_request_demand_with_held",
    ]
    assert queries == {
        "tgi_queue_size": f"sum(tgi_queue_size{{{labels}}})",
        "tgi_batch_current_size": f"sum(tgi_batch_current_size{{{labels}}})",
        "vllm_num_requests_waiting": f"sum(vllm:num_requests_waiting{{{labels}}})",
        "sglang_num_queue_reqs": f"sum(sglang:num_queue_reqs{{{labels}}})",
        "tgi_request_demand": f"sum(rate(tgi_request_count{{{labels}}}[60s])) + "
        f"sum(tgi_queue_size{{{labels}}}) / 60",
        "vllm_request_demand": f"sum(rate(vllm:request_success_total{{{labels}}}[60s])) + "
        f"(sum(delta(vllm:num_requests_waiting{{{labels}}}[60s])) + "
        f"sum(delta(vllm:num_requests_running{{{labels}}}[60s]))) / 60 + "
        f"sum(vllm:num_requests_waiting{{{labels}}}) / 60",
        "sglang_request_demand": f"sum(rate(sglang:num_requests_total{{{labels}}}[60s])) + "
        f"(sum(delta(sglang:num_queue_reqs{{{labels}}}[60s])) + "
        f"sum(delta(sglang:num_running_reqs{{{labels}}}[60s]))) / 60 + "
        f"sum(sglang:num_queue_reqs{{{labels}}}) / 60",
    }
    # No data is an error (the HPA holds), never a zero that scales GPUs down.
    assert all(d.on_empty == "error" for d in DEFAULT_METRIC_DEFINITIONS)


def test_an_empty_document_serves_the_defaults() -> None:
    assert sorted(parse_metrics_yaml("", source="x").definitions()) == sorted(
        d.name for d in DEFAULT_METRIC_DEFINITIONS
    )


def test_listed_definitions_override_defaults_and_can_replace_them_entirely() -> None:
    text = """
includeDefaults: false
metrics:
  - name: tgi_queue_size
    description: per-model queue
    onEmpty: zero
    namespaceLabel: kubernetes_namespace
    labelMap: {app.kubernetes.io/instance: service}
    query: max(tgi_queue_size{$matchers})
"""
    served = parse_metrics_yaml(text, source="cm").definitions()
    assert list(served) == ["tgi_queue_size"]
    definition = served["tgi_queue_size"]
    assert definition.on_empty == "zero"
    built = definition.builder.build(namespace="a", selector="app.kubernetes.io/instance=b")
    assert built.promql == 'max(tgi_queue_size{kubernetes_namespace="a",service="b"})'


@pytest.mark.parametrize(
    ("text", "issues"),
    [
        (
            "metrics:\n  - name: m\n    query: sum(x)\n",
            ["metrics[0].query: definition 'm': series selector 'x' has no {$matchers}"],
        ),
        (
            "metrics:\n  - name: m\n    query: sum(x{$matchers})\n    onEmpty: maybe\n",
            ["metrics[0].onEmpty: Input should be 'error' or 'zero'"],
        ),
        (
            "metrics:\n  - name: m\n    query: sum(x{$matchers})\n    on_empty: zero\n",
            ["metrics[0].on_empty: unknown key; did you mean onEmpty? (allowed: description, labelMap,"],
        ),
        ("metrics:\n  - query: sum(x{$matchers})\n", ["metrics[0].name: required"]),
        (
            "metrics:\n  - name: bad/name\n    query: sum(x{$matchers})\n",
            ["metrics[0].name: 'bad/name' is not a valid metric name"],
        ),
        (
            "metrics:\n  - name: m\n    namespaceLabel: ns\n    labelMap: {a: ns}\n"
            "    query: sum(x{$matchers})\n",
            ["metrics[0].labelMap: 'a' -> 'ns': the namespace label is set by the adapter"],
        ),
        (
            "metrics:\n  - {name: a, query: 'sum(x{$matchers})'}\n"
            "  - {name: a, query: 'sum(y{$matchers})'}\n",
            ["metrics[1].name: 'a' is already defined by metrics[0]"],
        ),
        ("metrics: {}", ["metrics: must be a list"]),
        ("- a", ["<root>: must be a mapping of keys, found list"]),
        ("a: [", ["<root>: not valid YAML: line 1, column 5: expected the node content"]),
    ],
)
def test_invalid_metrics_documents_name_the_field_path(text: str, issues: list[str]) -> None:
    with pytest.raises(MetricsConfigError) as caught:
        parse_metrics_yaml(text, source="metrics.yaml")
    reported = [str(issue) for issue in caught.value.issues]
    assert len(reported) == len(issues)
    for got, expected in zip(reported, issues, strict=True):
        assert got.startswith(expected)
    assert str(caught.value).startswith("metrics.yaml: invalid metrics configuration")


def test_every_problem_is_reported_at_once() -> None:
    text = """
metrics:
  - name: one
    query: sum(x)
  - name: two
    query: sum(y{$matchers})
    extra: true
"""
    with pytest.raises(MetricsConfigError) as caught:
        parse_metrics_yaml(text, source="m")
    assert [issue.path for issue in caught.value.issues] == ["metrics[0].query", "metrics[1].extra"]


def test_adapter_settings_parse_with_defaults_and_hide_secrets() -> None:
    settings = parse_adapter_settings_yaml(
        """
prometheus:
  url: https://mimir.example/prometheus/
  bearerToken: s3cr3t-token
  caFile: /etc/ca.pem
  headers: {X-Scope-OrgID: team-a}
""",
        source="settings.yaml",
    )
    assert settings.prometheus.url == "https://mimir.example/prometheus"
    assert settings.prometheus.timeout_seconds == 3.0
    assert settings.cache.ttl_seconds == 0.5
    assert settings.prometheus.bearer_token is not None
    assert settings.prometheus.bearer_token.get_secret_value() == "s3cr3t-token"
    assert "s3cr3t-token" not in repr(settings)
    assert "s3cr3t-token" not in str(settings.model_dump())


@pytest.mark.parametrize(
    ("text", "path", "fragment"),
    [
        ("prometheus: {url: 'ftp://p'}", "prometheus.url", "not an http(s) URL"),
        ("prometheus: {url: 'http://p?x=1'}", "prometheus.url", "not an http(s) URL"),
        ("prometheus: {url: 'http://p', timeoutSeconds: 0}", "prometheus.timeoutSeconds", "must be > 0"),
        (
            "prometheus: {url: 'http://p', headers: {Authorization: x}}",
            "prometheus.headers",
            "set by the client",
        ),
        (
            "prometheus: {url: 'http://p', headers: {'a b': x}}",
            "prometheus.headers",
            "not a valid header name",
        ),
        (
            "prometheus: {url: 'http://p', bearerToken: a, bearerTokenFile: /t}",
            "prometheus",
            "at most one of bearerToken, bearerTokenFile, basicAuth",
        ),
        ("prometheus: {url: 'http://p', basicAuth: {username: u}}", "prometheus.basicAuth", "exactly one"),
        ("prometheus: {url: 'http://p'}\ncache: {ttlSeconds: 60}", "cache.ttlSeconds", "must be <= 10"),
        ("cache: {}", "prometheus", "required"),
    ],
)
def test_invalid_adapter_settings_name_the_field_path(text: str, path: str, fragment: str) -> None:
    with pytest.raises(MetricsConfigError) as caught:
        parse_adapter_settings_yaml(text, source="settings.yaml")
    assert any(issue.path == path and fragment in issue.message for issue in caught.value.issues), (
        caught.value.issues
    )
