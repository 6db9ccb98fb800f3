"""The one list-then-watch loop: a reflector keeps an in-memory cache of one resource type current.

The controller runs one reflector per watched kind and namespace; the adapter runs one per
ConfigMap it follows (with a field selector on its name). A reflector lists the objects (a
consistent read), then watches from the list's resourceVersion, asking for bookmarks so that a quiet
watch still advances its resume point. When the watch ends (the server's timeout, a dropped
connection) it resumes from the last resourceVersion it saw, so no change is missed and nothing is
re-listed. When the server answers 410 Gone (the version was compacted away) it re-lists and reports
the difference against its cache as synthetic events, deletions included, so handlers see every
transition exactly as if they had watched it.

How it reacts to failure is data, a :class:`WatchPolicy`: the backoff between attempts, the watch
timeout, and what a failing handler means. A handler may be a plain function (it runs on the event
loop and must only do cheap things, such as enqueueing a key) or a coroutine function (awaited in
order). With ``retry_failed_handlers`` off, a handler's exception is logged and the cache moves on;
with it on, the change is taken back out of the cache and the reflector backs off and lists again,
so the change is delivered again until the handler accepts it (settings that failed to apply are
applied again).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import random
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import structlog

from tgi_autoscaler.kube.client import KubeObject, ListWatchClient, WatchEvent
from tgi_autoscaler.kube.errors import ApiError, TransportError, describe
from tgi_autoscaler.kube.resources import ResourceType
from tgi_autoscaler.kube.retry import Backoff

__all__ = [
    "ChangeType",
    "Handler",
    "ListedHook",
    "ObjectKey",
    "Reflector",
    "Store",
    "WatchPolicy",
    "object_key",
]

log = structlog.get_logger(__name__)

ChangeType = Literal["ADDED", "MODIFIED", "DELETED"]
# (change, new object or last known object for DELETED, previous object or None)
Handler = Callable[[ChangeType, KubeObject, KubeObject | None], Awaitable[None] | None]
# Called after every list has been applied to the store (e.g. to notice that nothing matched).
ListedHook = Callable[["Store"], Awaitable[None] | None]
Change = tuple[ChangeType, KubeObject, KubeObject | None]


def _default_backoff() -> Backoff:
    return Backoff(initial_s=0.5, max_s=30.0)


@dataclass(frozen=True)
class WatchPolicy:
    """How a reflector waits and retries: the watch loop's failure handling as data."""

    backoff: Backoff = field(default_factory=_default_backoff)
    timeout_s: int = 300  # asked of the server per watch; it ends the watch then, and we resume
    retry_failed_handlers: bool = False  # see the module docstring


@dataclass(frozen=True, order=True)
class ObjectKey:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def object_key(obj: KubeObject) -> ObjectKey:
    meta = obj.get("metadata") or {}
    return ObjectKey(str(meta.get("namespace") or ""), str(meta["name"]))


def _rv(obj: KubeObject) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


class Store:
    """The cached objects of one reflector, with an optional secondary index."""

    def __init__(self, index: Callable[[KubeObject], Hashable | None] | None = None) -> None:
        self._items: dict[ObjectKey, KubeObject] = {}
        self._index_fn = index
        self._index: dict[Hashable, set[ObjectKey]] = {}

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: ObjectKey) -> KubeObject | None:
        return self._items.get(key)

    def values(self) -> list[KubeObject]:
        return list(self._items.values())

    def object_keys(self) -> list[ObjectKey]:
        return list(self._items)

    def by_index(self, value: Hashable) -> list[KubeObject]:
        return [self._items[k] for k in sorted(self._index.get(value, ()))]

    def put(self, obj: KubeObject) -> KubeObject | None:
        key = object_key(obj)
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        if self._index_fn is not None:
            value = self._index_fn(obj)
            if value is not None:
                self._index.setdefault(value, set()).add(key)
        return old

    def remove(self, key: ObjectKey) -> KubeObject | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def _unindex(self, key: ObjectKey, obj: KubeObject) -> None:
        if self._index_fn is None:
            return
        value = self._index_fn(obj)
        if value is not None:
            members = self._index.get(value)
            if members is not None:
                members.discard(key)
                if not members:
                    del self._index[value]


class _HandlerFailedError(Exception):
    """A handler raised under ``retry_failed_handlers``; the reflector lists again after a pause."""


