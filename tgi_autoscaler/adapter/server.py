"""The adapter process: wires TLS, delegated auth and the external metrics API into one HTTPS server.

Everything runs on one event loop. Background work (the front-proxy settings watch, the metric
definitions watch, the serving-certificate reload) runs as tasks under supervision: if one fails
for good the process exits non-zero and the kubelet restarts it, rather than serving with stale
security settings. SIGTERM first turns ``/readyz`` to 503 so the endpoint leaves the Service, then
stops accepting connections and gives in-flight requests ``shutdown_grace_s`` to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from tgi_autoscaler.adapter.app import build_app
from tgi_autoscaler.adapter.authn import Authenticator, KubeTokenReviewer
from tgi_autoscaler.adapter.authz import Authorizer, KubeAccessReviewer
from tgi_autoscaler.adapter.definitions import DefinitionStore, watch_configmap, watch_file
from tgi_autoscaler.adapter.own_metrics import AdapterMetrics
from tgi_autoscaler.adapter.prometheus import PrometheusClient
from tgi_autoscaler.adapter.requestheader import RequestHeaderConfig, RequestHeaderWatcher
from tgi_autoscaler.adapter.security import Middleware, security_middleware
from tgi_autoscaler.adapter.tls import ServingTLS
from tgi_autoscaler.config.metrics import AdapterSettings, MetricsConfig
from tgi_autoscaler.kube.client import ApiKubeClient, KubeClient
from tgi_autoscaler.kube.connect import load_api_client

__all__ = ["AdapterOptions", "run_adapter", "serve"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class AdapterOptions:
    """Everything the adapter process needs, validated by :mod:`.cli`."""

    settings: AdapterSettings
    bind_address: str = "0.0.0.0"  # noqa: S104 - a pod serves on its own IP
    port: int = 6443
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_sans: tuple[str, ...] = ("localhost", "127.0.0.1")
    tls_reload_interval_s: float = 10.0
    shutdown_grace_s: float = 10.0
    kubeconfig: Path | None = None
    authentication_configmap: tuple[str, str] = ("kube-system", "extension-apiserver-authentication")
    token_cache_ttl_s: float = 10.0
    allow_cache_ttl_s: float = 10.0
    deny_cache_ttl_s: float = 10.0
    always_allow_groups: tuple[str, ...] = ("system:masters",)
    insecure_skip_auth: bool = False
    metrics_configmap: tuple[str, str] | None = None
    metrics_file: Path | None = None


def _serving_tls(options: AdapterOptions) -> ServingTLS:
    if options.tls_cert_file is not None and options.tls_key_file is not None:
        tls = ServingTLS.from_files(options.tls_cert_file, options.tls_key_file)
        log.info(
            "tls_serving_certificate_loaded",
            cert_file=str(options.tls_cert_file),
            sha256=tls.key_pair.fingerprint,
        )
        return tls
    tls = ServingTLS.self_signed(options.tls_sans)
    log.warning(
        "tls_self_signed_certificate_generated",
        sans=list(options.tls_sans),
        sha256=tls.key_pair.fingerprint,
        note="changes on every start; pin a CA in the APIService caBundle with --tls-cert-file instead",
    )
    return tls


class Readiness:
    """Conditions ``/readyz`` reports; shutting down makes it fail before connections close."""

    def __init__(self) -> None:
        self._checks: dict[str, Callable[[], bool]] = {}
        self.shutting_down = False

    def add(self, name: str, check: Callable[[], bool]) -> None:
        self._checks[name] = check

    def failing(self) -> list[str]:
        failed = [name for name, check in self._checks.items() if not check()]
        return ["shutting down", *failed] if self.shutting_down else failed


async def serve(
    app: web.Application,
    tls: ServingTLS,
    *,
    host: str,
    port: int,
    stop: asyncio.Event,
    readiness: Readiness,
    background: dict[str, Coroutine[Any, Any, None]],
    shutdown_grace_s: float,
) -> int:
    """Serve ``app`` over TLS until ``stop`` is set or a background task fails; return an exit code."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_grace_s, handle_signals=False)
    await runner.setup()
    tasks: dict[asyncio.Task[Any], str] = {
        asyncio.create_task(coro, name=name): name for name, coro in background.items()
    }
    exit_code = 0
    try:
        site = web.TCPSite(runner, host, port, ssl_context=tls.listener_context, reuse_address=True)
        await site.start()
        log.info("adapter_listening", address=host, port=_bound_port(runner, port))
        stopper = asyncio.create_task(stop.wait(), name="stop")
        done, _ = await asyncio.wait({stopper, *tasks}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopper
        for task in done:
            if task is stopper:
                continue
            exc = task.exception()
            log.error("background_task_failed", task=tasks[task], error=repr(exc) if exc else "returned")
            exit_code = 1
    finally:
        readiness.shutting_down = True
        log.info("adapter_stopping", grace_s=shutdown_grace_s)
        # Stops accepting, then waits up to shutdown_timeout for in-flight handlers.
        await runner.cleanup()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        log.info("adapter_stopped", exit_code=exit_code)
    return exit_code


def _bound_port(runner: web.AppRunner, requested: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return requested


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)


def security_layer(
    options: AdapterOptions, api: KubeClient | None, tls: ServingTLS, readiness: Readiness
) -> tuple[list[Middleware], dict[str, Coroutine[Any, Any, None]]]:
    """The authn/authz middleware and the watch that keeps the front-proxy CA current."""
    if options.insecure_skip_auth or api is None:
        log.warning(
            "AUTHENTICATION_AND_AUTHORIZATION_DISABLED",
            bind_address=options.bind_address,
            note="--insecure-skip-auth: every client that can connect reads every metric; development only",
        )
        return [], {}
    watcher = RequestHeaderWatcher(api, options.authentication_configmap)

    async def trust_front_proxy_ca(config: RequestHeaderConfig) -> None:
        await tls.set_client_ca(config.client_ca_pem)

    watcher.add_listener(trust_front_proxy_ca)
    readiness.add("front-proxy settings", lambda: watcher.synced)
    authn = Authenticator(
        lambda: watcher.current, KubeTokenReviewer(api), token_cache_ttl_s=options.token_cache_ttl_s
    )
    authz = Authorizer(
        KubeAccessReviewer(api),
        allow_ttl_s=options.allow_cache_ttl_s,
        deny_ttl_s=options.deny_cache_ttl_s,
        always_allow_groups=options.always_allow_groups,
    )
    return [security_middleware(authn, authz)], {"requestheader-watch": watcher.run()}


def metric_definitions(
    options: AdapterOptions, api: KubeClient | None, metrics: AdapterMetrics
) -> tuple[DefinitionStore, dict[str, Coroutine[Any, Any, None]]]:
    """The definition store and the task that keeps it in step with its source."""
    if options.metrics_configmap is not None:
        if api is None:
            raise ValueError("--metrics-configmap needs access to the Kubernetes API")
        store = DefinitionStore(metrics=metrics)
        return store, {"definitions-watch": watch_configmap(store, api, options.metrics_configmap)}
    if options.metrics_file is not None:
        store = DefinitionStore(metrics=metrics)
        return store, {"definitions-watch": watch_file(store, options.metrics_file)}
    return DefinitionStore(MetricsConfig(), metrics=metrics), {}


async def run_adapter(options: AdapterOptions) -> int:
    """Run the adapter until SIGTERM/SIGINT; the process exit code."""
    stop = asyncio.Event()
    _install_signal_handlers(stop)
    tls = await asyncio.to_thread(_serving_tls, options)
    readiness = Readiness()
    metrics = AdapterMetrics(CollectorRegistry())
    async with contextlib.AsyncExitStack() as stack:
        api: KubeClient | None = None
        if not options.insecure_skip_auth or options.metrics_configmap is not None:
            api_client = await load_api_client(options.kubeconfig)
            stack.push_async_callback(api_client.close)
            api = ApiKubeClient(api_client)
        prometheus = PrometheusClient(options.settings.prometheus, metrics=metrics)
        await stack.enter_async_context(prometheus)
        middlewares, background = security_layer(options, api, tls, readiness)
        definitions, watchers = metric_definitions(options, api, metrics)
        background.update(watchers)
        if options.tls_cert_file is not None:
            background["tls-reload"] = tls.watch_files(options.tls_reload_interval_s)
        readiness.add("metric-definitions", lambda: definitions.loaded)
        app = build_app(
            options.settings,
            prometheus=prometheus,
            definitions=definitions,
            middlewares=middlewares,
            metrics=metrics,
            readiness=readiness.failing,
        )
        log.info(
            "adapter_starting",
            prometheus=options.settings.prometheus.url,
            definitions=_definitions_source(options),
            authentication="disabled" if options.insecure_skip_auth else "delegated",
        )
        return await serve(
            app,
            tls,
            host=options.bind_address,
            port=options.port,
            stop=stop,
            readiness=readiness,
            background=background,
            shutdown_grace_s=options.shutdown_grace_s,
        )
    raise AssertionError("unreachable")  # AsyncExitStack does not swallow exceptions


def _definitions_source(options: AdapterOptions) -> str:
    if options.metrics_configmap is not None:
        return "configmap {}/{}".format(*options.metrics_configmap)
    if options.metrics_file is not None:
        return f"file {options.metrics_file}"
    return "built-in defaults"
