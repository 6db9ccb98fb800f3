"""Follow one ConfigMap while the adapter runs: list, then watch, through API server restarts.

The adapter reads two ConfigMaps this way: kube-apiserver's ``extension-apiserver-authentication``
(the front-proxy CA and identity headers) and, optionally, the metric definitions. Both must take
effect without a restart, so :func:`follow_configmap` lists the ConfigMap, hands its data on, and
watches from the listed ``resourceVersion``. When the server ends a watch (its timeout), the next
one resumes from the last version seen; when that version is gone (HTTP 410), it lists again. Any
other error, including one raised while applying the data, is retried after an exponential backoff
with a fresh list, so settings that failed to apply are applied again.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

__all__ = [
    "ConfigMapEvent",
    "ConfigMapSource",
    "DataHandler",
    "KubeConfigMapSource",
    "WatchExpiredError",
    "follow_configmap",
]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ConfigMapEvent:
    """A watch event reduced to what matters: type, data and resourceVersion."""

    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    data: Mapping[str, str] | None
    resource_version: str  # "" when the event carries none


class WatchExpiredError(Exception):
    """The watch's resourceVersion is too old (HTTP 410 Gone); the caller must list again."""


class ConfigMapSource(Protocol):
    """Lists and watches one ConfigMap; :class:`KubeConfigMapSource` talks to the API server."""

    async def list(self) -> tuple[Mapping[str, str] | None, str]:
        """The ConfigMap's data (``None`` if it does not exist) and the list's resourceVersion."""
        ...

    def watch(self, resource_version: str) -> AsyncIterator[ConfigMapEvent]:
        """Events after ``resource_version``; ends when the server closes the watch.

        Raises :class:`WatchExpiredError` when the version is gone.
        """
        ...


class KubeConfigMapSource:
    """:class:`ConfigMapSource` over kubernetes_asyncio, selecting the ConfigMap by name."""

    def __init__(self, api_client: Any, namespace: str, name: str, *, watch_timeout_s: int = 300) -> None:
        from kubernetes_asyncio import client

        self._core = client.CoreV1Api(api_client)
        self._namespace = namespace
        self._selector = f"metadata.name={name}"
        self._timeout = watch_timeout_s

    async def list(self) -> tuple[Mapping[str, str] | None, str]:
        result = await self._core.list_namespaced_config_map(self._namespace, field_selector=self._selector)
        items = result.items or []
        data: Mapping[str, str] | None = (items[0].data or {}) if items else None
        return data, str(result.metadata.resource_version)

    async def watch(self, resource_version: str) -> AsyncIterator[ConfigMapEvent]:
        from kubernetes_asyncio import watch
        from kubernetes_asyncio.client.exceptions import ApiException

        stream = watch.Watch()
        try:
            async for event in stream.stream(
                self._core.list_namespaced_config_map,
                self._namespace,
                field_selector=self._selector,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=self._timeout,
            ):
                kind = str(event["type"])
                raw = event["raw_object"]
                if not isinstance(raw, dict):  # nothing usable: neither data nor a version
                    yield ConfigMapEvent(type=kind, data=None, resource_version="")
                    continue
                yield ConfigMapEvent(
                    type=kind,
                    data=None if kind == "BOOKMARK" else (raw.get("data") or {}),
                    resource_version=str(raw.get("metadata", {}).get("resourceVersion", "")),
                )
        except ApiException as exc:
            if exc.status == 410:
                raise WatchExpiredError(str(exc.reason)) from exc
            raise
        finally:
            await stream.close()


DataHandler = Callable[[Mapping[str, str] | None, str], Awaitable[None]]
"""Receives the ConfigMap's data (``None``: absent or deleted) and what produced it (``list`` or
the event type)."""


async def follow_configmap(
    source: ConfigMapSource,
    handle: DataHandler,
    *,
    where: str,
    backoff_initial_s: float = 1.0,
    backoff_max_s: float = 30.0,
    jitter: float = 0.0,
    stop: asyncio.Event | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> None:
    """Pass every version of the ConfigMap to ``handle`` until ``stop`` is set (or forever).

    ``jitter`` spreads each retry delay by +/- that fraction.
    """
    stop = stop or asyncio.Event()
    delay = backoff_initial_s
    while not stop.is_set():
        try:
            data, version = await source.list()
            await handle(data, "list")
            delay = backoff_initial_s
            while not stop.is_set():
                async for event in source.watch(version):
                    if event.resource_version:
                        version = event.resource_version
                    if event.type in ("ADDED", "MODIFIED"):
                        await handle(event.data, event.type)
                    elif event.type == "DELETED":
                        await handle(None, event.type)
                    if stop.is_set():
                        return
                # The server ended the watch (its timeout): resume where it stopped.
        except asyncio.CancelledError:
            raise
        except WatchExpiredError:
            log.info("configmap_watch_expired", configmap=where, note="listing again")
            continue
        except Exception as exc:
            log.warning(
                "configmap_watch_failed",
                configmap=where,
                error=f"{type(exc).__name__}: {exc}",
                retry_in_s=round(delay, 2),
            )
            spread = random.uniform(1 - jitter, 1 + jitter) if jitter else 1.0  # noqa: S311 - not crypto
            await sleep(delay * spread)
            delay = min(delay * 2, backoff_max_s)
