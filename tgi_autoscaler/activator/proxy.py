"""The activator's HTTP server: hold while no replica is Ready, then forward and stream unchanged.

Every path on the proxy port is forwarded to the upstream (the service's own Service) with its
method, query, headers (less the hop-by-hop ones) and body; the response's status, headers and
bytes come back as the upstream sent them, chunk by chunk, so server-sent events reach the client
token by token and compressed bodies stay compressed. A request that cannot be held (``max_held``
already wait) or waited ``max_wait_s`` gets a JSON 503 with ``Retry-After``.

The second port serves ``/metrics`` (the gauges the adapter's held-demand signal reads, see
``tgi_autoscaler.signals``) and ``/healthz``. A probe task asks the upstream's health path every
``probe_interval_s`` (four times as often while requests are held) and opens or closes the gate.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

import aiohttp
import structlog
from aiohttp import web
from multidict import CIMultiDict
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from tgi_autoscaler.activator.gate import Gate, HoldOutcome, HoldPolicy
from tgi_autoscaler.signals import ACTIVATOR_ACTIVE, ACTIVATOR_HELD, ACTIVATOR_UPSTREAM_READY

__all__ = ["ActivatorMetrics", "ActivatorOptions", "build_apps", "probe_loop", "run_activator"]

log = structlog.get_logger(__name__)

# RFC 9110 section 7.6.1 plus the ones aiohttp sets itself.
_HOP_HEADERS: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)
_HELD_BUCKETS: Final = (0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)


@dataclass(frozen=True, slots=True)
class ActivatorOptions:
    upstream: str  # base URL of the service, e.g. http://llama.llm.svc:80
    policy: HoldPolicy
    bind_address: str = "0.0.0.0"  # noqa: S104 - a proxy in a pod serves the pod network
    port: int = 8080
    metrics_port: int = 9091
    health_path: str = "/health"
    probe_interval_s: float = 1.0
    probe_timeout_s: float = 2.0
    max_body_bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        if not self.upstream.startswith(("http://", "https://")):
            raise ValueError(f"upstream: must be an http:// or https:// URL (got {self.upstream!r})")
        if not self.health_path.startswith("/"):
            raise ValueError(f"health path: must start with / (got {self.health_path!r})")
        if not self.probe_interval_s > 0:
            raise ValueError(f"probe interval: must be > 0 s (got {self.probe_interval_s})")


class ActivatorMetrics:
    """The activator's own series; the first three feed the held-demand signal."""

    def __init__(self, registry: CollectorRegistry, gate: Gate) -> None:
        self.registry = registry
        held = Gauge(ACTIVATOR_HELD, "Requests held, waiting for a Ready replica.", registry=registry)
        held.set_function(lambda: gate.held)
        ready = Gauge(
            ACTIVATOR_UPSTREAM_READY,
            "1 while the upstream answers its health path (a replica is Ready), else 0.",
            registry=registry,
        )
        ready.set_function(lambda: 1 if gate.ready else 0)
        active = Gauge(
            ACTIVATOR_ACTIVE,
            "1 while a request arrived within the idle window, else 0.",
            registry=registry,
        )
        active.set_function(lambda: 1 if gate.active else 0)
        self.requests = Counter(
            "tgi_autoscaler_activator_requests",
            "Requests by outcome: forwarded, rejected_full, rejected_timeout, upstream_error.",
            ("outcome",),
            registry=registry,
        )
        for outcome in ("forwarded", "rejected_full", "rejected_timeout", "upstream_error"):
            self.requests.labels(outcome=outcome)
        self.held_seconds = Histogram(
            "tgi_autoscaler_activator_held_seconds",
            "Time requests were held before being forwarded or refused.",
            buckets=_HELD_BUCKETS,
            registry=registry,
        )


def _unavailable(why: str, retry_after_s: int) -> web.Response:
    return web.json_response(
        {"error": why, "error_type": "unavailable"},
        status=503,
        headers={"Retry-After": str(retry_after_s)},
    )


