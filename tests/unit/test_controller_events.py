"""Events: repeated identical events are aggregated; recording never fails a reconcile."""

from __future__ import annotations

import pytest

from tests.unit.controller_fakes import FakeKube
from tgi_autoscaler.controller.events import EventRecorder
from tgi_autoscaler.kube.client import KubeObject
from tgi_autoscaler.kube.errors import ApiError, TransportError

pytestmark = pytest.mark.unit

CM: KubeObject = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "llama", "namespace": "llm", "uid": "u-1", "resourceVersion": "5"},
}


def _events(kube: FakeKube) -> list[KubeObject]:
    return [obj for (kind, _, _), obj in kube.objects.items() if kind == "Event"]


async def test_event_names_its_object_reason_and_source() -> None:
    kube = FakeKube()
    await EventRecorder(kube, instance="pod-a").record(
        CM, "Warning", "InvalidSpec", "autoscaling.maxReplicas: bad"
    )
    [event] = _events(kube)
    assert event["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "llama",
        "namespace": "llm",
        "uid": "u-1",
        "resourceVersion": "5",
    }
    assert (event["type"], event["reason"], event["count"]) == ("Warning", "InvalidSpec", 1)
    assert event["source"] == {"component": "tgi-autoscaler", "host": "pod-a"}
    assert event["metadata"]["namespace"] == "llm"


async def test_identical_events_bump_the_count_instead_of_piling_up() -> None:
    kube = FakeKube()
    recorder = EventRecorder(kube)
    for _ in range(3):
        await recorder.record(CM, "Warning", "InvalidSpec", "same message")
    await recorder.record(CM, "Warning", "InvalidSpec", "another message")
    events = sorted(_events(kube), key=lambda e: e["message"])
    assert [(e["message"], e["count"]) for e in events] == [("another message", 1), ("same message", 3)]


async def test_an_expired_event_is_recorded_afresh() -> None:
    kube = FakeKube()
    recorder = EventRecorder(kube)
    await recorder.record(CM, "Normal", "Applied", "applied")
    for key in [k for k in kube.objects if k[0] == "Event"]:
        del kube.objects[key]  # the API server's event TTL
    await recorder.record(CM, "Normal", "Applied", "applied")
    assert [e["count"] for e in _events(kube)] == [1]


@pytest.mark.parametrize("error", [ApiError(403, "Forbidden", "no"), TransportError("down")])
async def test_recording_failures_are_swallowed(error: Exception) -> None:
    kube = FakeKube()
    kube.fail["create"] = [error]
    await EventRecorder(kube).record(CM, "Normal", "Applied", "applied")
    assert _events(kube) == []


async def test_overlong_messages_are_truncated() -> None:
    kube = FakeKube()
    await EventRecorder(kube).record(CM, "Warning", "InvalidSpec", "x" * 5000)
    [event] = _events(kube)
    assert len(event["message"]) == 1024
    assert event["message"].endswith("...")
