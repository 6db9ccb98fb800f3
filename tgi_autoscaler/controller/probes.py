"""The controller's HTTP endpoints: ``/metrics``, ``/healthz`` and ``/readyz``.

Liveness and readiness mean different things here: a standby replica is healthy and ready (its
caches are synced and it can take over at once) although it reconciles nothing; ``/readyz`` fails
only while the caches are still filling, ``/healthz`` only when the controller has stopped running.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ["ProbeServer"]


class ProbeServer:
    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        healthy: Callable[[], bool],
        ready: Callable[[], bool],
        host: str = "0.0.0.0",  # noqa: S104 - probes and scrapes come from the kubelet and Prometheus
        port: int = 8080,
    ) -> None:
        self._registry = registry
        self._healthy = healthy
        self._ready = ready
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.port = port

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._check(self._healthy, "controller not running"))
        app.router.add_get("/readyz", self._check(self._ready, "watch caches not synced yet"))
        return app

    async def _metrics(self, _: web.Request) -> web.Response:
        body = generate_latest(self._registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    @staticmethod
    def _check(
        probe: Callable[[], bool], failing: str
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(_: web.Request) -> web.StreamResponse:
            if probe():
                return web.Response(text="ok\n")
            return web.Response(status=503, text=f"{failing}\n")

        return handler

    async def start(self) -> None:
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        addresses = self._runner.addresses
        if addresses:
            self.port = int(addresses[0][1])  # the real port when 0 was asked for

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
