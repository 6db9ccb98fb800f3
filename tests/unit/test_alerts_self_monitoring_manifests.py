"""manifests/monitoring is exactly what ``render.self_monitoring`` renders for the default namespace.

Run with ``TGI_UPDATE_MANIFESTS=1`` to rewrite the files after changing the rules or the dashboard.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tgi_autoscaler.render.self_monitoring import manifest_files

pytestmark = pytest.mark.unit

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests" / "monitoring"


def test_monitoring_manifests_are_up_to_date() -> None:
    expected = manifest_files()
    if os.environ.get("TGI_UPDATE_MANIFESTS") == "1":
        MANIFESTS.mkdir(parents=True, exist_ok=True)
        for name, text in expected.items():
            (MANIFESTS / name).write_text(text)
    stale = [
        name
        for name, text in expected.items()
        if not (MANIFESTS / name).is_file() or (MANIFESTS / name).read_text() != text
    ]
    assert not stale, (
        f"manifests/monitoring out of date ({', '.join(stale)}): rerun with TGI_UPDATE_MANIFESTS=1"
    )


def test_monitoring_manifests_are_a_prometheus_rule_and_a_sidecar_dashboard() -> None:
    rule = yaml.safe_load(manifest_files()["prometheusrule.yaml"])
    assert rule["kind"] == "PrometheusRule"
    alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert "TGIAutoscalerAdapterDown" in alerts
    assert "TGIAutoscalerReconcileErrors" in alerts
    dashboard = yaml.safe_load(manifest_files()["dashboard-configmap.yaml"])
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"]["grafana_folder"]
