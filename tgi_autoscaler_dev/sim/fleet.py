"""A fleet of simulated TGI pods in one process: the stand-in for a Deployment behind a Service.

Each replica listens on its own loopback port and is published to Prometheus through a file_sd file
with the labels a real pod's series would carry (``namespace``, ``pod``, sanitized pod labels), so
the adapter, alerts and dashboards see what they would see in a cluster. ``scale_to`` adds replicas
or removes the newest ones; a removed replica leaves the file_sd file and the front at once, then
drains (finishes what it accepted, refuses new work) and stops, like a terminating pod. ``url`` is a
small balancing front, the fleet's Service.

With ``start_delay_s`` a new replica is a starting pod: listed in the file_sd file at once (service
discovery sees a pod from its creation) but loading, so it has no series and gets no traffic until
the delay has passed. Replicas of the initial ``replicas`` serve at once.

A fleet can also play real pods instead of counting replicas (``tgi_autoscaler_dev.sim.follow``
drives it from a watch on the pods): ``add_pod`` starts a replica with the pod's name and labels
that loads until ``pod_ready``, and ``remove_pod`` drains and stops it, as the pod terminates.

Typical use::

    async with Fleet("llama", namespace="demo", replicas=2, file_sd_dir=prom.file_sd_dir) as fleet:
        await fleet.scale_to(4)
        ... POST f"{fleet.url}/generate" ...
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import structlog

from tgi_autoscaler_dev.sim.balancer import Balancer, Strategy
from tgi_autoscaler_dev.sim.engine import Clock
from tgi_autoscaler_dev.sim.filesd import remove_file_sd, write_file_sd
from tgi_autoscaler_dev.sim.metrics import ENGINES, Engine
from tgi_autoscaler_dev.sim.model import ReplicaConfig, Snapshot
from tgi_autoscaler_dev.sim.pods import pod_labels, pod_name, target_group, target_labels
from tgi_autoscaler_dev.sim.server import ReplicaServer, ServedModel

__all__ = ["Fleet", "FleetSnapshot", "SimulatedPod"]

log = structlog.get_logger(__name__)

_MAX_REPLICAS = 256


@dataclass(frozen=True, slots=True)
class SimulatedPod:
    """One live replica and the identity it has in Prometheus."""

    name: str
    namespace: str
    labels: Mapping[str, str]
    server: ReplicaServer

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    @property
    def target_labels(self) -> dict[str, str]:
        """Labels of this pod's series in Prometheus (``namespace``, ``pod``, sanitized labels)."""
        return target_labels(self.namespace, self.name, self.labels)

    def snapshot(self) -> Snapshot:
        return self.server.snapshot()


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    """State of the live replicas at one instant (for status lines and tests)."""

    pods: Mapping[str, Snapshot] = field(default_factory=dict)
    draining: int = 0

    @property
    def replicas(self) -> int:
        return len(self.pods)

    @property
    def queue_size(self) -> int:
        return sum(s.queue_size for s in self.pods.values())

    @property
    def batch_size(self) -> int:
        return sum(s.batch_size for s in self.pods.values())

    @property
    def in_flight(self) -> int:
        return sum(s.in_flight for s in self.pods.values())


