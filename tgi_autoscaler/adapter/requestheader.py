"""Front-proxy (request header) authentication settings, kept current from the cluster.

kube-apiserver publishes how its aggregation layer identifies itself in the ConfigMap
``kube-system/extension-apiserver-authentication``: the CA that signs the proxy's client certificate
(``requestheader-client-ca-file``), the certificate common names allowed to assert identities
(``requestheader-allowed-names``), and the headers that carry the user, uid, groups and extra fields.
Every aggregated API server reads it (RBAC: Role ``extension-apiserver-authentication-reader``).

The ConfigMap is listed and then watched, so a rotated front-proxy CA takes effect without a restart;
an expired watch (HTTP 410) triggers a fresh list. A ConfigMap that fails to parse, or that is
deleted, leaves the last good settings in place, as kube-apiserver rewrites it shortly after.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from cryptography import x509
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

__all__ = [
    "AUTH_CONFIGMAP_NAME",
    "AUTH_CONFIGMAP_NAMESPACE",
    "ConfigMapEvent",
    "ConfigMapSource",
    "KubeConfigMapSource",
    "RequestHeaderConfig",
    "RequestHeaderConfigError",
    "RequestHeaderWatcher",
    "WatchExpiredError",
    "parse_request_header_config",
]

log = structlog.get_logger(__name__)

AUTH_CONFIGMAP_NAMESPACE = "kube-system"
AUTH_CONFIGMAP_NAME = "extension-apiserver-authentication"

# Data keys written by kube-apiserver's cluster authentication trust controller.
KEY_CLIENT_CA = "requestheader-client-ca-file"
KEY_ALLOWED_NAMES = "requestheader-allowed-names"
KEY_USERNAME_HEADERS = "requestheader-username-headers"
KEY_UID_HEADERS = "requestheader-uid-headers"
KEY_GROUP_HEADERS = "requestheader-group-headers"
KEY_EXTRA_PREFIXES = "requestheader-extra-headers-prefix"


class RequestHeaderConfigError(ValueError):
    """The authentication ConfigMap holds a value that cannot be used; the message names the key."""


@dataclass(frozen=True)
class RequestHeaderConfig:
    """How to recognise the aggregator and read the identity it forwards."""

    client_ca_pem: bytes | None
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = ()
    uid_headers: tuple[str, ...] = ()
    group_headers: tuple[str, ...] = ()
    extra_header_prefixes: tuple[str, ...] = ()
    client_cas: tuple[x509.Certificate, ...] = field(default=(), compare=False, repr=False)

    @property
    def enabled(self) -> bool:
        """Header identities can only be accepted with a CA to check the proxy against and a user header."""
        return bool(self.client_cas) and bool(self.username_headers)


def _string_list(data: Mapping[str, str], key: str) -> tuple[str, ...]:
    raw = data.get(key, "")
    if not raw:
        return ()
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise RequestHeaderConfigError(f"{key}: not a JSON list of strings ({exc.msg})") from exc
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RequestHeaderConfigError(f"{key}: not a JSON list of strings: {raw!r}")
    return tuple(value)


def _header_names(data: Mapping[str, str], key: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in _string_list(data, key))
    if any(not n for n in names):
        raise RequestHeaderConfigError(f"{key}: header names must not be empty")
    return names


def parse_request_header_config(data: Mapping[str, str]) -> RequestHeaderConfig:
    """Read the request header settings from the ConfigMap's ``data``."""
    ca_text = data.get(KEY_CLIENT_CA, "")
    cas: tuple[x509.Certificate, ...] = ()
    if ca_text.strip():
        try:
            cas = tuple(x509.load_pem_x509_certificates(ca_text.encode("ascii")))
        except (ValueError, UnicodeEncodeError) as exc:
            raise RequestHeaderConfigError(f"{KEY_CLIENT_CA}: not a PEM certificate bundle ({exc})") from exc
    return RequestHeaderConfig(
        client_ca_pem=ca_text.encode("ascii") if cas else None,
        allowed_names=_string_list(data, KEY_ALLOWED_NAMES),
        username_headers=_header_names(data, KEY_USERNAME_HEADERS),
        uid_headers=_header_names(data, KEY_UID_HEADERS),
        group_headers=_header_names(data, KEY_GROUP_HEADERS),
        extra_header_prefixes=_header_names(data, KEY_EXTRA_PREFIXES),
        client_cas=cas,
    )


class WatchExpiredError(Exception):
    """The watch's resource version is too old (HTTP 410 Gone); the caller must list again."""


@dataclass(frozen=True)
class ConfigMapEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    data: Mapping[str, str] | None
    resource_version: str


