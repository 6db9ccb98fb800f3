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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import structlog
from cryptography import x509

from tgi_autoscaler.adapter.configmap_watch import follow_configmap
from tgi_autoscaler.kube.client import ListWatchClient
from tgi_autoscaler.kube.retry import Backoff
from tgi_autoscaler.kube.watch import WatchPolicy

__all__ = [
    "AUTH_CONFIGMAP_NAME",
    "AUTH_CONFIGMAP_NAMESPACE",
    "REQUEST_HEADER_WATCH",
    "RequestHeaderConfig",
    "RequestHeaderConfigError",
    "RequestHeaderWatcher",
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

# Retry soon (the adapter is not ready without these settings), with jitter so that replicas
# restarted together do not retry in lockstep; a listener that fails is retried until it succeeds.
REQUEST_HEADER_WATCH = WatchPolicy(
    backoff=Backoff(initial_s=0.5, max_s=30.0, jitter=0.2), retry_failed_handlers=True
)


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


Listener = Callable[[RequestHeaderConfig], Awaitable[None]]


class RequestHeaderWatcher:
    """The current :class:`RequestHeaderConfig`, kept up to date by :meth:`run`."""

    def __init__(
        self,
        client: ListWatchClient,
        ref: tuple[str, str] = (AUTH_CONFIGMAP_NAMESPACE, AUTH_CONFIGMAP_NAME),
        *,
        policy: WatchPolicy = REQUEST_HEADER_WATCH,
    ) -> None:
        self._client = client
        self._ref = ref
        self._where = "/".join(ref)
        self._current: RequestHeaderConfig | None = None
        self._listeners: list[Listener] = []
        self._synced = asyncio.Event()
        self._policy = policy

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
        await follow_configmap(self._client, self._ref, self._apply, policy=self._policy)
