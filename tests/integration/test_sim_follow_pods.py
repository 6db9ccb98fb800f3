"""The pod follower drives a real fleet from a scripted pod watch: one replica per Running pod,
named and labelled after it, serving once Ready, drained and gone when the pod terminates."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.kube_fakes import ScriptedClient
from tgi_autoscaler.kube.client import ObjectList, WatchEvent
from tgi_autoscaler_dev.localstack.process import background, wait_for
from tgi_autoscaler_dev.sim.fleet import Fleet
from tgi_autoscaler_dev.sim.follow import PodFollower

pytestmark = pytest.mark.integration

LABELS = {"app.kubernetes.io/instance": "llama", "pod-template-hash": "abc12"}


def pod(name: str, rv: str, phase: str, *, ready: bool = False, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "resourceVersion": rv, "labels": LABELS}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-02T03:00:00Z"
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    return {"metadata": meta, "status": {"phase": phase, "conditions": conditions}}


def event(kind: str, obj: dict[str, Any]) -> WatchEvent:
    return WatchEvent(type=kind, object=obj)  # type: ignore[typeddict-item]


def targets(path: Path) -> list[str]:
    return sorted(g["labels"]["pod"] for g in json.loads(path.read_text()))


async def follow(fleet: Fleet, client: ScriptedClient) -> None:
    follower = PodFollower(fleet, client, label_selector="app.kubernetes.io/instance=llama")
    async with background(follower.run(), "follow"):
        await asyncio.wait_for(client.idle.wait(), timeout=10)

        async def drained() -> bool:
            return fleet.draining == 0

        await wait_for(drained, timeout=10, what="removed replicas to drain and stop")


async def test_running_pods_get_a_replica_that_serves_once_ready(tmp_path: Path) -> None:
    listed = ObjectList([pod("a", "1", "Running", ready=True), pod("b", "2", "Pending")], "2")
    script = [
        event("MODIFIED", pod("b", "3", "Running")),  # b started: loading
        event("ADDED", pod("c", "4", "Pending")),  # c is not scheduled: no replica
    ]
    client = ScriptedClient([listed], [script])
    async with Fleet("llama", namespace="ns", replicas=0, file_sd_dir=tmp_path) as fleet:
        await follow(fleet, client)
        assert sorted(r.name for r in fleet.replicas) == ["a", "b"]
        assert fleet.serving == 1  # b is Running but loading
        assert [r.name for r in fleet.replicas if r.server.loading] == ["b"]
        assert all(r.labels == LABELS for r in fleet.replicas)
        assert all(r.target_labels["pod"] == r.name for r in fleet.replicas)
        assert fleet.file_sd_path is not None
        assert targets(fleet.file_sd_path) == ["a", "b"]  # discoverable while loading


async def test_terminating_pods_leave_at_once_and_their_replicas_drain(tmp_path: Path) -> None:
    listed = ObjectList([pod("a", "1", "Running", ready=True), pod("b", "2", "Running")], "2")
    script = [
        event("MODIFIED", pod("b", "3", "Running", ready=True)),
        event("MODIFIED", pod("a", "4", "Running", ready=True, deleting=True)),
        event("DELETED", pod("a", "5", "Running", ready=True, deleting=True)),
        event("ADDED", pod("d", "6", "Running")),
        event("MODIFIED", pod("d", "7", "Failed")),
    ]
    client = ScriptedClient([listed], [script])
    async with Fleet("llama", namespace="ns", replicas=0, file_sd_dir=tmp_path) as fleet:
        await follow(fleet, client)
        assert [r.name for r in fleet.replicas] == ["b"]
        assert fleet.serving == 1
        assert fleet.file_sd_path is not None
        assert targets(fleet.file_sd_path) == ["b"]
