"""docs/alerts-and-dashboards.md lists exactly the alerts and panels the code renders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tgi_autoscaler.config.observability import AlertsSpec
from tgi_autoscaler.render.alerts import alert_rules
from tgi_autoscaler.render.dashboard import panel_defs
from tgi_autoscaler.render.observability_docs import alerts_and_dashboards_markdown
from tgi_autoscaler.render.self_monitoring import self_alert_rules

pytestmark = pytest.mark.unit

DOC = Path(__file__).resolve().parents[2] / "docs" / "alerts-and-dashboards.md"


def test_alerts_and_dashboards_doc_is_up_to_date() -> None:
    expected = alerts_and_dashboards_markdown()
    if os.environ.get("TGI_UPDATE_MANIFESTS") == "1":
        DOC.write_text(expected)
    assert DOC.read_text() == expected, (
        "docs/alerts-and-dashboards.md is stale: rerun with TGI_UPDATE_MANIFESTS=1"
    )


def test_doc_names_every_alert_and_panel_with_its_expression() -> None:
    text = alerts_and_dashboards_markdown()
    spec = AlertsSpec.model_validate({"throughputFloor": {"enabled": True}})
    for rule in [*alert_rules("llama", "llm", spec), *self_alert_rules()]:
        assert f"### {rule.alert}" in text
        assert rule.expr.strip() in text
    for panel in panel_defs("tgi"):
        assert f"#### {panel.title}" in text
        for query in panel.queries:
            assert query.expr in text
