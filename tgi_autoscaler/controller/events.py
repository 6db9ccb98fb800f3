"""Kubernetes Events on service ConfigMaps, aggregated like client-go's recorder.

Events are how a user of ``kubectl describe configmap`` learns that their spec is invalid or was
applied. A reconcile that keeps failing would otherwise create a new Event every retry, so an
identical event (same object, type, reason and message) bumps the ``count`` and ``lastTimestamp``
of the one already recorded instead. Recording is best effort: a failure is logged, never raised,
because an Event must not be the reason a reconcile fails.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import structlog

from tgi_autoscaler.kube.client import KubeClient, KubeObject
from tgi_autoscaler.kube.errors import ApiError, TransportError
from tgi_autoscaler.kube.resources import EVENT

__all__ = ["EventRecorder", "EventType", "RecordedEvent"]

log = structlog.get_logger(__name__)

EventType = Literal["Normal", "Warning"]
_MAX_MESSAGE = 1024


@dataclass(frozen=True)
class RecordedEvent:
    namespace: str
    involved: str  # kind/name
    type: EventType
    reason: str
    message: str


@dataclass
class _Seen:
    name: str
    count: int


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    def __init__(
        self,
        client: KubeClient,
        *,
        component: str = "tgi-autoscaler",
        instance: str = "",
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        cache_size: int = 4096,
    ) -> None:
        self._client = client
        self._component = component
        self._instance = instance
        self._now = now
        self._seen: OrderedDict[tuple[str, str, str, str], _Seen] = OrderedDict()
        self._cache_size = cache_size
        self.recorded: list[RecordedEvent] = []  # the last few, for tests and debugging
        self._keep = 256

    async def record(self, involved: KubeObject, type_: EventType, reason: str, message: str) -> None:
        meta = involved.get("metadata") or {}
        namespace = str(meta.get("namespace") or "default")
        message = message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 3] + "..."
        key = (str(meta.get("uid", "")), type_, reason, message)
        now = _timestamp(self._now())
        self.recorded.append(
            RecordedEvent(namespace, f"{involved.get('kind')}/{meta.get('name')}", type_, reason, message)
        )
        del self.recorded[: -self._keep]
        try:
            seen = self._seen.get(key)
            if seen is not None:
                try:
                    await self._client.merge_patch(
                        EVENT,
                        namespace,
                        seen.name,
                        {"count": seen.count + 1, "lastTimestamp": now},
                        field_manager=self._component,
                    )
                    seen.count += 1
                    self._seen.move_to_end(key)
                    return
                except ApiError as exc:
                    if exc.status != 404:  # 404: the event expired (TTL); record a fresh one
                        raise
            name = f"{meta.get('name')}.{time.time_ns():x}"
            body: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": {
                    "apiVersion": involved.get("apiVersion", "v1"),
                    "kind": involved.get("kind", ""),
                    "name": meta.get("name"),
                    "namespace": namespace,
                    "uid": meta.get("uid"),
                    "resourceVersion": meta.get("resourceVersion"),
                },
                "type": type_,
                "reason": reason,
                "message": message,
                "count": 1,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "source": {"component": self._component, "host": self._instance},
                "reportingComponent": self._component,
                "reportingInstance": self._instance,
            }
            await self._client.create(EVENT, namespace, body)
            self._seen[key] = _Seen(name=name, count=1)
            while len(self._seen) > self._cache_size:
                self._seen.popitem(last=False)
        except (ApiError, TransportError) as exc:
            log.warning(
                "event.record_failed", reason=reason, object=f"{namespace}/{meta.get('name')}", error=str(exc)
            )