class Reflector:
    """Keeps ``store`` equal to the API server's view of ``rt`` (in one namespace or all)."""

    def __init__(
        self,
        client: ListWatchClient,
        rt: ResourceType,
        *,
        handler: Handler,
        store: Store | None = None,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        policy: WatchPolicy | None = None,
        rand: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        on_relist: Callable[[], None] = lambda: None,
        on_listed: ListedHook | None = None,
    ) -> None:
        self._client = client
        self._on_relist = on_relist
        self._on_listed = on_listed
        self.rt = rt
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.store = store if store is not None else Store()
        self._handler = handler
        self.policy = policy or WatchPolicy()
        self._rand = rand
        self._sleep = sleep
        self.synced = asyncio.Event()
        self.resource_version = ""
        self.relists = 0
        self._log = log.bind(
            resource=str(rt),
            namespace=namespace or "*",
            selector=label_selector or "",
            fields=field_selector or "",
        )

    async def run(self) -> None:
        """List, then watch forever (until cancelled), resuming or re-listing as needed."""
        failures = 0
        while True:
            try:
                if not self.resource_version:
                    await self._relist()
                await self._watch_once()
                failures = 0
            except ApiError as exc:
                if exc.status == 410:
                    self._log.info("watch.expired", resource_version=self.resource_version)
                    self.resource_version = ""
                    continue
                failures += 1
                await self._pause(exc, failures)
            except TransportError as exc:
                failures += 1
                await self._pause(exc, failures)
            except _HandlerFailedError as exc:
                self.resource_version = ""
                failures += 1
                await self._pause(exc, failures)
            except Exception as exc:  # a bug or an undecodable event: start over from a fresh list
                self._log.exception("watch.crashed")
                self.resource_version = ""
                failures += 1
                await self._pause(exc, failures)

    async def _pause(self, exc: Exception, failures: int) -> None:
        delay = self.policy.backoff.delay(failures, self._rand)
        self._log.warning(
            "watch.failed",
            error=describe(exc),
            retry_in_s=round(delay, 2),
            failures=failures,
        )
        await self._sleep(delay)

    async def _relist(self) -> None:
        listed = await self._client.list(
            self.rt,
            namespace=self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
        )
        self.relists += 1
        self._on_relist()
        seen = set()
        changes: list[Change] = []
        for obj in listed.items:
            key = object_key(obj)
            seen.add(key)
            old = self.store.put(obj)
            if old is None:
                changes.append(("ADDED", obj, None))
            elif _rv(old) != _rv(obj):
                changes.append(("MODIFIED", obj, old))
        for key in self.store.object_keys():
            # The store may be shared with reflectors of other namespaces: only judge our own.
            if key not in seen and (self.namespace is None or key.namespace == self.namespace):
                gone = self.store.remove(key)
                if gone is not None:
                    changes.append(("DELETED", gone, gone))
        self._log.debug("watch.listed", objects=len(listed.items), resource_version=listed.resource_version)
        await self._dispatch(changes)
        if self._on_listed is not None:
            await self._call("listed", None, functools.partial(self._on_listed, self.store))
        self.resource_version = listed.resource_version
        self.synced.set()

    async def _watch_once(self) -> None:
        stream = self._client.watch(
            self.rt,
            resource_version=self.resource_version,
            namespace=self.namespace,
            label_selector=self.label_selector,
            field_selector=self.field_selector,
            timeout_s=self.policy.timeout_s,
        )
        # aclosing: a cancelled watch closes its HTTP response now, not whenever the generator is collected.
        async with contextlib.aclosing(stream) as events:
            async for event in events:
                await self._apply_event(event)

    async def _apply_event(self, event: WatchEvent) -> None:
        obj = event["object"]
        kind = event["type"]
        if kind == "DELETED":
            old = self.store.remove(object_key(obj))
            await self._dispatch([("DELETED", obj, old)])
        elif kind in ("ADDED", "MODIFIED"):
            old = self.store.put(obj)
            await self._dispatch([("ADDED" if old is None else "MODIFIED", obj, old)])
        # Every event, bookmarks included, moves the resume point forward.
        self.resource_version = _rv(obj) or self.resource_version

    async def _dispatch(self, changes: Sequence[Change]) -> None:
        for position, (change, obj, old) in enumerate(changes):
            try:
                await self._call(change, obj, functools.partial(self._handler, change, obj, old))
            except _HandlerFailedError:
                # Undo this change and the ones not yet delivered: the next list reports them again.
                for _, undelivered, previous in reversed(changes[position:]):
                    self._restore(undelivered, previous)
                raise

    async def _call(
        self, what: str, obj: KubeObject | None, call: Callable[[], Awaitable[None] | None]
    ) -> None:
        try:
            result = call()
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            where = str(object_key(obj)) if obj is not None else ""
            if self.policy.retry_failed_handlers:
                self._log.warning("watch.handler_failed", change=what, object=where, error=repr(exc))
                raise _HandlerFailedError(f"{what} {where}: {type(exc).__name__}: {exc}") from exc
            # A handler bug must not stop the cache from tracking the cluster.
            self._log.exception("watch.handler_failed", change=what, object=where)

    def _restore(self, obj: KubeObject, previous: KubeObject | None) -> None:
        if previous is None:
            self.store.remove(object_key(obj))
        else:
            self.store.put(previous)
