"""The per-service Grafana dashboard's JSON model and its sidecar ConfigMap."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tgi_autoscaler.config.observability import DashboardSpec
from tgi_autoscaler.config.service import TGIServiceSpec, parse_service_yaml
from tgi_autoscaler.render.dashboard import (
    SeriesSource,
    dashboard_json,
    dashboard_uid,
    panel_defs,
    render_dashboard_configmap,
)
from tgi_autoscaler.render.self_monitoring import self_dashboard_json

pytestmark = pytest.mark.unit


def _panels(model: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in model["panels"] if p["type"] != "row"]


def test_template_variables_are_datasource_namespace_and_service_defaulting_to_this_service() -> None:
    model = dashboard_json("llama", "team-a", "tgi")
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert list(variables) == ["datasource", "namespace", "service"]
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["namespace"]["current"]["value"] == "team-a"
    assert variables["service"]["current"]["value"] == "llama"
    assert "app_kubernetes_io_instance" in variables["service"]["query"]["query"]
    assert "$namespace" in variables["service"]["query"]["query"]


def test_every_panel_queries_the_datasource_variable_with_unique_ids_and_ref_ids() -> None:
    model = dashboard_json("llama", "team-a", "tgi")
    ids = [p["id"] for p in model["panels"]]
    assert len(ids) == len(set(ids))
    for panel in _panels(model):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        assert all(t["expr"] for t in panel["targets"])
        assert panel["gridPos"]["w"] > 0


def test_the_tgi_dashboard_has_the_panels_operators_need() -> None:
    titles = [p["title"] for p in _panels(dashboard_json("llama", "ns", "tgi"))]
    for title in (
        "Request rate",
        "Request latency",
        "Generated tokens/s",
        "Queue depth",
        "Queue wait",
        "Batch size",
        "Replicas",
        "Adapter sample age",
        "GPU utilisation",
    ):
        assert title in titles


def test_panel_targets_match_the_panel_definitions() -> None:
    model = dashboard_json("llama", "ns", "tgi")
    expected = [[q.expr for q in p.queries] for p in panel_defs("tgi")]
    assert [[t["expr"] for t in p["targets"]] for p in _panels(model)] == expected


def test_service_scoped_targets_use_the_variables_not_hard_coded_names() -> None:
    for panel in panel_defs("tgi"):
        for query in panel.queries:
            if query.source is SeriesSource.ADAPTER:
                continue  # the adapter serves every service; its sample age is global
            assert "$namespace" in query.expr, query.expr
            assert "$service" in query.expr, query.expr
            assert "llama" not in query.expr


def test_latency_panel_shows_p50_p95_p99_over_all_replicas() -> None:
    (latency,) = [p for p in panel_defs("tgi") if p.title == "Request latency"]
    assert [q.legend for q in latency.queries] == ["p50", "p95", "p99"]
    for query in latency.queries:
        assert "sum by (le) (rate(tgi_request_duration_bucket{" in query.expr


def test_replicas_panel_reads_current_desired_max_and_available() -> None:
    (replicas,) = [p for p in panel_defs("tgi") if p.title == "Replicas"]
    exprs = " ".join(q.expr for q in replicas.queries)
    for series in (
        "kube_horizontalpodautoscaler_status_current_replicas",
        "kube_horizontalpodautoscaler_status_desired_replicas",
        "kube_horizontalpodautoscaler_spec_max_replicas",
        "kube_deployment_status_replicas_available",
    ):
        assert series in exprs


def test_vllm_dashboard_uses_vllm_names_and_counts_aborts_apart() -> None:
    panels = {p.title: p for p in panel_defs("vllm")}
    assert "vllm:num_requests_waiting" in panels["Queue depth"].queries[0].expr
    success, aborted = panels["Request rate"].queries
    assert (success.legend, aborted.legend) == ("success", "aborted")
    assert 'finished_reason!="abort"' in success.expr
    assert 'finished_reason="abort"' in aborted.expr
    assert "vllm:inter_token_latency_seconds_bucket" in panels["Time per output token"].queries[0].expr


def test_sglang_time_per_output_token_reads_the_histogram_sglang_exports() -> None:
    panels = {p.title: p for p in panel_defs("sglang")}
    assert "sglang:inter_token_latency_seconds_bucket" in panels["Time per output token"].queries[0].expr


def test_a_spec_on_an_older_release_gets_that_releases_names() -> None:
    older = parse_service_yaml(
        "model: {id: m}\nengine: {kind: vllm, image: 'vllm/vllm-openai:v0.10.2'}\n"
        "alerts: {latencyP95: {threshold: 1}}",
        source="test",
    )
    dashboard = render_dashboard_configmap("q", "ns", older, {})
    assert dashboard is not None
    text = next(iter(dashboard["data"].values()))
    assert "vllm:time_per_output_token_seconds_bucket" in text
    assert "vllm:inter_token_latency_seconds" not in text
    pinned_spec = parse_service_yaml("model: {id: m}\nengine: {kind: vllm}", source="t")
    pinned = render_dashboard_configmap("q", "ns", pinned_spec, {})
    assert pinned is not None
    assert "vllm:inter_token_latency_seconds_bucket" in next(iter(pinned["data"].values()))


def test_gpu_panel_follows_the_configured_dcgm_labels() -> None:
    spec = DashboardSpec(gpu_pod_label="exported_pod", gpu_namespace_label="exported_namespace")
    (gpu,) = [p for p in panel_defs("tgi", spec) if p.title == "GPU utilisation"]
    assert 'exported_namespace="$namespace"' in gpu.queries[0].expr
    # The Deployment is <service> or, after a blue-green switch, <service>-<model hash>.
    assert 'exported_pod=~"$service(-[0-9a-f]{10})?-[a-z0-9]+-[a-z0-9]+"' in gpu.queries[0].expr


def test_configmap_is_labelled_for_the_sidecar_with_folder_and_json() -> None:
    cm = render_dashboard_configmap("llama", "team-a", DashboardSpec(folder="LLMs"), {"x": "y"})
    assert cm is not None
    assert cm["metadata"]["labels"] == {"x": "y", "grafana_dashboard": "1"}
    assert cm["metadata"]["annotations"] == {"grafana_folder": "LLMs"}
    (key,) = cm["data"]
    assert key == "team-a-llama.json"
    assert json.loads(cm["data"][key])["uid"] == dashboard_uid("llama", "team-a")


@pytest.mark.parametrize(
    ("spec_namespace", "default_namespace", "expected"),
    [("grafana", "monitoring", "grafana"), (None, "monitoring", "monitoring"), (None, None, "team-a")],
)
def test_configmap_namespace_precedence(
    spec_namespace: str | None, default_namespace: str | None, expected: str
) -> None:
    cm = render_dashboard_configmap(
        "llama", "team-a", DashboardSpec(namespace=spec_namespace), {}, dashboard_namespace=default_namespace
    )
    assert cm is not None
    assert cm["metadata"]["namespace"] == expected


def test_disabled_dashboard_renders_nothing() -> None:
    assert render_dashboard_configmap("llama", "ns", DashboardSpec(enabled=False), {}) is None


def test_service_spec_supplies_engine_and_dashboard_settings() -> None:
    spec = TGIServiceSpec.model_validate(
        {"model": {"id": "org/m"}, "engine": {"kind": "sglang"}, "dashboard": {"title": "Gemma"}}
    )
    cm = render_dashboard_configmap("gemma", "ns", spec, {})
    assert cm is not None
    model = json.loads(next(iter(cm["data"].values())))
    assert model["title"] == "Gemma"
    assert "sglang:num_queue_reqs" in json.dumps(model)


def test_uid_is_stable_and_within_grafanas_limit() -> None:
    long_uid = dashboard_uid("a-very-long-service-name-for-testing", "a-very-long-namespace")
    assert len(long_uid) <= 40
    assert long_uid == dashboard_uid("a-very-long-service-name-for-testing", "a-very-long-namespace")
    assert dashboard_uid("llama", "ns") == "tgi-ns-llama"


def test_rendering_is_deterministic() -> None:
    first = render_dashboard_configmap("llama", "ns", DashboardSpec(), {})
    assert first == render_dashboard_configmap("llama", "ns", DashboardSpec(), {})


def test_self_dashboard_covers_adapter_and_controller() -> None:
    model = self_dashboard_json()
    rows = [p["title"] for p in model["panels"] if p["type"] == "row"]
    assert rows == ["Metrics adapter", "Controller"]
    text = json.dumps(model)
    assert "tgi_autoscaler_adapter_sample_age_seconds_bucket" in text
    assert "tgi_autoscaler_controller_reconciles_total" in text
