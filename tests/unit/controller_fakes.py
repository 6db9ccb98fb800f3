"""In-memory stand-ins for the controller's unit tests: an API server store and a virtual clock.

``FakeKube`` implements the ``KubeClient`` protocol on a dict, with the behaviour the controller
relies on: resourceVersions that change only when an object changes, 409 on a stale
resourceVersion, uid preconditions on delete, and dry runs that change nothing. Failures can be
injected per verb. It is deliberately not a server-side-apply implementation (field ownership is
tested against the real API server in tests/e2e).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
from collections.abc import AsyncGenerator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from tgi_autoscaler.controller.resources import resource_for
from tgi_autoscaler.kube.client import KubeObject, ObjectList, WatchEvent
from tgi_autoscaler.kube.errors import ApiError
from tgi_autoscaler.kube.resources import ResourceType

Key = tuple[str, str, str]  # kind, namespace, name


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[Key, KubeObject] = {}
        self._rv = itertools.count(100)
        self._uid = itertools.count(1)
        self.calls: list[tuple[str, str]] = []  # (verb, "Kind/ns/name")
        self.fail: dict[str, list[BaseException]] = {}  # verb -> errors raised by the next calls
        self.discovery: dict[str, KubeObject] = {}
        self._watchers: list[asyncio.Queue[tuple[str, KubeObject, KubeObject | None]]] = []

    # -- helpers for tests ------------------------------------------------------------------------

    def put(self, obj: KubeObject) -> KubeObject:
        stored = copy.deepcopy(obj)
        meta = stored.setdefault("metadata", {})
        meta.setdefault("uid", f"uid-{next(self._uid)}")
        meta["resourceVersion"] = str(next(self._rv))
        key = self._key_of(stored)
        old = self.objects.get(key)
        self.objects[key] = stored
        self._notify("MODIFIED" if old is not None else "ADDED", stored, old)
        return copy.deepcopy(stored)

    def find(self, kind: str, namespace: str, name: str) -> KubeObject | None:
        obj = self.objects.get((kind, namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def writes(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[0] in ("apply", "merge_patch", "create", "replace", "delete")]

    @staticmethod
    def _key_of(obj: Mapping[str, Any]) -> Key:
        meta = obj.get("metadata") or {}
        return (str(obj["kind"]), str(meta.get("namespace") or ""), str(meta["name"]))

    def _maybe_fail(self, verb: str) -> None:
        pending = self.fail.get(verb)
        if pending:
            raise pending.pop(0)

    # -- KubeClient -------------------------------------------------------------------------------

    async def get(self, rt: ResourceType, namespace: str | None, name: str) -> KubeObject | None:
        self.calls.append(("get", f"{rt.kind}/{namespace}/{name}"))
        self._maybe_fail("get")
        return self.find(rt.kind, namespace or "", name)

    async def get_path(self, path: str) -> KubeObject | None:
        self._maybe_fail("get_path")
        return copy.deepcopy(self.discovery.get(path))

    async def list(
        self,
        rt: ResourceType,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> ObjectList:
        self._maybe_fail("list")
        items = [
            copy.deepcopy(o)
            for (kind, ns, _), o in sorted(self.objects.items())
            if kind == rt.kind
            and (namespace is None or ns == namespace)
            and _selects(label_selector, o)
            and _fields_select(field_selector, o)
        ]
        return ObjectList(items=items, resource_version=str(next(self._rv)))

    async def watch(
        self,
        rt: ResourceType,
        *,
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_s: int = 300,
    ) -> AsyncGenerator[WatchEvent, None]:
        """Changes made after the call; objects leaving the selector are reported as DELETED."""
        self._maybe_fail("watch")
        queue: asyncio.Queue[tuple[str, KubeObject, KubeObject | None]] = asyncio.Queue()
        self._watchers.append(queue)
        try:
            while True:
                change, obj, old = await queue.get()
                if (
                    obj["kind"] != rt.kind
                    or (namespace is not None and obj["metadata"].get("namespace") != namespace)
                    or not _fields_select(field_selector, obj)
                ):
                    continue
                now, before = _selects(label_selector, obj), old is not None and _selects(label_selector, old)
                if change == "DELETED" and before:
                    yield WatchEvent(type="DELETED", object=copy.deepcopy(obj))
                elif change != "DELETED" and now:
                    yield WatchEvent(type="MODIFIED" if before else "ADDED", object=copy.deepcopy(obj))
                elif change != "DELETED" and before:
                    yield WatchEvent(type="DELETED", object=copy.deepcopy(obj))
        finally:
            self._watchers.remove(queue)

    def _notify(self, change: str, obj: KubeObject, old: KubeObject | None) -> None:
        for queue in self._watchers:
            queue.put_nowait((change, copy.deepcopy(obj), copy.deepcopy(old) if old is not None else None))

    async def apply(
        self, obj: Mapping[str, Any], *, field_manager: str, force: bool = True, dry_run: bool = False
    ) -> KubeObject:
        resource_for(obj)
        key = self._key_of(obj)
        self.calls.append(("dry-run" if dry_run else "apply", "/".join(key)))
        self._maybe_fail("dry-run" if dry_run else "apply")
        existing = self.objects.get(key)
        merged = copy.deepcopy(dict(obj))
        if existing is not None:
            # Keep what the server owns (uid, status, and spec.replicas written by the HPA).
            meta = merged.setdefault("metadata", {})
            meta["uid"] = existing["metadata"]["uid"]
            if "status" in existing:
                merged["status"] = copy.deepcopy(existing["status"])
            replicas = (existing.get("spec") or {}).get("replicas")
            if replicas is not None and "replicas" not in (merged.get("spec") or {}):
                merged.setdefault("spec", {})["replicas"] = replicas
            if _without_rv(existing) == _without_rv(merged):
                return copy.deepcopy(existing)  # a no-op apply does not bump the resourceVersion
        if dry_run:
            return merged
        return self.put(merged) if existing is None else self._store(key, merged)

    def _store(self, key: Key, obj: KubeObject) -> KubeObject:
        obj["metadata"]["resourceVersion"] = str(next(self._rv))
        old = self.objects.get(key)
        self.objects[key] = obj
        self._notify("MODIFIED", obj, old)
        return copy.deepcopy(obj)

    def remove(self, kind: str, namespace: str, name: str) -> None:
        """Delete as another client would (the garbage collector, a user)."""
        old = self.objects.pop((kind, namespace, name))
        self._notify("DELETED", old, old)

    async def merge_patch(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        patch: Mapping[str, Any],
        *,
        field_manager: str,
    ) -> KubeObject:
        self.calls.append(("merge_patch", f"{rt.kind}/{namespace}/{name}"))
        self._maybe_fail("merge_patch")
        key = (rt.kind, namespace or "", name)
        existing = self.objects.get(key)
        if existing is None:
            raise ApiError(404, "NotFound", f"{rt.plural} {name!r} not found")
        merged = copy.deepcopy(existing)
        _merge(merged, patch)
        return self._store(key, merged)

    async def create(self, rt: ResourceType, namespace: str | None, obj: Mapping[str, Any]) -> KubeObject:
        self.calls.append(("create", f"{rt.kind}/{namespace}/{obj['metadata']['name']}"))
        self._maybe_fail("create")
        full = {"apiVersion": rt.api_version, "kind": rt.kind, **obj}
        key = self._key_of(full)
        if key in self.objects:
            raise ApiError(409, "AlreadyExists", f"{rt.plural} {key[2]!r} already exists")
        return self.put(full)

    async def replace(
        self, rt: ResourceType, namespace: str | None, name: str, obj: Mapping[str, Any]
    ) -> KubeObject:
        self.calls.append(("replace", f"{rt.kind}/{namespace}/{name}"))
        self._maybe_fail("replace")
        key = (rt.kind, namespace or "", name)
        existing = self.objects.get(key)
        if existing is None:
            raise ApiError(404, "NotFound", f"{rt.plural} {name!r} not found")
        wanted = (obj.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and wanted != existing["metadata"]["resourceVersion"]:
            raise ApiError(409, "Conflict", "the object has been modified")
        updated = copy.deepcopy(dict(obj))
        updated.setdefault("apiVersion", rt.api_version)
        updated.setdefault("kind", rt.kind)
        updated["metadata"]["uid"] = existing["metadata"]["uid"]
        return self._store(key, updated)

    async def delete(
        self, rt: ResourceType, namespace: str | None, name: str, *, uid: str | None = None
    ) -> bool:
        self.calls.append(("delete", f"{rt.kind}/{namespace}/{name}"))
        self._maybe_fail("delete")
        key = (rt.kind, namespace or "", name)
        existing = self.objects.get(key)
        if existing is None:
            return False
        if uid is not None and existing["metadata"]["uid"] != uid:
            raise ApiError(409, "Conflict", "uid precondition failed")
        del self.objects[key]
        self._notify("DELETED", existing, existing)
        return True


def _selects(selector: str | None, obj: Mapping[str, Any]) -> bool:
    """Equality (``k=v``) and existence (``k``) terms, comma-separated: what the controller uses."""
    if not selector:
        return True
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if key not in labels or (value and labels[key] != value):
            return False
    return True


def _fields_select(selector: str | None, obj: Mapping[str, Any]) -> bool:
    """Only ``metadata.name=<name>``, the one field selector the servers use."""
    if not selector:
        return True
    field, _, value = selector.partition("=")
    assert field == "metadata.name", f"the fake supports metadata.name only, not {selector!r}"
    return bool(obj.get("metadata", {}).get("name") == value)


def _without_rv(obj: Mapping[str, Any]) -> dict[str, Any]:
    stripped = copy.deepcopy(dict(obj))
    stripped.get("metadata", {}).pop("resourceVersion", None)
    return stripped


def _merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, Mapping) and isinstance(target.get(k), dict):
            _merge(target[k], v)
        else:
            target[k] = copy.deepcopy(v)


class FakeClock:
    """Virtual time: ``sleep`` waits until a test ``advance``s the clock past its deadline."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self.now

    def utcnow(self) -> datetime:
        return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=self.now)

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, future))
        try:
            await future
        finally:
            self._sleepers = [(t, f) for t, f in self._sleepers if f is not future]

    async def advance(self, seconds: float, *, step: float = 0.05) -> None:
        """Move time forward in small steps, letting every woken task run between steps."""
        target = self.now + seconds
        while self.now < target - 1e-9:
            self.now = min(target, self.now + step)
            for due, future in list(self._sleepers):
                if due <= self.now + 1e-9 and not future.done():
                    future.set_result(None)
            for _ in range(20):
                await asyncio.sleep(0)
