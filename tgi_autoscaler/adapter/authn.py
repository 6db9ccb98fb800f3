"""Who is calling: the aggregator's forwarded identity, or a bearer token reviewed by kube-apiserver.

This mirrors the delegated authentication of Kubernetes' generic API server, in the same order:

1. *Request header*: the client certificate must be issued by the current front-proxy CA
   (``requestheader-client-ca-file``), be valid now and usable for client auth, and, if
   ``requestheader-allowed-names`` is non-empty, carry one of those common names. Only then are the
   user, uid, group and extra headers read. Without a valid certificate those headers are ignored,
   so a client that reaches the adapter directly cannot claim to be anyone.
2. *Bearer token*: ``Authorization: Bearer`` is checked with a TokenReview; both outcomes are
   cached briefly, keyed by a digest of the token (the token itself is never stored or logged).
3. Anything else is unauthenticated (HTTP 401).

Every authenticated user is in ``system:authenticated``, added if the identity lacks it, as the
generic API server's authenticated-group adder does.

The peer certificate is checked here, per request, against the CA that is current *now*; the TLS
layer has already checked the chain, but a keep-alive connection may predate a CA rotation.
Certificates must be issued directly by a CA in the bundle, which is how kube-apiserver's
front-proxy client certificates are issued.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote

import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from multidict import MultiMapping

from tgi_autoscaler.adapter.cache import SingleFlightCache
from tgi_autoscaler.adapter.requestheader import RequestHeaderConfig
from tgi_autoscaler.kube.client import KubeClient
from tgi_autoscaler.kube.errors import describe
from tgi_autoscaler.kube.resources import TOKEN_REVIEW

__all__ = [
    "AuthenticationResult",
    "Authenticator",
    "KubeTokenReviewer",
    "ProxyCertificateError",
    "ProxyCertificateVerifier",
    "ReviewUnavailableError",
    "TokenReviewer",
    "UserInfo",
    "VerifiedProxy",
    "bearer_token",
    "identity_from_headers",
    "verify_proxy_certificate",
    "with_authenticated_group",
]

log = structlog.get_logger(__name__)

DEFAULT_TOKEN_CACHE_TTL_S = 10.0
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS = "system:anonymous"


@dataclass(frozen=True)
class UserInfo:
    """An authenticated identity, hashable so authorization answers can be cached per identity."""

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @staticmethod
    def freeze_extra(extra: Mapping[str, Sequence[str]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
        return tuple(sorted((k, tuple(v)) for k, v in extra.items()))

    def extra_dict(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.extra}


@dataclass(frozen=True)
class AuthenticationResult:
    """``user`` is set when authenticated; ``method`` and ``reason`` are for logs."""

    user: UserInfo | None
    method: str
    reason: str = ""


class ProxyCertificateError(Exception):
    """The client certificate does not identify an allowed front proxy."""


class ReviewUnavailableError(Exception):
    """kube-apiserver could not answer a TokenReview or SubjectAccessReview."""


def _common_name(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = attrs[0].value if attrs else ""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _allows_client_auth(cert: x509.Certificate) -> bool:
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True  # no restriction
    return ExtendedKeyUsageOID.CLIENT_AUTH in usages or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usages


def _within_validity(cert: x509.Certificate, now: dt.datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


@dataclass(frozen=True)
class VerifiedProxy:
    """A front-proxy certificate that passed verification, and the window in which that holds."""

    common_name: str
    valid_from: dt.datetime
    valid_until: dt.datetime  # the earlier of the leaf's and its issuing CA's notAfter


def _verify(der: bytes, config: RequestHeaderConfig, when: dt.datetime) -> VerifiedProxy:
    try:
        leaf = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise ProxyCertificateError("client certificate cannot be parsed") from exc
    if not config.client_cas:
        raise ProxyCertificateError("no front-proxy CA is configured")
    if not _within_validity(leaf, when):
        raise ProxyCertificateError("client certificate has expired or is not yet valid")
    if not _allows_client_auth(leaf):
        raise ProxyCertificateError("client certificate is not valid for client authentication")
    issuer = None
    for ca in config.client_cas:
        try:
            leaf.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        if _is_ca(ca) and _within_validity(ca, when):
            issuer = ca
            break
    if issuer is None:
        raise ProxyCertificateError("client certificate is not signed by the front-proxy CA")
    cn = _common_name(leaf)
    if config.allowed_names and cn not in config.allowed_names:
        raise ProxyCertificateError(f"client certificate common name {cn!r} is not in the allowed list")
    return VerifiedProxy(
        common_name=cn,
        valid_from=max(leaf.not_valid_before_utc, issuer.not_valid_before_utc),
        valid_until=min(leaf.not_valid_after_utc, issuer.not_valid_after_utc),
    )


def verify_proxy_certificate(
    der: bytes, config: RequestHeaderConfig, *, now: dt.datetime | None = None
) -> str:
    """The certificate's common name if it identifies an allowed front proxy; raises otherwise."""
    return _verify(der, config, now or dt.datetime.now(dt.UTC)).common_name


