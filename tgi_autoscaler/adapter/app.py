"""The external metrics API as an ``aiohttp`` application, ready to be served by the process wiring.

Contract with ``tgi_autoscaler.adapter.server`` (TLS, authentication, authorization)::

    build_app(
        settings: AdapterSettings,
        *,
        prometheus: PrometheusQuerier,          # e.g. PrometheusClient(settings.prometheus, metrics=...)
        definitions: DefinitionStore,           # fed by watch_file / watch_configmap tasks
        middlewares: Sequence[Middleware] = (), # the security middleware(s), in order
        metrics: AdapterMetrics | None = None,  # share one with PrometheusClient and DefinitionStore
        readiness: Callable[[], Sequence[str]] | None = None,  # names of failing readiness checks
    ) -> web.Application

- Routes: ``/apis`` (legacy and aggregated discovery), ``/apis/external.metrics.k8s.io``,
  ``/apis/external.metrics.k8s.io/v1beta1``, ``.../namespaces/{namespace}/{metric}``,
  ``/openapi/v2``, ``/openapi/v3``, ``/openapi/v3/apis/external.metrics.k8s.io/v1beta1``,
  ``/version``, the health endpoints ``/healthz``, ``/livez``, ``/readyz`` (left open by the security
  middleware: probes carry no credentials) and ``/metrics`` (authenticated, like kube-apiserver's own;
  the manifests grant Prometheus a scraper role).
- The app's own middleware runs first (outermost): it writes one access-log event per request and
  turns every ``AdapterError``, unknown path (404), wrong method (405) and unexpected exception (500)
  into a ``metav1.Status``; responses produced by the security middleware (401/403) are logged too.
- Handlers never authenticate: the security middleware stores the caller in
  ``request[tgi_autoscaler.adapter.security.USER_KEY]``; the access log reads the name from there.
  No token or credential is ever logged.
- Typed state lives under ``web.AppKey``s (``SETTINGS_KEY``, ``DEFINITIONS_KEY``, ``PROMETHEUS_KEY``,
  ``METRICS_KEY``, ``READER_KEY`` in ``handlers``). The caller owns the ``PrometheusQuerier`` (start
  and close it) and the definition watchers; the app owns its cache and the grouped prefetch, whose
  background refresh runs while the app is running (``cleanup_ctx``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, cast

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware as AioMiddleware
from prometheus_client import CollectorRegistry

from tgi_autoscaler.adapter import status
from tgi_autoscaler.adapter.answers import Answer
from tgi_autoscaler.adapter.cache import SingleFlightCache
from tgi_autoscaler.adapter.definitions import DefinitionStore
from tgi_autoscaler.adapter.errors import AdapterError
from tgi_autoscaler.adapter.handlers import (
    DEFINITIONS_KEY,
    METRIC_PATH,
    METRICS_KEY,
    PROMETHEUS_KEY,
    READER_KEY,
    REQUEST_INFO_KEY,
    SETTINGS_KEY,
    MetricReader,
    RequestInfo,
    get_external_metric,
)
from tgi_autoscaler.adapter.handlers_discovery import DOCUMENTS_KEY, READINESS_KEY, Documents, routes
from tgi_autoscaler.adapter.own_metrics import UNKNOWN_METRIC, AdapterMetrics
from tgi_autoscaler.adapter.prefetch import Prefetcher
from tgi_autoscaler.adapter.prometheus import PrometheusQuerier
from tgi_autoscaler.adapter.security import USER_KEY
from tgi_autoscaler.config.metrics import AdapterSettings

__all__ = [
    "DEFINITIONS_KEY",
    "METRICS_KEY",
    "PROMETHEUS_KEY",
    "READER_KEY",
    "SETTINGS_KEY",
    "build_app",
]

log = structlog.get_logger("tgi_autoscaler.adapter.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


def _user_name(request: web.Request) -> str | None:
    user = request.get(USER_KEY)
    return user.name if user is not None else None


def _duration_child(metrics: AdapterMetrics, endpoint: str, metric: str, code: int) -> Any:
    # ``labels()`` takes a lock and builds a key on every call: remember the children.
    children = metrics.duration_children
    key = (endpoint, metric, code)
    child = children.get(key)
    if child is None:
        if len(children) > 4096:  # bounded: metric labels are bounded, codes nearly so
            children.clear()
        child = children[key] = metrics.request_duration.labels(
            endpoint=endpoint, metric=metric, code=str(code)
        )
    return child


@web.middleware
async def _access_and_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    info = RequestInfo()
    request[REQUEST_INFO_KEY] = info
    response: web.StreamResponse
    error = ""
    try:
        response = await handler(request)
    except AdapterError as exc:
        response = status.from_error(exc)
        error = exc.message
    except web.HTTPNotFound:
        response = status.path_not_found()
    except web.HTTPMethodNotAllowed:
        response = status.method_not_allowed()
    except web.HTTPException as exc:
        if exc.status >= 400:
            response = status.http_error(exc.status, exc.reason)
        else:  # redirects and the like are answers, not failures
            response = web.Response(status=exc.status, headers=exc.headers)
    except Exception as exc:
        log.exception("request_failed_unexpectedly", path=request.path)
        response = status.internal_error(f"unexpected {type(exc).__name__} while serving the request")
        error = repr(exc)
    duration = time.perf_counter() - started
    metrics = request.app[METRICS_KEY]
    known = request.app[DEFINITIONS_KEY]
    metric_label = "" if not info.metric else (info.metric if info.metric in known else UNKNOWN_METRIC)
    _duration_child(metrics, info.endpoint, metric_label, response.status).observe(duration)
    if info.endpoint not in ("health", "metrics") or response.status >= 400:
        fields = {
            "method": request.method,
            "path": request.path,
            "endpoint": info.endpoint,
            "metric": info.metric,
            "namespace": info.namespace,
            "label_selector": request.query.get("labelSelector") if info.metric else None,
            "code": response.status,
            "cache": info.cache,
            "duration_ms": round(duration * 1000, 3),
            "user": _user_name(request),
            "error": error,
        }
        log.info("request", **{key: value for key, value in fields.items() if value not in (None, "")})
    return response


def _running(prefetcher: Prefetcher) -> Callable[[web.Application], AsyncIterator[None]]:
    """The prefetch loop runs while the app serves (started and stopped with it)."""

    async def context(_app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(prefetcher.run(), name="prefetch")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return context


def build_app(
    settings: AdapterSettings,
    *,
    prometheus: PrometheusQuerier,
    definitions: DefinitionStore,
    middlewares: Sequence[Middleware] = (),
    metrics: AdapterMetrics | None = None,
    readiness: Callable[[], Sequence[str]] | None = None,
) -> web.Application:
    """The external metrics API application (see the module docstring for the contract)."""
    metrics = metrics or AdapterMetrics(CollectorRegistry())
    stack: list[Middleware] = [_access_and_errors, *middlewares]
    app = web.Application(middlewares=cast("list[AioMiddleware]", stack))
    cache: SingleFlightCache[str, Answer] = SingleFlightCache(settings.cache.ttl_seconds)
    prefetcher = None
    if settings.prefetch.enabled:
        prefetcher = Prefetcher(
            settings.prefetch, prometheus=prometheus, definitions=definitions, metrics=metrics
        )
        app.cleanup_ctx.append(_running(prefetcher))
    app[SETTINGS_KEY] = settings
    app[DEFINITIONS_KEY] = definitions
    app[PROMETHEUS_KEY] = prometheus
    app[METRICS_KEY] = metrics
    app[READER_KEY] = MetricReader(
        prometheus=prometheus,
        definitions=definitions,
        cache=cache,
        metrics=metrics,
        max_data_age_s=settings.data_age.bound_seconds,
        prefetcher=prefetcher,
    )
    app[DOCUMENTS_KEY] = Documents(definitions)
    app[READINESS_KEY] = readiness or (lambda: [] if definitions.loaded else ["metric-definitions"])
    app.router.add_routes(routes())
    app.router.add_get(METRIC_PATH, get_external_metric)
    return app
