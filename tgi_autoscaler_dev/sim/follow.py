"""Simulated replicas that follow the real pods: one replica per Running pod, serving once it is Ready.

Why: with kube-scheduler and kwok the control plane has real pods that are scheduled, Running,
Ready and terminated, and what Prometheus scrapes must be those pods, so that the API server,
kube-state-metrics and Prometheus agree on which pods exist and which serve. The follower watches
the pods of a label selector (the one list-then-watch of ``tgi_autoscaler.kube.watch``) and keeps
the fleet equal to them:

- a Running pod gets a replica carrying the pod's name and labels, listed in the file_sd file at
  once and loading (no series, no traffic), as a pod whose model is still loading;
- when the pod turns Ready the replica serves;
- when the pod terminates (a deletion timestamp, a terminal phase, or gone) the replica leaves the
  file_sd file and the front at once, then drains and stops;
- a Pending pod (not scheduled, or scheduled but not started) has no replica.

The decision is a pure function of the pod (:func:`pod_state`); the fleet does the I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Literal

import structlog

from tgi_autoscaler.kube.client import ApiKubeClient, KubeObject, ListWatchClient
from tgi_autoscaler.kube.connect import load_api_client
from tgi_autoscaler.kube.resources import ResourceType
from tgi_autoscaler.kube.watch import ChangeType, Reflector, WatchPolicy
from tgi_autoscaler_dev.sim.fleet import Fleet

__all__ = ["POD", "PodFollower", "PodState", "following_pods", "pod_state"]

log = structlog.get_logger(__name__)

POD = ResourceType("", "v1", "Pod", "pods")

PodState = Literal["absent", "loading", "ready", "terminating"]


def pod_state(pod: Mapping[str, Any]) -> PodState:
    """What the simulated replica of ``pod`` should be doing."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return "terminating"
    status = pod.get("status") or {}
    phase = status.get("phase")
    if phase in ("Succeeded", "Failed"):
        return "terminating"
    if phase != "Running":
        return "absent"
    conditions = status.get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return "ready" if ready else "loading"


class PodFollower:
    """Keeps ``fleet`` equal to the pods of ``label_selector`` in the fleet's namespace."""

    def __init__(self, fleet: Fleet, client: ListWatchClient, *, label_selector: str) -> None:
        self.fleet = fleet
        self.label_selector = label_selector
        self._reflector = Reflector(
            client,
            POD,
            handler=self._changed,
            namespace=fleet.namespace,
            label_selector=label_selector,
            # A replica that failed to start is started again on the next list.
            policy=WatchPolicy(retry_failed_handlers=True),
        )
        self._log = log.bind(namespace=fleet.namespace, selector=label_selector)

    @property
    def synced(self) -> asyncio.Event:
        """Set once the first list has been applied to the fleet."""
        return self._reflector.synced

    async def run(self) -> None:
        """Follow until cancelled."""
        await self._reflector.run()

    async def _changed(self, change: ChangeType, pod: KubeObject, _old: KubeObject | None) -> None:
        name = str(pod["metadata"]["name"])
        state: PodState = "absent" if change == "DELETED" else pod_state(pod)
        if state in ("loading", "ready"):
            await self.fleet.add_pod(name, pod["metadata"].get("labels") or {})
            if state == "ready":
                self.fleet.pod_ready(name)
        else:
            await self.fleet.remove_pod(name)


@contextlib.asynccontextmanager
async def following_pods(
    fleet: Fleet, *, kubeconfig: Path, label_selector: str, sync_timeout_s: float = 30.0
) -> AsyncIterator[PodFollower]:
    """Follow the pods of ``label_selector`` for the duration of the block (synced on entry)."""
    api = await load_api_client(kubeconfig)
    try:
        follower = PodFollower(fleet, ApiKubeClient(api), label_selector=label_selector)
        task = asyncio.create_task(follower.run(), name=f"follow-pods-{fleet.namespace}")
        try:
            async with asyncio.timeout(sync_timeout_s):
                await follower.synced.wait()
            yield follower
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await api.close()