class ProxyCertificateVerifier:
    """``verify_proxy_certificate`` with a memory of certificates that already passed.

    The aggregator presents the same client certificate on every proxied request, and checking its
    signature is a large share of a cached metric read's CPU. A success is remembered per exact
    certificate (DER bytes) for the configuration object it was checked against: a rotated CA or
    allowed-names list arrives as a new object and forgets everything, and a remembered success
    still ends at the certificate's (or its CA's) expiry. Failures are never remembered.
    """

    def __init__(self, *, max_entries: int = 64) -> None:
        self._config: RequestHeaderConfig | None = None
        self._verified: dict[bytes, VerifiedProxy] = {}
        self._max_entries = max_entries

    def verify(self, der: bytes, config: RequestHeaderConfig, *, now: dt.datetime | None = None) -> str:
        when = now or dt.datetime.now(dt.UTC)
        if config is not self._config:
            self._config = config
            self._verified.clear()
        known = self._verified.get(der)
        if known is not None and known.valid_from <= when <= known.valid_until:
            return known.common_name
        verified = _verify(der, config, when)
        if len(self._verified) >= self._max_entries:
            self._verified.clear()
        self._verified[der] = verified
        return verified.common_name


def identity_from_headers(headers: MultiMapping[str], config: RequestHeaderConfig) -> UserInfo | None:
    """The identity the front proxy forwarded; ``None`` without a user name.

    Header names are matched case-insensitively. The first user (and uid) header with a value wins;
    every value of every group header is a group; each ``<prefix><key>`` header adds values to the
    lower-cased, percent-decoded extra ``key``, as the aggregator percent-encodes keys.
    """
    name = _first_value(headers, config.username_headers)
    if not name:
        return None
    groups = [v for h in config.group_headers for v in headers.getall(h, []) if v]
    extra: dict[str, list[str]] = {}
    lowered = [p.lower() for p in config.extra_header_prefixes]
    for prefix in lowered:
        for header, value in headers.items():
            if header.lower().startswith(prefix) and len(header) > len(prefix):
                key = _unescape_extra_key(header[len(prefix) :].lower())
                extra.setdefault(key, []).append(value)
    return UserInfo(
        name=name,
        uid=_first_value(headers, config.uid_headers),
        groups=tuple(groups),
        extra=UserInfo.freeze_extra(extra),
    )


def _unescape_extra_key(encoded: str) -> str:
    try:
        return unquote(encoded, errors="strict")
    except UnicodeDecodeError:
        return encoded  # keep a malformed key rather than drop the value


def _first_value(headers: MultiMapping[str], names: Sequence[str]) -> str:
    for header in names:
        value = headers.get(header, "")
        if value:
            return value
    return ""


def bearer_token(headers: MultiMapping[str]) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if well-formed."""
    value = headers.get("Authorization", "")
    scheme, _, token = value.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


class TokenReviewer(Protocol):
    async def review(self, token: str) -> UserInfo | None:
        """The token's user; ``None`` if rejected. Raises :class:`ReviewUnavailableError` on failure."""
        ...


