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
- a Pending pod (not scheduled, or scheduled but not started) has no replica;
- the replica reports the model the pod's container was told to serve (``MODEL_ID``, ``--model``,
  ``--model-path``), so a test of a model switch sees which Deployment answered.

The decision is a pure function of the pod (:func:`pod_state`); the fleet does the I/O.

``PodFollower.timelines`` keeps, per pod, when the follower first saw it, bound to a node,
Running (its replica listed), Ready (its replica serving) and terminating, on the event loop's
clock: the measured path from a scale-up to a serving replica, which a replay's cold start has to
match (the API's own timestamps have a resolution of one second).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog

from tgi_autoscaler.kube.client import ApiKubeClient, KubeObject, ListWatchClient
from tgi_autoscaler.kube.connect import load_api_client
from tgi_autoscaler.kube.resources import ResourceType
from tgi_autoscaler.kube.watch import ChangeType, Reflector, WatchPolicy
from tgi_autoscaler_dev.sim.fleet import Fleet

__all__ = ["POD", "PodFollower", "PodState", "PodTimeline", "following_pods", "pod_model", "pod_state"]

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


_MODEL_ARGS = ("--model", "--model-path")


def pod_model(pod: Mapping[str, Any]) -> str | None:
    """The model the pod's first container serves: TGI's ``MODEL_ID``, vLLM's or SGLang's flag."""
    containers = (pod.get("spec") or {}).get("containers") or []
    if not containers:
        return None
    container = containers[0]
    for env in container.get("env") or ():
        if env.get("name") == "MODEL_ID" and env.get("value"):
            return str(env["value"])
    words = [*(container.get("command") or ()), *(container.get("args") or ())]
    for flag, value in itertools.pairwise(words):
        if flag in _MODEL_ARGS:
            return str(value)
    return None


@dataclass
class PodTimeline:
    """When the follower first saw one pod in each state (event-loop time, seconds)."""

    seen: float
    scheduled: float | None = None  # bound to a node
    running: float | None = None  # its replica started: listed for Prometheus, loading
    serving: float | None = None  # Ready: its replica takes traffic
    terminating: float | None = None


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
        self.timelines: dict[str, PodTimeline] = {}

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
        clock = asyncio.get_running_loop().time
        timeline = self.timelines.setdefault(name, PodTimeline(seen=clock()))
        if timeline.scheduled is None and (pod.get("spec") or {}).get("nodeName"):
            timeline.scheduled = clock()
        if state in ("loading", "ready"):
            await self.fleet.add_pod(name, pod["metadata"].get("labels") or {}, model_id=pod_model(pod))
            if timeline.running is None:
                timeline.running = clock()
            if state == "ready":
                self.fleet.pod_ready(name)
                if timeline.serving is None:
                    timeline.serving = clock()
                    self._log.debug(
                        "pod_serving",
                        pod=name,
                        created_to_serving_s=round(timeline.serving - timeline.seen, 3),
                        running_to_serving_s=round(timeline.serving - timeline.running, 3),
                    )
        else:
            await self.fleet.remove_pod(name)
            if (state == "terminating" or change == "DELETED") and timeline.terminating is None:
                timeline.terminating = clock()


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
