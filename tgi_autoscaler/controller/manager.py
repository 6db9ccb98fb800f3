"""The running controller: watch caches, leader election, the work queue and its workers.

Both replicas keep their watch caches current; only the Lease holder runs workers. Becoming leader
queues every service (a full resync, since the previous leader may have died mid-work); losing the
lease cancels the workers at once, mid-reconcile if need be, because the new leader may already be
writing. A periodic resync re-queues every service to repair anything a missed event left behind
and to delete cross-namespace objects whose service disappeared while no controller was running.

Shutdown (``stop`` set, e.g. on SIGTERM): stop the watches, let the workers finish the reconciles in
flight (bounded by a grace period), then release the lease so the standby takes over at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog

from tgi_autoscaler.config.constants import (
    FIELD_MANAGER,
    LABEL_OWNER_NAME,
    LABEL_SERVICE_CONFIGMAP,
    LABEL_SERVICE_CONFIGMAP_VALUE,
    SERVICE_CONFIGMAP_KEY,
)
from tgi_autoscaler.controller.apply import ObjectRef, owner_of, ref_of
from tgi_autoscaler.controller.discovery import ApiDiscovery, AutoscalerMode, KedaDiscovery
from tgi_autoscaler.controller.events import EventRecorder
from tgi_autoscaler.controller.leader import LeaderElectionConfig, LeaderElector
from tgi_autoscaler.controller.own_metrics import ControllerMetrics
from tgi_autoscaler.controller.reconciler import (
    Reconciler,
    ReconcilerSettings,
    Renderer,
    SourceBuilder,
)
from tgi_autoscaler.controller.resources import CRD_KINDS, KEDA_KINDS, MANAGED_KINDS, OPERATOR_KINDS
from tgi_autoscaler.controller.workqueue import WorkQueue
from tgi_autoscaler.kube.client import KubeClient, KubeObject
from tgi_autoscaler.kube.resources import CONFIGMAP, ResourceType
from tgi_autoscaler.kube.retry import Backoff, RetryPolicy
from tgi_autoscaler.kube.watch import ChangeType, ObjectKey, Reflector, Store, WatchPolicy, object_key
from tgi_autoscaler.render.source import KedaOptions

__all__ = ["Controller", "ControllerSettings"]

log = structlog.get_logger(__name__)

SERVICE_SELECTOR = f"{LABEL_SERVICE_CONFIGMAP}={LABEL_SERVICE_CONFIGMAP_VALUE}"
OWNED_SELECTOR = LABEL_OWNER_NAME  # "has the label": every object the controller applies


@dataclass(frozen=True)
class ControllerSettings:
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    dashboard_namespace: str | None = None
    workers: int = 4
    resync_period_s: float = 300.0
    discovery_period_s: float = 30.0
    watch_timeout_s: int = 300
    shutdown_grace_s: float = 20.0
    field_manager: str = FIELD_MANAGER
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    leader_election: LeaderElectionConfig | None = None
    identity: str = "tgi-autoscaler"
    # hpa: our HPA on the adapter; keda: KEDA ScaledObjects; auto: keda where KEDA owns external metrics.
    autoscaler: AutoscalerMode = "hpa"
    keda: KedaOptions | None = None

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.autoscaler != "hpa" and self.keda is None:
            raise ValueError(f"--autoscaler {self.autoscaler} needs --keda-prometheus-url")

    @property
    def owned_namespaces(self) -> tuple[str | None, ...]:
        """Where owned objects are watched: everywhere, or the service namespaces plus the dashboards'."""
        if not self.namespaces:
            return (None,)
        extra = (self.dashboard_namespace,) if self.dashboard_namespace else ()
        return tuple(sorted(set(self.namespaces) | set(extra)))


def _service_fingerprint(obj: KubeObject) -> tuple[Any, ...]:
    meta = obj.get("metadata") or {}
    return (meta.get("uid"), (obj.get("data") or {}).get(SERVICE_CONFIGMAP_KEY), "deletionTimestamp" in meta)