class KubeTokenReviewer:
    """:class:`TokenReviewer` backed by ``authentication.k8s.io/v1`` TokenReview."""

    def __init__(self, client: KubeClient, *, audiences: Sequence[str] = ()) -> None:
        self._client = client
        self._audiences = list(audiences)

    async def review(self, token: str) -> UserInfo | None:
        spec: dict[str, Any] = {"token": token}
        if self._audiences:
            spec["audiences"] = self._audiences
        body = {"apiVersion": TOKEN_REVIEW.api_version, "kind": TOKEN_REVIEW.kind, "spec": spec}
        try:
            result = await self._client.create(TOKEN_REVIEW, None, body)
        except Exception as exc:
            raise ReviewUnavailableError(f"TokenReview failed: {describe(exc)}") from exc
        status = result.get("status") or {}
        user = status.get("user")
        if not status.get("authenticated") or not isinstance(user, dict):
            return None
        return UserInfo(
            name=str(user.get("username") or ""),
            uid=str(user.get("uid") or ""),
            groups=tuple(str(g) for g in user.get("groups") or ()),
            extra=UserInfo.freeze_extra(
                {str(k): [str(v) for v in values] for k, values in (user.get("extra") or {}).items()}
            ),
        )


class Authenticator:
    """Decides the identity of one request from its client certificate and headers."""

    def __init__(
        self,
        request_header: Callable[[], RequestHeaderConfig | None],
        tokens: TokenReviewer | None,
        *,
        token_cache_ttl_s: float = DEFAULT_TOKEN_CACHE_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._request_header = request_header
        self._tokens = tokens
        self._cache: SingleFlightCache[str, UserInfo | None]
        self._cache = SingleFlightCache(token_cache_ttl_s, clock=clock)
        self._proxy_certs = ProxyCertificateVerifier()

    async def authenticate(
        self, *, peer_cert_der: bytes | None, headers: MultiMapping[str]
    ) -> AuthenticationResult:
        reasons: list[str] = []
        config = self._request_header()
        if peer_cert_der is not None:
            if config is None or not config.enabled:
                reasons.append("request header authentication is not configured yet")
            else:
                try:
                    self._proxy_certs.verify(peer_cert_der, config)
                except ProxyCertificateError as exc:
                    reasons.append(str(exc))
                else:
                    user = identity_from_headers(headers, config)
                    if user is not None:
                        return AuthenticationResult(with_authenticated_group(user), "requestheader")
                    reasons.append("front proxy sent no user header")
        token = bearer_token(headers)
        if token is not None:
            if self._tokens is None:
                reasons.append("token authentication is disabled")
            else:
                try:
                    user, _outcome = await self._cache.get(_token_key(token), lambda: self._review(token))
                except ReviewUnavailableError as exc:
                    reasons.append(str(exc))
                else:
                    if user is not None:
                        return AuthenticationResult(with_authenticated_group(user), "token")
                    reasons.append("token rejected by TokenReview")
        if not reasons:
            reasons.append("no client certificate or bearer token")
        return AuthenticationResult(None, "none", "; ".join(reasons))

    async def _review(self, token: str) -> UserInfo | None:
        assert self._tokens is not None
        return await self._tokens.review(token)


def with_authenticated_group(user: UserInfo) -> UserInfo:
    """``user`` with ``system:authenticated`` added, as the generic API server's group adder does.

    Forwarded identities do not always carry it: kube-apiserver's OpenAPI downloader sends
    ``system:aggregator`` with no groups, and RBAC grants discovery and OpenAPI paths to
    ``system:authenticated``.
    """
    if user.name == ANONYMOUS or AUTHENTICATED in user.groups or UNAUTHENTICATED in user.groups:
        return user
    return UserInfo(name=user.name, uid=user.uid, groups=(*user.groups, AUTHENTICATED), extra=user.extra)


def _token_key(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
