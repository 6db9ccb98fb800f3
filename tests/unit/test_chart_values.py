"""The chart's generated files are current, and its values model says what the chart assumes.

``values.yaml``, ``values.schema.json``, the chart README and ``files/`` derive from
``tgi_autoscaler_dev.chart``; the schema itself is exercised by the real helm in
``tests/integration/test_chart_template.py``.
"""

from __future__ import annotations

import json

import pytest
import yaml
from pydantic import ValidationError

from tgi_autoscaler.config.metrics import parse_metrics_yaml
from tgi_autoscaler_dev.chart import CHART_DIR, NAMESPACE_PLACEHOLDER, ChartValues, chart_files, stale_files

pytestmark = pytest.mark.unit


def test_generated_chart_files_are_up_to_date() -> None:
    stale = stale_files()
    assert not stale, (
        f"charts/tgi-autoscaler out of date ({', '.join(stale)}): run python -m tgi_autoscaler_dev chart"
    )


def test_values_yaml_holds_the_models_defaults() -> None:
    values = yaml.safe_load(chart_files()["values.yaml"])
    assert ChartValues.model_validate(values) == ChartValues()
    assert values["adapter"]["replicas"] == 2
    assert values["certificate"]["mode"] == "generate"


def test_default_metric_definitions_are_valid_for_the_adapter() -> None:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    config = parse_metrics_yaml(yaml.safe_dump(values["adapter"]["metrics"]), source="values.yaml")
    assert "tgi_queue_plus_batch" in config.definitions()


def test_the_schema_forbids_unknown_keys_everywhere() -> None:
    schema = json.loads(chart_files()["values.schema.json"])
    objects = [schema, *schema["$defs"].values()]
    assert all(o.get("additionalProperties") is False for o in objects if "properties" in o)


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"adapter": {"replicas": 0}}, "adapter.replicas"),
        ({"adapter": {"prometheusUrl": "prometheus:9090"}}, "adapter.prometheusUrl"),
        ({"certificate": {"mode": "manual"}}, "certificate.mode"),
        ({"controller": {"resources": {"limits": {"memory": "lots"}}}}, "controller.resources.limits.memory"),
        ({"adapter": {"metrics": {"metrics": [{"name": "x"}]}}}, "adapter.metrics.metrics.0.query"),
    ],
)
def test_the_model_rejects_what_the_schema_rejects(values: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        ChartValues.model_validate(values)
    locations = {".".join(str(p) for p in error["loc"]) for error in excinfo.value.errors()}
    assert any(loc.startswith(field) for loc in locations), locations


def test_self_monitoring_files_carry_only_the_placeholder_namespace() -> None:
    files = chart_files()
    for name in ("files/prometheusrule.yaml", "files/dashboard-configmap.yaml"):
        text = files[name]
        assert NAMESPACE_PLACEHOLDER in text
        assert "namespace: tgi-autoscaler\n" not in text
        assert 'namespace="tgi-autoscaler"' not in text
