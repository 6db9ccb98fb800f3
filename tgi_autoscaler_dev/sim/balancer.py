"""A small in-process HTTP front that spreads requests over ready replicas, like a Service would.

The load generator and the demo target one address (``Fleet.url``) while replicas come and go.
Each request goes to the next ready replica (round-robin, or uniformly at random like kube-proxy's
iptables mode); the response, including a server-sent-event stream, is relayed as it arrives. A
replica that refuses the connection is skipped (it is being removed); once no replica is ready the
front answers 503.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Sequence
from typing import Literal

import aiohttp
import structlog
from aiohttp import web
from multidict import CIMultiDict

__all__ = ["Balancer", "Strategy"]

log = structlog.get_logger(__name__)

Strategy = Literal["round_robin", "random"]

# Headers that describe one hop and must not be relayed (RFC 9110 section 7.6.1), plus the ones
# aiohttp recomputes for the relayed body.
_HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "content-encoding",
        "host",
    }
)


class Balancer:
    """HTTP front on 127.0.0.1 relaying to ``backends()`` (base URLs of ready replicas)."""

    def __init__(
        self,
        backends: Callable[[], Sequence[str]],
        *,
        strategy: Strategy = "round_robin",
        seed: int | None = None,
        port: int = 0,
    ) -> None:
        if strategy not in ("round_robin", "random"):
            raise ValueError(f"strategy: must be round_robin or random, got {strategy!r}")
        self._backends = backends
        self._strategy = strategy
        self._random = random.Random(seed)
        self._counter = itertools.count()
        self._requested_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("balancer is not started")
        return f"http://127.0.0.1:{self._port}"

    async def start(self) -> None:
        if self._runner is not None:
            return
        # No pool limit: the front must not become the bottleneck it is supposed to hide.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            auto_decompress=False,
        )
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._relay)
        runner = web.AppRunner(
            app, access_log=None, handle_signals=False, handler_cancellation=True, shutdown_timeout=1.0
        )
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self._requested_port)
        await site.start()
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _order(self, backends: Sequence[str]) -> list[str]:
        if self._strategy == "random":
            first = self._random.randrange(len(backends))
        else:
            first = next(self._counter) % len(backends)
        return [backends[(first + i) % len(backends)] for i in range(len(backends))]

    async def _copy(self, request: web.Request, upstream: aiohttp.ClientResponse) -> web.StreamResponse:
        headers = CIMultiDict((k, v) for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS)
        if upstream.content_type != "text/event-stream":
            body = await upstream.read()
            return web.Response(status=upstream.status, reason=upstream.reason, body=body, headers=headers)
        # Server-sent events are relayed chunk by chunk, so tokens reach the client as they come.
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=headers)
        try:
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        except ConnectionResetError:
            log.debug("balancer_client_gone", path=request.path)
        return response

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        backends = list(self._backends())
        if not backends:
            return web.json_response(
                {"error": "no ready replica behind the service", "error_type": "unavailable"},
                status=503,
            )
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        last_error: Exception | None = None
        for backend in self._order(backends):
            try:
                upstream = await self._session.request(
                    request.method, backend + request.path_qs, data=body, headers=headers
                )
            except aiohttp.ClientConnectionError as exc:
                last_error = exc
                continue
            async with upstream:
                return await self._copy(request, upstream)
        log.warning("balancer_no_backend_reachable", tried=len(backends), error=str(last_error))
        return web.json_response(
            {"error": f"no replica reachable: {last_error}", "error_type": "unavailable"}, status=502
        )
