"""The adapter's front door: authenticate, then authorize, every request except health checks.

kube-apiserver's aggregation layer forwards a caller's identity in headers and proves it is the
aggregator with its front-proxy client certificate; other clients (kubectl with a token, a
ServiceAccount talking to the Service directly) present bearer tokens. Whatever the path, the
answer for a stranger is the one kube-apiserver would give: a ``metav1.Status`` with 401, or 403
with the familiar "User ... cannot list resource ..." message. ``/healthz``, ``/livez`` and
``/readyz`` stay open so kubelet probes need no credentials.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from tgi_autoscaler.adapter.authn import Authenticator, ReviewUnavailableError, UserInfo
from tgi_autoscaler.adapter.authz import Authorizer, forbidden_message, request_attributes
from tgi_autoscaler.adapter.status import forbidden, internal_error, unauthorized

__all__ = ["OPEN_PATHS", "USER_KEY", "peer_certificate", "security_middleware"]

log = structlog.get_logger(__name__)

# Exact paths, as in the generic API server's --authorization-always-allow-paths defaults.
OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz"})

# Where handlers and access logs find the authenticated caller.
USER_KEY = web.RequestKey("tgi_autoscaler.user", UserInfo)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


def peer_certificate(request: web.Request) -> bytes | None:
    """The DER client certificate of the request's TLS connection, if one was presented."""
    transport = request.transport
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    return ssl_object.getpeercert(binary_form=True)


def security_middleware(authn: Authenticator, authz: Authorizer) -> Middleware:
    """aiohttp middleware that admits only authenticated and authorized requests."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        started = time.perf_counter()
        result = await authn.authenticate(peer_cert_der=peer_certificate(request), headers=request.headers)
        if result.user is None:
            log.info(
                "request_unauthenticated",
                method=request.method,
                path=request.path,
                remote=request.remote,
                reason=result.reason,
            )
            return unauthorized()
        user = result.user
        attrs = request_attributes(request.method, request.path, request.query)
        try:
            decision, cached = await authz.authorize(user, attrs)
        except ReviewUnavailableError as exc:
            log.warning("request_authorization_failed", path=request.path, user=user.name, error=str(exc))
            return internal_error(f"authorization failed: {exc}")
        if not decision.allowed:
            log.info(
                "request_forbidden",
                method=request.method,
                path=request.path,
                user=user.name,
                groups=list(user.groups),
                reason=decision.reason,
                authz_cached=cached,
            )
            return forbidden(
                forbidden_message(user, attrs, decision.reason),
                group=attrs.api_group,
                kind=attrs.resource,
                name=attrs.name,
            )
        request[USER_KEY] = user
        log.debug(
            "request_admitted",
            path=request.path,
            user=user.name,
            authn=result.method,
            authz_cached=cached,
            security_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return await handler(request)

    return middleware
