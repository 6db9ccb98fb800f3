"""The adapter's serving loop on a real TLS socket: graceful stop, supervision of background tasks.

``serve`` is exercised with a small application whose handler waits for the test, so "in flight"
is a fact rather than a race; the client is a real HTTPS client trusting a generated certificate.
"""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import pytest
from aiohttp import web

from tgi_autoscaler.adapter.server import Readiness, serve
from tgi_autoscaler.adapter.tls import ServingTLS
from tgi_autoscaler_dev.localstack.process import free_port, wait_for

pytestmark = pytest.mark.integration


def _client_context(tls: ServingTLS) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=tls.key_pair.cert_pem.decode())


class SlowApp:
    """``/slow`` answers only when the test says so; ``/readyz`` reports the server's readiness."""

    def __init__(self, readiness: Readiness) -> None:
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_get("/slow", self._slow)
        self.app.router.add_get("/readyz", self._ready)
        self._readiness = readiness

    async def _slow(self, _request: web.Request) -> web.Response:
        self.entered.set()
        await self.release.wait()
        return web.Response(text="finished")

    async def _ready(self, _request: web.Request) -> web.Response:
        failing = self._readiness.failing()
        return web.Response(status=503 if failing else 200, text=",".join(failing) or "ok")


async def _idle() -> None:
    await asyncio.Event().wait()


async def test_a_stop_lets_the_in_flight_request_finish_and_closes_the_listener() -> None:
    tls = ServingTLS.self_signed(["localhost"])
    readiness = Readiness()
    slow = SlowApp(readiness)
    stop = asyncio.Event()
    port = free_port()
    server = asyncio.create_task(
        serve(
            slow.app,
            tls,
            host="127.0.0.1",
            port=port,
            stop=stop,
            readiness=readiness,
            background={"idle": _idle()},
            shutdown_grace_s=10,
        )
    )
    url = f"https://localhost:{port}"
    async with aiohttp.ClientSession() as session:

        async def ready() -> bool:
            async with session.get(f"{url}/readyz", ssl=_client_context(tls)) as resp:
                return resp.status == 200

        await wait_for(ready, timeout=10, what="the server to listen")
        in_flight = asyncio.create_task(session.get(f"{url}/slow", ssl=_client_context(tls)))
        await asyncio.wait_for(slow.entered.wait(), timeout=10)

        stop.set()

        async def not_ready() -> bool:
            return readiness.shutting_down

        # Readiness turns off while the request is still being served.
        await wait_for(not_ready, timeout=5, what="readiness to turn off")
        slow.release.set()
        response = await in_flight
        assert response.status == 200
        assert await response.text() == "finished"
        response.release()
        assert await asyncio.wait_for(server, timeout=15) == 0
        with pytest.raises(aiohttp.ClientConnectorError):
            await session.get(f"{url}/readyz", ssl=_client_context(tls))


async def test_a_background_task_that_dies_stops_the_server_with_a_failure_code() -> None:
    tls = ServingTLS.self_signed(["localhost"])
    readiness = Readiness()

    async def broken_watch() -> None:
        raise RuntimeError("watch gave up")

    code = await asyncio.wait_for(
        serve(
            SlowApp(readiness).app,
            tls,
            host="127.0.0.1",
            port=free_port(),
            stop=asyncio.Event(),
            readiness=readiness,
            background={"idle": _idle(), "broken": broken_watch()},
            shutdown_grace_s=1,
        ),
        timeout=15,
    )
    assert code == 1
    assert readiness.failing() == ["shutting down"]