class _Caches:
    """The controller's view of the cluster: service ConfigMaps and owned objects, by kind."""

    def __init__(self) -> None:
        self.services = Store()
        self.owned_stores: dict[str, Store] = {rt.kind: Store(index=owner_of) for rt in MANAGED_KINDS}

    def service(self, key: ObjectKey) -> KubeObject | None:
        return self.services.get(key)

    def owned(self, key: ObjectKey) -> list[KubeObject]:
        return [obj for store in self.owned_stores.values() for obj in store.by_index(key)]

    def cached(self, ref: ObjectRef) -> KubeObject | None:
        store = self.owned_stores.get(ref.kind)
        return store.get(ObjectKey(ref.namespace, ref.name)) if store is not None else None

    def remember_service(self, configmap: KubeObject) -> None:
        # Write-through (client-go's MutationCache idea): the watch event for this write, or a
        # newer one, replaces it shortly; the service handler ignores annotation-only changes.
        key = object_key(configmap)
        if self.services.get(key) is not None:
            self.services.put(configmap)

    def owners(self) -> set[ObjectKey]:
        found: set[ObjectKey] = set()
        for store in self.owned_stores.values():
            for obj in store.values():
                owner = owner_of(obj)
                if owner is not None:
                    found.add(owner)
        return found


