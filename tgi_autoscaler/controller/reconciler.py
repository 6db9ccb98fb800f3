"""One reconcile: make the cluster match one service ConfigMap, and say how that went.

The steps, for the ConfigMap ``ns/name`` as the watch cache has it:

1. Gone (deleted, or its service label removed): delete what the garbage collector cannot (objects
   in other namespaces), or, if the ConfigMap still exists without the label, everything.
2. Parse and validate the spec and render the objects. An invalid spec changes *nothing* in the
   cluster: the last good objects keep running; the ConfigMap gets a Warning event and an
   ``Invalid`` status naming the field.
3. For a spec (or render options) not applied before, a server-side *dry run* of every object
   first, so that an object the API server rejects (a CRD schema violation, say) is caught before
   any object changes: again, nothing changes and the status says which field was rejected.
4. Server-side apply of every object, then deletion of objects this service owned but no longer
   renders (an alert rule switched off, a dashboard moved).
5. Status annotation (phase, what was applied, the HPA's replica counts) and events.

Transient API errors propagate to the worker, whose retry policy re-queues the key.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import structlog

from tgi_autoscaler.config.constants import ANNOTATION_STATUS, FIELD_MANAGER, SERVICE_CONFIGMAP_KEY
from tgi_autoscaler.config.errors import ConfigError
from tgi_autoscaler.controller.apply import (
    AppliedObject,
    ObjectRef,
    RejectedObject,
    apply_objects,
    fingerprint,
    prepare,
    ref_of,
)
from tgi_autoscaler.controller.events import EventRecorder
from tgi_autoscaler.controller.resources import resource_for
from tgi_autoscaler.controller.rollout import Step, plan_step, requeue_after
from tgi_autoscaler.controller.scale_to_zero import (
    parse_server_version,
    rejects_min_replicas,
    unsupported_message,
)
from tgi_autoscaler.controller.status import (
    AppliedSpec,
    HpaSummary,
    RolloutSummary,
    ServiceStatus,
    parse_status,
    spec_hash,
    status_changed,
)
from tgi_autoscaler.kube.client import KubeClient, KubeObject
from tgi_autoscaler.kube.errors import ApiError, TransportError
from tgi_autoscaler.kube.resources import (
    BACKENDTRAFFICPOLICY,
    CONFIGMAP,
    DEPLOYMENT_SCALE,
    HPA,
    HTTPROUTE,
    INFERENCEPOOL,
    SERVICE,
    ResourceType,
)
from tgi_autoscaler.kube.watch import ObjectKey
from tgi_autoscaler.render.rollout import step_objects
from tgi_autoscaler.render.source import KedaOptions, RenderOptions, ServiceSource

__all__ = [
    "Caches",
    "Expectations",
    "Outcome",
    "Reconciler",
    "ReconcilerSettings",
    "Renderer",
    "Result",
    "SourceBuilder",
]

log = structlog.get_logger(__name__)

Result = Literal["applied", "unchanged", "repaired", "invalid", "deleted", "error"]


class Caches(Protocol):
    """Read access to the watch caches."""

    def service(self, key: ObjectKey) -> KubeObject | None: ...

    def owned(self, key: ObjectKey) -> list[KubeObject]: ...

    def cached(self, ref: ObjectRef) -> KubeObject | None: ...

    def remember_service(self, configmap: KubeObject) -> None:
        """Note our own write to a service ConfigMap before the watch delivers it."""


class SourceBuilder(Protocol):
    def __call__(self, configmap: KubeObject) -> ServiceSource: ...


class Renderer(Protocol):
    def __call__(self, source: ServiceSource, options: RenderOptions) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class ReconcilerSettings:
    field_manager: str = FIELD_MANAGER
    dashboard_namespace: str | None = None
    # Longest time a service goes without a full apply even when the watch caches say every object
    # is exactly as last applied (a safety net against a missed watch event).
    verify_period_s: float = 300.0
    # Writes a rollout's replica counts through the scale subresource: a manager of its own, so the
    # main apply never owns spec.replicas (the HPA's field).
    scale_field_manager: str = FIELD_MANAGER + "-rollout"


@dataclass(frozen=True)
class Outcome:
    result: Result
    message: str
    changed: tuple[str, ...] = ()  # objects created, updated or deleted
    requeue_after_s: float | None = None  # a rollout in progress is looked at again this soon


@dataclass
class Expectations:
    """What each object looked like right after our own last write to it.

    The watch echoes our writes back; comparing an event's fingerprint with this tells an echo
    (ignore) from somebody else's edit (drift: reconcile the owner).
    """

    # ref -> (resourceVersion, fingerprint, fingerprint without the HPA's replicas, object as applied)
    _by_ref: dict[ObjectRef, tuple[str, str, str, KubeObject]] = field(default_factory=dict)

    def record(self, desired: KubeObject, response: KubeObject) -> None:
        rv = str((response.get("metadata") or {}).get("resourceVersion", ""))
        self._by_ref[_plain(ref_of(response))] = (
            rv,
            fingerprint(response, desired),
            fingerprint(response, desired, with_replicas=False),
            desired,
        )

    def forget(self, ref: ObjectRef) -> None:
        self._by_ref.pop(_plain(ref), None)

    def matches(self, obj: KubeObject) -> bool:
        """``obj`` is as we left it, replica counts included: a watch event not worth a reconcile."""
        seen = self._by_ref.get(_plain(ref_of(obj)))
        return seen is not None and seen[1] == fingerprint(obj, seen[3])

    def in_sync(self, obj: KubeObject, desired: KubeObject) -> bool:
        """Applying ``desired`` would not change ``obj``: we applied exactly that, nobody changed it since."""
        seen = self._by_ref.get(_plain(ref_of(obj)))
        return (
            seen is not None
            and seen[3] == desired
            and seen[2] == fingerprint(obj, desired, with_replicas=False)
        )

    def resource_version(self, ref: ObjectRef) -> str | None:
        seen = self._by_ref.get(_plain(ref))
        return seen[0] if seen is not None else None


def _plain(ref: ObjectRef) -> ObjectRef:
    # The API version is not part of an object's identity (the same Deployment is served by several).
    return ObjectRef(kind=ref.kind, namespace=ref.namespace, name=ref.name)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hpa_summary(hpa: KubeObject | None) -> HpaSummary | None:
    """The status fields read from the HPA: its replica counts and its queue metric target."""
    if hpa is None:
        return None
    spec = hpa.get("spec") or {}
    status = hpa.get("status") or {}
    metric: str | None = None
    target: str | None = None
    for entry in spec.get("metrics") or ():
        if entry.get("type") == "External":
            external = entry.get("external") or {}
            metric = (external.get("metric") or {}).get("name")
            target_spec = external.get("target") or {}
            raw = target_spec.get("averageValue") or target_spec.get("value")
            target = str(raw) if raw is not None else None
            break
    return HpaSummary(
        current_replicas=status.get("currentReplicas"),
        desired_replicas=status.get("desiredReplicas"),
        min_replicas=spec.get("minReplicas", 1),
        max_replicas=spec.get("maxReplicas"),
        queue_metric=metric,
        queue_target=target,
    )


class Reconciler:
    def __init__(
        self,
        client: KubeClient,
        caches: Caches,
        recorder: EventRecorder,
        *,
        build_source: SourceBuilder,
        render: Renderer,
        prometheus_operator: Callable[[], bool],
        keda: Callable[[], KedaOptions | None] = lambda: None,
        crd_served: Callable[[ResourceType], bool] = lambda rt: True,
        settings: ReconcilerSettings | None = None,
        on_applied: Callable[[str, str], None] = lambda kind, change: None,
        on_switched: Callable[[str, str], None] = lambda namespace, name: None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._on_switched = on_switched
        self._wall_clock = wall_clock
        self._on_applied = on_applied
        self._caches = caches
        self._recorder = recorder
        self._build_source = build_source
        self._render = render
        self._operator = prometheus_operator
        self._keda = keda
        self._crd_served = crd_served
        self.settings = settings or ReconcilerSettings()
        self.expectations = Expectations()
        self._last_full_apply: dict[ObjectKey, float] = {}

    async def reconcile(self, key: ObjectKey) -> Outcome:
        configmap = self._caches.service(key)
        if configmap is None or (configmap.get("metadata") or {}).get("deletionTimestamp"):
            return await self._clean_up(key)
        return await self._reconcile_present(key, configmap)

    # -- deletion ---------------------------------------------------------------------------------

    async def _clean_up(self, key: ObjectKey) -> Outcome:
        owned = [o for o in self._caches.owned(key) if not (o.get("metadata") or {}).get("deletionTimestamp")]
        if not owned:
            self._last_full_apply.pop(key, None)
            return Outcome("deleted", "nothing left to clean up")
        live = await self._client.get(CONFIGMAP, key.namespace, key.name)
        if live is None or (live.get("metadata") or {}).get("deletionTimestamp"):
            # Deleted: the garbage collector removes everything with an ownerReference (same
            # namespace); only objects in other namespaces are ours to delete.
            targets = [o for o in owned if ref_of(o).namespace != key.namespace]
            why = "service ConfigMap deleted"
        else:
            targets = owned  # still there, but no longer labelled as a service: stop managing it
            why = "service label removed from the ConfigMap"
        deleted = await self._delete(targets)
        self._last_full_apply.pop(key, None)
        return Outcome("deleted", why, changed=tuple(deleted))

    async def _delete(self, objects: Sequence[KubeObject]) -> list[str]:
        deleted: list[str] = []
        for obj in objects:
            ref = ref_of(obj)
            meta = obj.get("metadata") or {}
            try:
                gone = await self._client.delete(
                    resource_for(obj), ref.namespace, ref.name, uid=meta.get("uid")
                )
            except ApiError as exc:
                if exc.status == 409:  # uid precondition failed: replaced by a new object meanwhile
                    continue
                raise
            self.expectations.forget(ref)
            if gone:
                deleted.append(str(ref))
        return deleted

    # -- apply ------------------------------------------------------------------------------------

    async def _reconcile_present(self, key: ObjectKey, configmap: KubeObject) -> Outcome:
        meta = configmap.get("metadata") or {}
        old_status = parse_status((meta.get("annotations") or {}).get(ANNOTATION_STATUS))
        text = (configmap.get("data") or {}).get(SERVICE_CONFIGMAP_KEY)
        observed = spec_hash(text) if isinstance(text, str) else ""
        try:
            source = self._build_source(configmap)
            options = RenderOptions(
                prometheus_operator=self._operator(),
                dashboard_namespace=self.settings.dashboard_namespace,
                keda=self._keda(),
                gateway_api=self._crd_served(HTTPROUTE),
                inference_extension=self._crd_served(INFERENCEPOOL),
                envoy_gateway=self._crd_served(BACKENDTRAFFICPOLICY),
            )
            rendered = self._render(source, options)
        except ConfigError as exc:
            issues = "; ".join(str(issue) for issue in exc.issues)
            return await self._invalid(configmap, old_status, observed, "InvalidSpec", issues)

        applied_hash = spec_hash(str(text), repr(options))
        last_applied = old_status.applied if old_status is not None else None
        new_spec = last_applied is None or last_applied.hash != applied_hash
        step = self._rollout_step(key, source, new_spec)
        desired = prepare(step_objects(rendered, source.name, step.plan), key)
        keep = {ObjectRef(kind="Deployment", namespace=key.namespace, name=n) for n in step.keep}
        verified = None if new_spec or step.scale else self._verified_from_cache(key, desired, keep)
        changed_scale: list[str] = []
        if verified is not None:
            # Every object is exactly as we last applied it: skip the writes, refresh the status.
            applied, pruned = verified, []
        else:
            try:
                if new_spec:
                    await self._apply(desired, dry_run=True)
                applied = await self._apply(desired, dry_run=False)
            except RejectedObject as exc:
                causes = [(c.field, c.message) for c in exc.error.causes]
                if source.spec.scales_to_zero and rejects_min_replicas(
                    exc.ref.kind, causes, exc.error.message
                ):
                    version = parse_server_version(await self._client.get_path("/version"))
                    message = unsupported_message(version)
                    return await self._invalid(
                        configmap, old_status, observed, "ScaleToZeroUnsupported", message
                    )
                return await self._invalid(configmap, old_status, observed, "ApplyRejected", str(exc))
            if new_spec and source.spec.scales_to_zero:
                await self._check_controller_gate(key)
            changed_scale = await self._scale(key, step)
            pruned = await self._prune(key, desired, keep)
            self._last_full_apply[key] = time.monotonic()
        changed = [f"{a.change} {a.ref}" for a in applied if a.change != "unchanged"]
        changed += changed_scale
        changed += [f"deleted {ref}" for ref in pruned]

        hpa = next((a.object for a in applied if a.ref.kind == HPA.kind), None)
        names = [str(a.ref) for a in applied]
        # The message stays the same from one reconcile to the next unless something happened, so
        # that the status annotation is not rewritten by every resync.
        message = f"{len(applied)} objects applied and in sync"
        rollout = step.plan.state
        if rollout.phase != "Stable":
            message = f"rollout {rollout.phase}: {rollout.message or rollout.serving + ' serves'}"
        result: Result = "applied" if new_spec else ("repaired" if changed else "unchanged")
        applied_at = _now() if new_spec or last_applied is None else last_applied.at
        status = ServiceStatus(
            phase="Ready",
            message=message,
            observed_hash=observed,
            observed_resource_version=str(meta.get("resourceVersion", "")),
            applied=AppliedSpec(
                hash=applied_hash,
                at=applied_at,
                objects=tuple(names),
                prometheus_operator=options.prometheus_operator,
            ),
            hpa=_hpa_summary(hpa),
            rollout=RolloutSummary(phase=rollout.phase, serving=rollout.serving, candidate=rollout.candidate),
        )
        await self._write_status(configmap, old_status, status)
        if step.plan.event is not None:
            event = step.plan.event
            await self._recorder.record(configmap, event.type, event.reason, event.message)
            if event.reason == "Switched":
                self._on_switched(key.namespace, key.name)
        await self._report(configmap, result, applied, changed, options, new_spec)
        again = requeue_after(step.plan, self._wall_clock(), source.spec.rollout.grace_period_seconds)
        return Outcome(result, message, changed=tuple(changed), requeue_after_s=again)

    # -- rollout ----------------------------------------------------------------------------------

    def _rollout_step(self, key: ObjectKey, source: ServiceSource, spec_changed: bool) -> Step:
        def cached(kind: str, name: str) -> KubeObject | None:
            return self._caches.cached(ObjectRef(kind=kind, namespace=source.namespace, name=name))

        return plan_step(
            source.name,
            source.spec,
            owned=self._caches.owned(key),
            service=cached(SERVICE.kind, source.name),
            hpa=cached(HPA.kind, source.name),
            now=self._wall_clock(),
            spec_changed=spec_changed,
        )

    async def _scale(self, key: ObjectKey, step: Step) -> list[str]:
        """Write the rollout's replica counts (a candidate's size) through the scale subresource."""
        changed = []
        for name, replicas in step.scale.items():
            await self._client.merge_patch(
                DEPLOYMENT_SCALE,
                key.namespace,
                name,
                {"spec": {"replicas": replicas}},
                field_manager=self.settings.scale_field_manager,
            )
            changed.append(f"scaled Deployment/{key.namespace}/{name} to {replicas}")
        return changed

    async def _check_controller_gate(self, key: ObjectKey) -> None:
        """Before v1.37 the API server accepting minReplicas 0 says nothing of the HPA controller."""
        version = parse_server_version(await self._client.get_path("/version"))
        if version is not None and not version.native_scale_to_zero:
            log.warning(
                "scale_to_zero.alpha_gate",
                service=str(key),
                server_version=version.git_version,
                detail="the API server accepts minReplicas 0 (alpha HPAScaleToZero gate); "
                "kube-controller-manager needs the same gate to scale to and from zero",
            )

    def _verified_from_cache(
        self, key: ObjectKey, desired: Sequence[KubeObject], keep: set[ObjectRef]
    ) -> list[AppliedObject] | None:
        """The cached objects, if applying ``desired`` now would provably change nothing; else None."""
        last = self._last_full_apply.get(key)
        if last is None or time.monotonic() - last > self.settings.verify_period_s:
            return None
        current: list[AppliedObject] = []
        for want in desired:
            ref = ref_of(want)
            cached = self._caches.cached(ref)
            if cached is None or not self.expectations.in_sync(cached, want):
                return None
            current.append(AppliedObject(ref=ref, change="unchanged", object=cached))
        wanted = {_plain(ref_of(obj)) for obj in desired} | keep
        if any(_plain(ref_of(obj)) not in wanted for obj in self._caches.owned(key)):
            return None  # something to prune
        return current

    async def _apply(self, desired: Sequence[KubeObject], *, dry_run: bool) -> list[AppliedObject]:
        def known(ref: ObjectRef) -> list[str]:
            versions = []
            cached = self._caches.cached(ref)
            if cached is not None:
                versions.append(str((cached.get("metadata") or {}).get("resourceVersion", "")))
            expected = self.expectations.resource_version(ref)
            if expected is not None:
                versions.append(expected)
            return versions

        applied = await apply_objects(
            self._client,
            desired,
            field_manager=self.settings.field_manager,
            known_versions=known,
            dry_run=dry_run,
        )
        if not dry_run:
            for want, item in zip(desired, applied, strict=True):
                self.expectations.record(want, item.object)
                self._on_applied(item.ref.kind, item.change)
        return applied

    async def _prune(self, key: ObjectKey, desired: Sequence[KubeObject], keep: set[ObjectRef]) -> list[str]:
        # ``keep``: a Deployment of the previous model, left exactly as it is during a rollout.
        wanted = {_plain(ref_of(obj)) for obj in desired} | keep
        stale = [
            obj
            for obj in self._caches.owned(key)
            if _plain(ref_of(obj)) not in wanted and not (obj.get("metadata") or {}).get("deletionTimestamp")
        ]
        return await self._delete(stale)

    # -- reporting --------------------------------------------------------------------------------

    async def _invalid(
        self,
        configmap: KubeObject,
        old_status: ServiceStatus | None,
        observed: str,
        reason: str,
        detail: str,
    ) -> Outcome:
        keeps = "the last applied spec keeps running" if old_status and old_status.applied else ""
        message = f"{detail}; {keeps}" if keeps else detail
        # What is running is still what the last good spec produced: keep reporting it.
        status = ServiceStatus(
            phase="Invalid",
            message=message,
            observed_hash=observed,
            observed_resource_version=str((configmap.get("metadata") or {}).get("resourceVersion", "")),
            applied=old_status.applied if old_status else None,
            hpa=old_status.hpa if old_status else None,
            rollout=old_status.rollout if old_status else None,
        )
        await self._recorder.record(configmap, "Warning", reason, message)
        await self._write_status(configmap, old_status, status)
        return Outcome("invalid", message)

    async def report_failure(self, key: ObjectKey, error: BaseException) -> None:
        """Tell the user about an error the retry policy gave up on (best effort, never raises)."""
        try:
            await self._report_failure(key, error)
        except Exception:  # reporting must never take a worker down
            log.exception("report_failure.failed", service=str(key))

    async def _report_failure(self, key: ObjectKey, error: BaseException) -> None:
        configmap = self._caches.service(key)
        if configmap is None:
            return
        meta = configmap.get("metadata") or {}
        old_status = parse_status((meta.get("annotations") or {}).get(ANNOTATION_STATUS))
        text = (configmap.get("data") or {}).get(SERVICE_CONFIGMAP_KEY)
        message = f"reconcile failed, retried at the next change or resync: {error}"
        status = ServiceStatus(
            phase="Error",
            message=message,
            observed_hash=spec_hash(text) if isinstance(text, str) else "",
            observed_resource_version=str(meta.get("resourceVersion", "")),
            applied=old_status.applied if old_status else None,
            hpa=old_status.hpa if old_status else None,
            rollout=old_status.rollout if old_status else None,
        )
        await self._recorder.record(configmap, "Warning", "ReconcileFailed", message)
        try:
            await self._write_status(configmap, old_status, status)
        except (ApiError, TransportError) as exc:
            log.warning("status.write_failed", service=str(key), error=str(exc))

    async def _write_status(
        self, configmap: KubeObject, old: ServiceStatus | None, new: ServiceStatus
    ) -> None:
        document = new.document()
        if not status_changed(old.document() if old is not None else None, document):
            return
        meta = configmap.get("metadata") or {}
        patch = {"metadata": {"annotations": {ANNOTATION_STATUS: json.dumps(document, sort_keys=True)}}}
        try:
            updated = await self._client.merge_patch(
                CONFIGMAP,
                meta.get("namespace"),
                str(meta["name"]),
                patch,
                field_manager=self.settings.field_manager,
            )
        except ApiError as exc:
            if exc.status == 404:  # deleted meanwhile; its deletion event queues the clean-up
                return
            raise
        # A reconcile that starts before the watch echoes this write must see it, or it would take
        # the previous spec for unapplied and dry-run, apply and announce it all over again.
        self._caches.remember_service(updated)

    async def _report(
        self,
        configmap: KubeObject,
        result: Result,
        applied: Sequence[AppliedObject],
        changed: Sequence[str],
        options: RenderOptions,
        new_spec: bool,
    ) -> None:
        if new_spec:
            counts: dict[str, int] = {}
            for item in applied:
                counts[item.change] = counts.get(item.change, 0) + 1
            summary = ", ".join(f"{n} {change}" for change, n in sorted(counts.items()))
            await self._recorder.record(
                configmap, "Normal", "Applied", f"applied {len(applied)} objects ({summary})"
            )
            if not options.prometheus_operator:
                await self._recorder.record(
                    configmap,
                    "Warning",
                    "PrometheusOperatorMissing",
                    "prometheus-operator CRDs (monitoring.coreos.com/v1 PodMonitor, PrometheusRule) are not "
                    "installed: no PodMonitor or PrometheusRule was applied; pods carry prometheus.io/* "
                    "scrape annotations instead and alert rules must be loaded into Prometheus by hand",
                )
        elif result == "repaired":
            await self._recorder.record(
                configmap, "Normal", "DriftRepaired", f"restored managed fields: {', '.join(changed)}"
            )
