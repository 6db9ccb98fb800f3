"""The status annotation and the ``tgi-autoscaler status`` table."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tgi_autoscaler.controller.status import (
    ServiceRow,
    format_table,
    parse_status,
    row_from_configmap,
    spec_hash,
    status_changed,
)

pytestmark = pytest.mark.unit

ANNOTATION = "tgi-autoscaler.io/status"


def _configmap(status: dict[str, Any] | None, data: str = "model: {id: x}\n") -> dict[str, Any]:
    annotations = {ANNOTATION: json.dumps(status)} if status is not None else {}
    return {
        "metadata": {"name": "llama", "namespace": "llm", "annotations": annotations},
        "data": {"service.yaml": data},
    }


def test_row_shows_phase_replicas_metric_and_message() -> None:
    data = "model: {id: x}\n"
    row = row_from_configmap(
        _configmap(
            {
                "phase": "Ready",
                "message": "applied 5 objects",
                "observedHash": spec_hash(data),
                "observedResourceVersion": "7",
                "currentReplicas": 2,
                "desiredReplicas": 3,
                "minReplicas": 1,
                "maxReplicas": 8,
                "queueMetric": "tgi_queue_size",
                "queueTarget": "10",
            },
            data,
        ),
        annotation=ANNOTATION,
        data_key="service.yaml",
    )
    table = format_table([row])
    header, line = table.splitlines()
    assert header.split()[:3] == ["NAMESPACE", "NAME", "PHASE"]
    assert "llm" in line
    assert "Ready" in line
    assert "2/3/1/8" in line
    assert "tgi_queue_size (10)" in line
    assert line.endswith("applied 5 objects")
    assert not row.stale


def test_configmap_without_status_is_pending() -> None:
    row = row_from_configmap(_configmap(None), annotation=ANNOTATION, data_key="service.yaml")
    assert row.phase == "Pending"
    assert "-/-/-/-" in format_table([row])


def test_status_of_an_older_spec_is_flagged_stale() -> None:
    row = row_from_configmap(
        _configmap(
            {"phase": "Ready", "message": "ok", "observedHash": "old", "observedResourceVersion": "1"}
        ),
        annotation=ANNOTATION,
        data_key="service.yaml",
    )
    assert row.stale
    assert "predates" in format_table([row])


def test_long_multiline_messages_are_cut_to_one_line() -> None:
    row = ServiceRow("ns", "n", "Invalid", None, None, None, None, None, None, "a\nb " + "x" * 200, False)
    line = format_table([row], message_width=40).splitlines()[1]
    assert "\n" not in line
    assert line.endswith("...")
    assert "a b x" in line


def test_rows_are_sorted_and_columns_aligned() -> None:
    rows = [
        ServiceRow("b", "z", "Ready", 1, 1, 1, 2, "m", "1", "ok", False),
        ServiceRow("a", "long-service-name", "Invalid", None, None, None, None, None, None, "bad", False),
    ]
    lines = format_table(rows).splitlines()
    assert lines[1].startswith("a ")
    assert lines[2].startswith("b ")
    assert lines[1].index("Invalid") == lines[2].index("Ready") == lines[0].index("PHASE")


def test_status_changes_ignore_volatile_fields() -> None:
    base = {"phase": "Ready", "message": "ok", "observedHash": "h", "observedResourceVersion": "1"}
    assert not status_changed(base, {**base, "observedResourceVersion": "2", "appliedAt": "later"})
    assert status_changed(base, {**base, "currentReplicas": 3})
    assert status_changed(None, base)


@pytest.mark.parametrize("raw", [None, "", "not json", "[1, 2]", '{"message": "no phase"}'])
def test_unreadable_status_annotations_are_treated_as_absent(raw: str | None) -> None:
    assert parse_status(raw) is None


def test_spec_hash_separates_its_parts() -> None:
    assert spec_hash("ab", "c") != spec_hash("a", "bc")
    assert spec_hash("x") == spec_hash("x")


def test_a_status_the_controller_wrote_reads_back_to_the_same_document() -> None:
    written = {
        "phase": "Ready",
        "message": "9 objects applied and in sync",
        "observedHash": "h1",
        "observedResourceVersion": "7",
        "appliedHash": "h2",
        "appliedAt": "2026-12-01T20:00:00Z",
        "objects": ["Deployment/llm/llama", "HorizontalPodAutoscaler/llm/llama"],
        "prometheusOperator": True,
        "currentReplicas": 2,
        "desiredReplicas": None,
        "minReplicas": 1,
        "maxReplicas": 8,
        "queueMetric": "tgi_queue_size",
        "queueTarget": "10",
    }
    status = parse_status(json.dumps(written))
    assert status is not None
    assert status.applied is not None
    assert status.applied.objects == ("Deployment/llm/llama", "HorizontalPodAutoscaler/llm/llama")
    assert status.document() == written
    pending = {"phase": "Invalid", "message": "bad", "observedHash": "h", "observedResourceVersion": "1"}
    parsed = parse_status(json.dumps(pending))
    assert parsed is not None
    assert (parsed.applied, parsed.hpa) == (None, None)
    assert parsed.document() == pending


def test_hand_edited_fields_of_the_wrong_type_read_as_missing() -> None:
    status = parse_status(json.dumps({"phase": "Ready", "message": 3, "currentReplicas": "two"}))
    assert status is not None
    assert status.message == ""
    assert status.hpa is not None
    assert status.hpa.current_replicas is None
    assert parse_status(json.dumps({"phase": "Sleeping"})) is None