class Controller:
    def __init__(
        self,
        client: KubeClient,
        settings: ControllerSettings,
        *,
        metrics: ControllerMetrics,
        build_source: SourceBuilder,
        render: Renderer,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._client = client
        self.settings = settings
        self._metrics = metrics
        self._rand = rand
        self.caches = _Caches()
        self.discovery = ApiDiscovery(client, CRD_KINDS)
        self.keda_discovery = KedaDiscovery(client, settings.autoscaler)
        self.recorder = EventRecorder(client, component=settings.field_manager, instance=settings.identity)
        self.reconciler = Reconciler(
            client,
            self.caches,
            self.recorder,
            build_source=build_source,
            render=render,
            prometheus_operator=lambda: self.discovery.serves(*OPERATOR_KINDS),
            crd_served=self.discovery.serves,
            keda=lambda: self.settings.keda if self.keda_discovery.use_keda else None,
            settings=ReconcilerSettings(
                field_manager=settings.field_manager,
                dashboard_namespace=settings.dashboard_namespace,
                # Slightly under the resync period, so that every resync does a full apply.
                verify_period_s=settings.resync_period_s * 0.9,
            ),
            on_applied=lambda kind, change: metrics.applied_objects.labels(kind=kind, change=change).inc(),
            on_switched=lambda ns, name: metrics.rollout_switched.labels(
                service_namespace=ns, service_name=name
            ).set(time.time()),
        )
        self._reflectors: list[Reflector] = []
        self._watch_tasks: list[asyncio.Task[None]] = []
        # Watches of custom resources, by kind: running only while discovery finds the kind served.
        self._crd_watch_tasks: dict[str, list[asyncio.Task[None]]] = {}
        self._crd_reflectors: dict[str, list[Reflector]] = {}
        self._queue: WorkQueue[ObjectKey] | None = None
        self._lead_task: asyncio.Task[None] | None = None
        self._ended_leads: list[asyncio.Task[None]] = []  # cancelled on lost leases, awaited at shutdown
        self._failures: dict[ObjectKey, int] = {}
        self._running = False
        self._discovered = asyncio.Event()
        self.leading = False
        metrics.queue_depth.set_function(lambda: float(len(self._queue)) if self._queue is not None else 0.0)
        metrics.leader.set(0)

    # -- state for probes -------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Caches filled and the cluster's capabilities known: able to reconcile correctly."""
        reflectors = self._reflectors + self._crd_reflector_list()
        return (
            self._running
            and self.discovery.served is not None
            and self.keda_discovery.known
            and all(r.synced.is_set() for r in reflectors)
        )

    @property
    def healthy(self) -> bool:
        return self._running

    # -- wiring -----------------------------------------------------------------------------------

    def _reflector(self, rt: ResourceType, namespace: str | None, selector: str, store: Store) -> Reflector:
        handler = self._on_service if rt is CONFIGMAP and selector == SERVICE_SELECTOR else self._on_owned
        return Reflector(
            self._client,
            rt,
            handler=handler,
            store=store,
            namespace=namespace,
            label_selector=selector,
            policy=WatchPolicy(timeout_s=self.settings.watch_timeout_s),
            rand=self._rand,
            on_relist=self._metrics.watch_relists.labels(resource=str(rt)).inc,
        )

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(coro, name=name)

    def _start_watches(self) -> None:
        service_namespaces: Iterable[str | None] = self.settings.namespaces or (None,)
        for ns in service_namespaces:
            self._reflectors.append(self._reflector(CONFIGMAP, ns, SERVICE_SELECTOR, self.caches.services))
        for rt in MANAGED_KINDS:
            if rt in CRD_KINDS or rt in KEDA_KINDS:
                continue
            for ns in self.settings.owned_namespaces:
                store = self.caches.owned_stores[rt.kind]
                self._reflectors.append(self._reflector(rt, ns, OWNED_SELECTOR, store))
        for reflector in self._reflectors:
            self._watch_tasks.append(self._spawn(reflector.run(), f"watch-{reflector.rt.plural}"))

    def _crd_reflector_list(self) -> list[Reflector]:
        return [r for reflectors in self._crd_reflectors.values() for r in reflectors]

    def _crd_served(self, rt: ResourceType) -> bool:
        """Is ``rt`` (of CRD_KINDS or KEDA_KINDS) served, so that it is to be watched?"""
        if rt in KEDA_KINDS:
            return bool(self.keda_discovery.crds)
        return self.discovery.serves(rt)

    def _set_crd_watches(self) -> None:
        """Watch each custom kind while its CRD is served, and forget it once it is not."""
        for rt in CRD_KINDS + KEDA_KINDS:
            served = self._crd_served(rt)
            if served and rt.kind not in self._crd_reflectors:
                reflectors = [
                    self._reflector(rt, ns, OWNED_SELECTOR, self.caches.owned_stores[rt.kind])
                    for ns in self.settings.owned_namespaces
                ]
                self._crd_reflectors[rt.kind] = reflectors
                self._crd_watch_tasks[rt.kind] = [
                    self._spawn(r.run(), f"watch-{rt.plural}") for r in reflectors
                ]
            elif not served and rt.kind in self._crd_reflectors:
                for task in self._crd_watch_tasks.pop(rt.kind):
                    task.cancel()
                del self._crd_reflectors[rt.kind]
                # The CRD is gone, and with it every such object.
                self.caches.owned_stores[rt.kind] = Store(index=owner_of)

    # -- event handlers (synchronous, cheap) ------------------------------------------------------

    def _enqueue(self, key: ObjectKey) -> None:
        if self._queue is not None:
            self._queue.add(key)

    def _on_service(self, change: ChangeType, obj: KubeObject, old: KubeObject | None) -> None:
        if (
            change == "MODIFIED"
            and old is not None
            and _service_fingerprint(old) == _service_fingerprint(obj)
        ):
            return  # only our status annotation (or another irrelevant field) changed
        self._enqueue(object_key(obj))

    def _on_owned(self, change: ChangeType, obj: KubeObject, old: KubeObject | None) -> None:
        owner = owner_of(obj)
        if owner is None:
            return
        if change == "DELETED":
            self.reconciler.expectations.forget(ref_of(obj))
        elif self.reconciler.expectations.matches(obj):
            return  # the echo of our own apply
        self._enqueue(owner)

    def _all_keys(self) -> set[ObjectKey]:
        return set(self.caches.services.object_keys()) | self.caches.owners()

    # -- leadership -------------------------------------------------------------------------------

    def _started_leading(self) -> None:
        self.leading = True
        self._metrics.leader.set(1)
        if self._lead_task is not None:
            self._ended_leads.append(self._lead_task)
        self._lead_task = self._spawn(self._lead(), "lead")

    def _stopped_leading(self) -> None:
        self.leading = False
        self._metrics.leader.set(0)
        if self._queue is not None:
            self._queue.shutdown()
        if self._lead_task is not None:
            self._lead_task.cancel()  # stop reconciling now: a new leader may already be writing

    async def _lead(self) -> None:
        await self._wait_synced()
        queue: WorkQueue[ObjectKey] = WorkQueue()
        self._queue = queue
        self._failures.clear()
        for key in sorted(self._all_keys()):
            queue.add(key)
        log.info("controller.leading", queued=len(queue), workers=self.settings.workers)
        try:
            async with asyncio.TaskGroup() as group:
                for i in range(self.settings.workers):
                    group.create_task(self._worker(queue), name=f"reconcile-worker-{i}")
        finally:
            queue.shutdown()
            if self._queue is queue:
                self._queue = None

    async def _wait_synced(self) -> None:
        await self._discovered.wait()
        for reflector in [*self._reflectors, *self._crd_reflector_list()]:
            await reflector.synced.wait()

    # -- workers ----------------------------------------------------------------------------------

    async def _worker(self, queue: WorkQueue[ObjectKey]) -> None:
        while (key := await queue.get()) is not None:
            started = time.monotonic()
            fields: dict[str, Any] = {}
            try:
                outcome = await self.reconciler.reconcile(key)
                result: str = outcome.result
                fields["message"] = outcome.message
                if outcome.changed:
                    fields["changed"] = list(outcome.changed)
                self._failures.pop(key, None)
                self._metrics.last_success.set(time.time())
                if outcome.requeue_after_s is not None:
                    # A rollout in progress: a candidate turning Ready changes no managed field.
                    queue.add_after(key, outcome.requeue_after_s)
                    fields["requeue_in_s"] = round(outcome.requeue_after_s, 3)
            except Exception as exc:
                attempt = self._failures.get(key, 0) + 1
                decision = self.settings.retry.decide(exc, attempt, self._rand)
                fields.update(error=str(exc) or type(exc).__name__, reason=decision.reason, attempt=attempt)
                if decision.retry:
                    self._failures[key] = attempt
                    queue.add_after(key, decision.delay_s)
                    result = "retry"
                    fields["retry_in_s"] = round(decision.delay_s, 3)
                else:
                    self._failures.pop(key, None)
                    result = "error"
                    await self.reconciler.report_failure(key, exc)
            finally:
                queue.done(key)
            duration = time.monotonic() - started
            self._metrics.reconciles.labels(result=result).inc()
            self._metrics.reconcile_duration.observe(duration)
            emit = log.warning if result in ("error", "retry") else log.info
            emit(
                "reconcile", service=str(key), result=result, duration_ms=round(duration * 1000, 2), **fields
            )

    # -- periodic loops ---------------------------------------------------------------------------

    async def _discovery_loop(self) -> None:
        backoff = Backoff(initial_s=0.5, max_s=self.settings.discovery_period_s)
        failures = 0
        while True:
            try:
                apis_changed = await self.discovery.refresh()
                keda_changed = await self.keda_discovery.refresh()
                if apis_changed or keda_changed:
                    self._set_crd_watches()
                    self._discovered.set()
                    for key in self._all_keys():
                        self._enqueue(key)
                failures = 0
                delay = self.settings.discovery_period_s
            except Exception as exc:  # keep the previous answer; never let the loop die
                failures += 1
                delay = backoff.delay(failures, self._rand)
                log.warning(
                    "discovery.failed", error=str(exc) or type(exc).__name__, retry_in_s=round(delay, 2)
                )
            await asyncio.sleep(delay)

    async def _resync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.resync_period_s)
            for key in self._all_keys():
                self._enqueue(key)

    # -- lifecycle --------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then shut down gracefully."""
        self._running = True
        self._start_watches()
        loops = [
            self._spawn(self._discovery_loop(), "discovery"),
            self._spawn(self._resync_loop(), "resync"),
        ]
        elector: LeaderElector | None = None
        elector_task: asyncio.Task[None] | None = None
        if self.settings.leader_election is not None:
            elector = LeaderElector(
                self._client,
                self.settings.leader_election,
                on_started_leading=self._started_leading,
                on_stopped_leading=self._stopped_leading,
                rand=self._rand,
            )
            elector_task = self._spawn(elector.run(), "leader-election")
        else:
            self._started_leading()
        try:
            await stop.wait()
        finally:
            log.info("controller.stopping")
            await self._shutdown(loops, elector, elector_task)
            self._running = False
            log.info("controller.stopped")

    async def _shutdown(
        self,
        loops: list[asyncio.Task[None]],
        elector: LeaderElector | None,
        elector_task: asyncio.Task[None] | None,
    ) -> None:
        crd_tasks = [task for tasks in self._crd_watch_tasks.values() for task in tasks]
        background = [*loops, *self._watch_tasks, *crd_tasks]
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        self._watch_tasks.clear()
        self._crd_watch_tasks.clear()
        # Let in-flight reconciles finish; queued ones are left to the next leader's full resync.
        if self._queue is not None:
            self._queue.shutdown()
        lead = self._lead_task
        if lead is not None:
            try:
                async with asyncio.timeout(self.settings.shutdown_grace_s):
                    await asyncio.shield(lead)
            except TimeoutError:
                log.warning("controller.shutdown_grace_exceeded", grace_s=self.settings.shutdown_grace_s)
            except Exception:
                log.exception("controller.lead_failed")
            lead.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lead
        for ended in self._ended_leads:
            ended.cancel()
        await asyncio.gather(*self._ended_leads, return_exceptions=True)
        self._ended_leads.clear()
        if elector_task is not None and elector is not None:
            elector_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await elector_task
            await elector.release()
        elif self.leading:
            self._stopped_leading()