class Fleet:
    """N simulated replicas of one service, a balancing front and their file_sd file."""

    def __init__(
        self,
        service: str = "tgi-sim",
        *,
        namespace: str = "default",
        replicas: int = 1,
        config: ReplicaConfig | None = None,
        engine: Engine = "tgi",
        served: ServedModel | None = None,
        labels: Mapping[str, str] | None = None,
        file_sd_dir: Path | None = None,
        drain_timeout_s: float = 30.0,
        strategy: Strategy = "round_robin",
        seed: int | None = None,
        front_port: int = 0,
        clock: Clock = time.monotonic,
        start_delay_s: float = 0.0,
    ) -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine: must be one of {', '.join(ENGINES)}, got {engine!r}")
        _check_replicas(replicas)
        if drain_timeout_s <= 0:
            raise ValueError(f"drain_timeout_s: must be > 0, got {drain_timeout_s}")
        if not 0 <= start_delay_s < float("inf"):
            raise ValueError(f"start_delay_s: must be a finite number of seconds >= 0, got {start_delay_s}")
        self.start_delay_s = start_delay_s
        pod_name(namespace, service, 0)  # validates the service name early
        self.service = service
        self.namespace = namespace
        self.config = config or ReplicaConfig()
        self.engine = engine
        self.served = served or ServedModel()
        self.labels = pod_labels(service, labels)
        self.file_sd_path = None if file_sd_dir is None else file_sd_dir / f"{namespace}_{service}.json"
        self.drain_timeout_s = drain_timeout_s
        self._initial = replicas
        self._clock = clock
        self._pods: list[SimulatedPod] = []
        self._draining: set[asyncio.Task[None]] = set()
        self._ordinal = 0
        self._lock = asyncio.Lock()
        # The front routes to every ready replica, or, once ``route_to`` set one, only to those whose
        # pod labels include a Service's selector: how a model switch reaches clients.
        self._route_selector: Mapping[str, str] | None = None
        self._balancer = Balancer(self._ready_urls, strategy=strategy, seed=seed, port=front_port)
        self._started = False
        self._log = log.bind(service=service, namespace=namespace)

    # -- lifecycle --------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._started:
            return
        await self._balancer.start()
        self._started = True
        await asyncio.shield(self._resize(self._initial, start_delay_s=0.0))

    async def stop(self) -> None:
        """Stop every replica at once (in-flight requests are cut) and withdraw the file_sd file."""
        async with self._lock:
            pods, self._pods = self._pods, []
            if self.file_sd_path is not None:
                await asyncio.to_thread(remove_file_sd, self.file_sd_path)
            for task in list(self._draining):
                task.cancel()
            await asyncio.gather(*self._draining, return_exceptions=True)
            await asyncio.gather(*(p.server.stop() for p in pods))
            await self._balancer.stop()
            self._started = False
        self._log.info("fleet_stopped")

    # -- scaling ----------------------------------------------------------------------------------

    async def scale_to(self, replicas: int, *, wait_drained: bool = False) -> None:
        """Run exactly ``replicas`` live replicas; removed ones drain in the background.

        Returns once new replicas answer and the file_sd file lists exactly the live ones; with
        ``wait_drained`` also waits until removed replicas have finished their requests and stopped.
        """
        _check_replicas(replicas)
        if not self._started:
            raise RuntimeError("fleet is not started")
        # A caller cancelled mid-resize (a follower task being torn down) must not leave replicas
        # started but untracked: they would outlive the fleet. The resize finishes under the lock
        # even when the caller stops waiting, and ``stop`` takes the same lock.
        before, tasks = await asyncio.shield(self._resize(replicas))
        self._log.info("fleet_scaled", replicas_before=before, replicas=replicas)
        if wait_drained and tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _resize(
        self, replicas: int, *, start_delay_s: float | None = None
    ) -> tuple[int, list[asyncio.Task[None]]]:
        delay = self.start_delay_s if start_delay_s is None else start_delay_s
        async with self._lock:
            if not self._started:
                return len(self._pods), []
            before = len(self._pods)
            if replicas > before:
                added = [self._new_pod(delay) for _ in range(replicas - before)]
                results = await asyncio.gather(*(p.server.start() for p in added), return_exceptions=True)
                failures = [r for r in results if isinstance(r, BaseException)]
                if failures:
                    # Never leave half a scale-up running: the caller sees the first error.
                    await asyncio.gather(*(p.server.stop() for p in added))
                    raise failures[0]
                self._pods.extend(added)
                removed: list[SimulatedPod] = []
            else:
                # Like a ReplicaSet scaling down: the most recently created pods go first (those
                # still starting before any that serves).
                removed = self._pods[replicas:]
                self._pods = self._pods[:replicas]
            await self._publish()
            return before, [self._start_drain(p) for p in removed]

    # -- playing real pods ---------------------------------------------------------------------------

    async def add_pod(
        self, name: str, labels: Mapping[str, str], *, model_id: str | None = None
    ) -> SimulatedPod:
        """Start a replica playing the pod ``name`` (listed for Prometheus, loading until
        :meth:`pod_ready`); the running one if it exists already. ``model_id``: the model it
        reports (default: the fleet's)."""
        if not self._started:
            raise RuntimeError("fleet is not started")
        # Shielded for the reason given in scale_to: a started replica is always tracked.
        return await asyncio.shield(self._add_pod(name, labels, model_id))

    async def _add_pod(self, name: str, labels: Mapping[str, str], model_id: str | None) -> SimulatedPod:
        async with self._lock:
            existing = self._pod(name)
            if existing is not None:
                return existing
            server = ReplicaServer(
                self.config,
                engine=self.engine,
                served=self.served if model_id is None else replace(self.served, model_id=model_id),
                name=name,
                clock=self._clock,
                load_until_marked=True,
            )
            pod = SimulatedPod(name=name, namespace=self.namespace, labels=dict(labels), server=server)
            await server.start()
            self._pods.append(pod)
            await self._publish()
        self._log.info("fleet_pod_added", pod=name, replicas=len(self._pods))
        return pod

    def pod_ready(self, name: str) -> bool:
        """The pod ``name`` turned Ready: its replica serves from now on. False if there is none."""
        pod = self._pod(name)
        if pod is None:
            return False
        if pod.server.loading:
            pod.server.mark_loaded()
            self._log.info("fleet_pod_ready", pod=name)
        return True

    async def remove_pod(self, name: str) -> asyncio.Task[None] | None:
        """The pod ``name`` terminates: its replica leaves the file_sd file and the front at once,
        then drains and stops (the returned task). None if there is no such replica."""
        if not self._started:
            return None
        return await asyncio.shield(self._remove_pod(name))

    async def _remove_pod(self, name: str) -> asyncio.Task[None] | None:
        async with self._lock:
            pod = self._pod(name)
            if pod is None:
                return None
            self._pods.remove(pod)
            await self._publish()
            task = self._start_drain(pod)
        self._log.info("fleet_pod_removed", pod=name, replicas=len(self._pods))
        return task

    def _pod(self, name: str) -> SimulatedPod | None:
        return next((p for p in self._pods if p.name == name), None)

    def _new_pod(self, start_delay_s: float) -> SimulatedPod:
        name = pod_name(self.namespace, self.service, self._ordinal)
        self._ordinal += 1
        server = ReplicaServer(
            self.config,
            engine=self.engine,
            served=self.served,
            name=name,
            clock=self._clock,
            start_delay_s=start_delay_s,
        )
        return SimulatedPod(name=name, namespace=self.namespace, labels=self.labels, server=server)

    def _start_drain(self, pod: SimulatedPod) -> asyncio.Task[None]:
        async def drain_then_stop() -> None:
            try:
                await pod.server.drain(self.drain_timeout_s)
            finally:
                # Cancelling the drain (the fleet stopping) must not cut the stop itself short: a
                # half-stopped replica's engine would outlive the fleet. Finish it, then propagate.
                stopping = asyncio.ensure_future(pod.server.stop())
                try:
                    await asyncio.shield(stopping)
                except asyncio.CancelledError:
                    await stopping
                    raise

        task = asyncio.create_task(drain_then_stop(), name=f"drain-{pod.name}")
        self._draining.add(task)
        task.add_done_callback(self._draining.discard)
        return task

    async def _publish(self) -> None:
        if self.file_sd_path is not None:
            await asyncio.to_thread(write_file_sd, self.file_sd_path, self.file_sd_groups())

    # -- views ------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL of the fleet's balancing front (its "Service")."""
        return self._balancer.url

    @property
    def replicas(self) -> Sequence[SimulatedPod]:
        """Live replicas, oldest first (draining ones excluded)."""
        return tuple(self._pods)

    @property
    def size(self) -> int:
        return len(self._pods)

    @property
    def draining(self) -> int:
        return len(self._draining)

    @property
    def serving(self) -> int:
        """Replicas that have finished starting and take traffic."""
        return len(self._ready_urls())

    def route_to(self, selector: Mapping[str, str] | None) -> None:
        """Send new requests only to ready replicas whose pod labels include ``selector``
        (None: every ready replica), as a Service's endpoints follow its selector."""
        self._route_selector = None if selector is None else dict(selector)

    def _ready_urls(self) -> list[str]:
        selector = self._route_selector
        return [
            p.url
            for p in self._pods
            if p.server.ready and (selector is None or selector.items() <= p.labels.items())
        ]

    def file_sd_groups(self) -> list[dict[str, Any]]:
        """The file_sd target groups of the live replicas, one per pod."""
        return [target_group(p.address, p.target_labels) for p in self._pods]

    def write_file_sd(self, path: Path) -> None:
        """Write the live replicas' target groups to ``path`` atomically (one-off, blocking)."""
        write_file_sd(path, self.file_sd_groups())

    def snapshot(self) -> FleetSnapshot:
        return FleetSnapshot(pods={p.name: p.snapshot() for p in self._pods}, draining=len(self._draining))


def _check_replicas(replicas: int) -> None:
    if not isinstance(replicas, int) or not 0 <= replicas <= _MAX_REPLICAS:
        raise ValueError(f"replicas: must be an integer in [0, {_MAX_REPLICAS}], got {replicas!r}")
