"""A Deployment of replicas behind a Service: pods start, become Ready after a cold start, serve,
and drain when removed; GPU time is counted from the moment a pod is asked for until it is gone.

What the HPA changes is ``spec.replicas``; what users feel is which pods are Ready when their
request arrives. The gap between the two is the cold start, and it is why a queue-depth signal
overshoots: the queue keeps growing while asked-for pods load the model. This module keeps that gap
explicit:

- ``scale_to`` adds pods in phase ``STARTING`` (each Ready after its own cold-start draw) or removes
  pods in the ReplicaSet controller's order: not-yet-Ready pods first (newest first), then the most
  recently Ready;
- a removed Ready pod leaves the Service at once and drains what it accepted (``TERMINATING``), as
  a pod with a preStop hook and a long grace period does; its GPU is counted until it is empty;
- requests go to Ready pods only, round-robin (or uniformly at random, kube-proxy's iptables mode);
  with no Ready pod a request is refused (the Service has no endpoints).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import Enum
from typing import Literal

from tgi_autoscaler.servicemodel.params import ColdStart, ServerParams
from tgi_autoscaler.servicemodel.replica import Replica, RequestLog

__all__ = ["Pod", "PodPhase", "Routing", "Service", "ServiceCounters"]

Routing = Literal["round_robin", "random"]


class PodPhase(Enum):
    STARTING = "Starting"
    READY = "Ready"
    TERMINATING = "Terminating"


@dataclass(slots=True)
class Pod:
    """One pod: ``created`` is when it was asked for, ``ready_at`` when it serves."""

    uid: int
    created: float
    ready_at: float
    phase: PodPhase
    replica: Replica


@dataclass(frozen=True, slots=True)
class ServiceCounters:
    """The scrapeable state of one pod that runs a server (Ready or draining)."""

    uid: int
    queue: int
    running: int
    arrivals: int
    successes: int


class Service:
    """Pods of one model server; drive it with ``advance``, ``arrive`` and ``scale_to`` in time order."""

    def __init__(
        self,
        params: ServerParams,
        cold_start: ColdStart,
        log: RequestLog,
        *,
        initial_replicas: int,
        seed: int = 0,
        routing: Routing = "round_robin",
    ) -> None:
        if initial_replicas < 0:
            raise ValueError(f"initial_replicas: must be >= 0 (got {initial_replicas})")
        self.params = params
        self.cold_start = cold_start
        self.log = log
        self.routing = routing
        self._rng = random.Random(seed)
        self._route_rng = random.Random(seed + 1)
        self._next_uid = 0
        self._now = 0.0
        self._rr = 0
        self._pods: list[Pod] = []  # in creation order
        self._ready: list[Pod] = []
        self._starting: list[Pod] = []
        self.gpu_seconds = 0.0
        self.ready_seconds = 0.0
        self.add_ready(initial_replicas, 0.0, created=0.0)

    # -- reading ----------------------------------------------------------------------------------

    @property
    def now(self) -> float:
        return self._now

    @property
    def replicas(self) -> int:
        """Pods that count towards ``spec.replicas`` (Starting or Ready; not draining)."""
        return sum(1 for p in self._pods if p.phase is not PodPhase.TERMINATING)

    @property
    def ready(self) -> int:
        return len(self._ready)

    @property
    def existing(self) -> int:
        """Pods that exist, draining ones included (what holds GPUs)."""
        return len(self._pods)

    def counters(self) -> list[ServiceCounters]:
        """What a scrape of every running server would read right now."""
        return [
            ServiceCounters(
                p.uid, p.replica.queue_size, p.replica.batch_size, p.replica.arrivals, p.replica.successes
            )
            for p in self._pods
            if p.phase is not PodPhase.STARTING
        ]

    def next_ready_at(self) -> float:
        if not self._starting:
            return math.inf
        return min(p.ready_at for p in self._starting)

    # -- driving ----------------------------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Bring every pod to ``now``: finish steps, make started pods Ready, drop drained pods."""
        if now < self._now - 1e-9:
            raise ValueError(f"time went backwards: {now} < {self._now}")
        while True:
            ready_at = self.next_ready_at()
            if ready_at > now:
                break
            self._account(ready_at)
            for pod in [p for p in self._starting if p.ready_at <= ready_at]:
                pod.phase = PodPhase.READY
                self._starting.remove(pod)
                self._ready.append(pod)
        self._account(now)
        for pod in self._pods:
            pod.replica.advance(now)
        drained = [p for p in self._pods if p.phase is PodPhase.TERMINATING and p.replica.in_flight == 0]
        if drained:
            # A draining pod is gone at its last completion; charge only until then.
            for pod in drained:
                self.gpu_seconds -= now - max(self._drained_at(pod), pod.created)
            self._pods = [p for p in self._pods if p not in drained]

    def arrive(self, rid: int, now: float) -> bool:
        """Route request ``rid`` arriving at ``now`` (after ``advance(now)``); False if refused."""
        if not self._ready:
            self.log.rejected[rid] = True
            return False
        if self.routing == "random":
            pod = self._ready[self._route_rng.randrange(len(self._ready))]
        else:
            self._rr = (self._rr + 1) % len(self._ready)
            pod = self._ready[self._rr]
        return pod.replica.submit(rid, now)

    def scale_to(self, replicas: int, now: float) -> None:
        """Set ``spec.replicas`` at ``now`` (after ``advance(now)``)."""
        if replicas < 0:
            raise ValueError(f"replicas: must be >= 0 (got {replicas})")
        current = [p for p in self._pods if p.phase is not PodPhase.TERMINATING]
        if replicas > len(current):
            for _ in range(replicas - len(current)):
                self._new_pod(now, now + self.cold_start.sample(self._rng))
            return
        surplus = len(current) - replicas
        starting = [p for p in current if p.phase is PodPhase.STARTING]
        victims = sorted(starting, key=lambda p: -p.created)[:surplus]
        if len(victims) < surplus:
            ready = sorted(self._ready, key=lambda p: -p.ready_at)
            victims += ready[: surplus - len(victims)]
        for pod in victims:
            if pod.phase is PodPhase.STARTING:
                self._pods.remove(pod)  # never served: gone at once
                self._starting.remove(pod)
                continue
            self._ready.remove(pod)
            pod.phase = PodPhase.TERMINATING
            if pod.replica.in_flight == 0:
                self._pods.remove(pod)
        self._rr = 0 if not self._ready else self._rr % len(self._ready)

    def add_ready(self, count: int, now: float, *, created: float) -> None:
        """Add ``count`` pods that are Ready at ``now`` and were asked for at ``created``.

        For schedules planned in hindsight (the oracle asks for pods one cold start ahead): the GPU
        time between ``created`` and ``now`` is charged at once (the service is brought to ``now``
        first, so that time is not charged again).
        """
        self.advance(now)
        for _ in range(count):
            pod = self._new_pod(created, now)
            self._starting.remove(pod)
            pod.phase = PodPhase.READY
            self._ready.append(pod)
            self.gpu_seconds += now - created

    # -- internals --------------------------------------------------------------------------------

    def _new_pod(self, created: float, ready_at: float) -> Pod:
        pod = Pod(self._next_uid, created, ready_at, PodPhase.STARTING, Replica(self.params, self.log))
        self._next_uid += 1
        self._pods.append(pod)
        self._starting.append(pod)
        return pod

    def _drained_at(self, pod: Pod) -> float:
        # The replica's last step end is when its last request finished.
        return pod.replica.last_step_end

    def _account(self, now: float) -> None:
        dt = now - self._now
        if dt > 0:
            self.gpu_seconds += dt * len(self._pods)
            self.ready_seconds += dt * len(self._ready)
            self._now = now