class _Proxy:
    def __init__(
        self, options: ActivatorOptions, gate: Gate, metrics: ActivatorMetrics, session: aiohttp.ClientSession
    ) -> None:
        self._options = options
        self._gate = gate
        self._metrics = metrics
        self._session = session
        self.wake = asyncio.Event()  # set when a request finds the gate closed: probe now

    async def handle(self, request: web.Request) -> web.StreamResponse:
        gate, policy = self._gate, self._gate.policy
        gate.arrived()
        body = await request.read()
        headers = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS)
        started = time.monotonic()
        deadline = gate.deadline()
        while True:
            if not gate.ready:
                self.wake.set()
            outcome = await gate.hold(deadline)
            if outcome is not HoldOutcome.READY:
                self._metrics.held_seconds.observe(time.monotonic() - started)
                self._metrics.requests.labels(outcome=f"rejected_{outcome.value}").inc()
                log.info("activator_rejected", reason=outcome.value, path=request.path, held=gate.held)
                what = (
                    f"{policy.max_held} requests already wait for a replica"
                    if outcome is HoldOutcome.FULL
                    else f"no replica became ready within {policy.max_wait_s:g} s"
                )
                return _unavailable(what, policy.retry_after_s)
            try:
                upstream = await self._session.request(
                    request.method,
                    self._options.upstream + request.path_qs,
                    data=body,
                    headers=headers,
                    allow_redirects=False,
                )
            except aiohttp.ClientConnectionError as exc:
                # The replica the gate saw went away before this request reached it: wait again.
                log.info("activator_upstream_unreachable", error=str(exc), path=request.path)
                gate.set_ready(False)
                continue
            self._metrics.held_seconds.observe(time.monotonic() - started)
            async with upstream:
                return await self._relay(request, upstream)

    async def _relay(self, request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
        headers = CIMultiDict((k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS)
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
        try:
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        except (ConnectionResetError, aiohttp.ClientPayloadError) as exc:
            # The client left, or the replica died mid-stream; either way the status is sent.
            self._metrics.requests.labels(outcome="upstream_error").inc()
            log.info("activator_stream_broken", error=str(exc), path=request.path)
            return response
        self._metrics.requests.labels(outcome="forwarded").inc()
        return response


async def _probe_once(session: aiohttp.ClientSession, options: ActivatorOptions) -> bool:
    try:
        timeout = aiohttp.ClientTimeout(total=options.probe_timeout_s)
        async with session.get(options.upstream + options.health_path, timeout=timeout) as resp:
            await resp.read()
            return resp.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def probe_loop(
    session: aiohttp.ClientSession, options: ActivatorOptions, gate: Gate, wake: asyncio.Event
) -> None:
    """Open the gate while the upstream answers its health path; re-check sooner while holding."""
    while True:
        wake.clear()  # before probing: a request arriving meanwhile triggers the next probe
        ready = await _probe_once(session, options)
        if ready != gate.ready:
            log.info("activator_upstream_ready" if ready else "activator_upstream_gone", held=gate.held)
        gate.set_ready(ready)
        interval = options.probe_interval_s / (4 if gate.held else 1)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=interval)


@contextlib.asynccontextmanager
async def build_apps(
    options: ActivatorOptions, registry: CollectorRegistry | None = None
) -> AsyncIterator[tuple[web.Application, web.Application, Gate]]:
    """The proxy app, the metrics app and the gate, with the probe running while the block runs."""
    gate = Gate(options.policy)
    metrics = ActivatorMetrics(registry or CollectorRegistry(), gate)
    # Bodies pass through as sent: no decompression, no connection limit below the held bound.
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None)
    ) as session:
        proxy = _Proxy(options, gate, metrics, session)
        app = web.Application(client_max_size=options.max_body_bytes)
        app.router.add_route("*", "/{tail:.*}", proxy.handle)

        async def metrics_handler(_: web.Request) -> web.Response:
            return web.Response(
                body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
            )

        async def healthz(_: web.Request) -> web.Response:
            return web.Response(text="ok")

        side = web.Application()
        side.router.add_get("/metrics", metrics_handler)
        side.router.add_get("/healthz", healthz)
        probe = asyncio.create_task(probe_loop(session, options, gate, proxy.wake), name="activator-probe")
        try:
            yield app, side, gate
        finally:
            probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probe


async def run_activator(options: ActivatorOptions, *, shutdown_grace_s: float = 10.0) -> int:
    """Serve until SIGTERM/SIGINT; held and in-flight requests get ``shutdown_grace_s`` to finish."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with build_apps(options) as (app, side, _gate):
        runners = [web.AppRunner(app, shutdown_timeout=shutdown_grace_s), web.AppRunner(side)]
        for runner in runners:
            await runner.setup()
        await web.TCPSite(runners[0], options.bind_address, options.port).start()
        await web.TCPSite(runners[1], options.bind_address, options.metrics_port).start()
        log.info(
            "activator_started",
            upstream=options.upstream,
            port=options.port,
            metrics_port=options.metrics_port,
            max_held=options.policy.max_held,
            max_wait_s=options.policy.max_wait_s,
            idle_after_s=options.policy.idle_after_s,
        )
        await stop.wait()
        log.info("activator_stopping")
        for runner in reversed(runners):
            await runner.cleanup()
    return 0