class ConfigMapSource(Protocol):
    """List and watch one ConfigMap by name."""

    async def get(self) -> tuple[Mapping[str, str] | None, str]:
        """The ConfigMap's data (``None`` if absent) and the list's resource version."""
        ...

    def watch(self, resource_version: str) -> AsyncIterator[ConfigMapEvent]:
        """Events after ``resource_version``; ends when the server closes the watch.

        Raises :class:`WatchExpiredError` when the version is gone.
        """
        ...


class KubeConfigMapSource:
    """:class:`ConfigMapSource` over the Kubernetes API (kubernetes-asyncio)."""

    def __init__(self, api_client: Any, namespace: str, name: str, *, watch_timeout_s: int = 300) -> None:
        self._core = client.CoreV1Api(api_client)
        self._namespace = namespace
        self._name = name
        self._selector = f"metadata.name={name}"
        self._timeout = watch_timeout_s

    @property
    def where(self) -> str:
        return f"{self._namespace}/{self._name}"

    async def get(self) -> tuple[Mapping[str, str] | None, str]:
        result = await self._core.list_namespaced_config_map(self._namespace, field_selector=self._selector)
        items = result.items or []
        data: Mapping[str, str] | None = (items[0].data or {}) if items else None
        return data, str(result.metadata.resource_version)

    async def watch(self, resource_version: str) -> AsyncIterator[ConfigMapEvent]:
        w = watch.Watch()
        try:
            stream = w.stream(
                self._core.list_namespaced_config_map,
                self._namespace,
                field_selector=self._selector,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=self._timeout,
            )
            async for event in stream:
                raw = event["raw_object"]
                meta = raw.get("metadata", {}) if isinstance(raw, dict) else {}
                yield ConfigMapEvent(
                    type=str(event["type"]),
                    data=(raw.get("data") or {}) if isinstance(raw, dict) else None,
                    resource_version=str(meta.get("resourceVersion", resource_version)),
                )
        except ApiException as exc:
            if exc.status == 410:
                raise WatchExpiredError(str(exc.reason)) from exc
            raise
        finally:
            await w.close()


Listener = Callable[[RequestHeaderConfig], Awaitable[None]]


class RequestHeaderWatcher:
    """The current :class:`RequestHeaderConfig`, kept up to date by :meth:`run`."""

    def __init__(
        self,
        source: ConfigMapSource,
        *,
        where: str = f"{AUTH_CONFIGMAP_NAMESPACE}/{AUTH_CONFIGMAP_NAME}",
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
    ) -> None:
        self._source = source
        self._where = where
        self._current: RequestHeaderConfig | None = None
        self._listeners: list[Listener] = []
        self._synced = asyncio.Event()
        self._backoff_initial = backoff_initial_s
        self._backoff_max = backoff_max_s

    @property
    def current(self) -> RequestHeaderConfig | None:
        """The last good settings, or ``None`` before the first successful read."""
        return self._current

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    async def wait_synced(self) -> None:
        await self._synced.wait()

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` with every new configuration (e.g. to rebuild the TLS client CA)."""
        self._listeners.append(listener)

    async def _apply(self, data: Mapping[str, str] | None, how: str) -> None:
        if data is None:
            log.warning("requestheader_configmap_missing", configmap=self._where, trigger=how)
            return
        try:
            config = parse_request_header_config(data)
        except RequestHeaderConfigError as exc:
            log.error("requestheader_configmap_invalid", configmap=self._where, error=str(exc))
            return
        if config == self._current:
            self._synced.set()
            return
        # Listeners first (e.g. the TLS listener's client CA): if one fails, the configuration is
        # not recorded as current, so the retry after the backoff applies it again.
        for listener in self._listeners:
            await listener(config)
        self._current = config
        self._synced.set()
        log.info(
            "requestheader_config_loaded",
            configmap=self._where,
            trigger=how,
            allowed_names=list(config.allowed_names),
            username_headers=list(config.username_headers),
            client_cas=[ca.subject.rfc4514_string() for ca in config.client_cas],
        )

    async def run(self) -> None:
        """List, then watch, forever; relist when the watch expires, back off on errors."""
        delay = self._backoff_initial
        while True:
            try:
                data, version = await self._source.get()
                await self._apply(data, "list")
                delay = self._backoff_initial
                while True:
                    async for event in self._source.watch(version):
                        version = event.resource_version
                        if event.type in ("ADDED", "MODIFIED"):
                            await self._apply(event.data, event.type)
                        elif event.type == "DELETED":
                            await self._apply(None, event.type)
            except asyncio.CancelledError:
                raise
            except WatchExpiredError:
                log.info("requestheader_watch_expired", configmap=self._where)
                continue
            except Exception as exc:
                log.warning(
                    "requestheader_watch_failed",
                    configmap=self._where,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in_s=round(delay, 2),
                )
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))  # noqa: S311 - jitter, not crypto
                delay = min(delay * 2, self._backoff_max)
