"""The Prometheus client's transport failures, against real servers on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tgi_autoscaler.adapter.errors import PrometheusQueryError, PrometheusUnavailable
from tgi_autoscaler.adapter.prometheus import PrometheusClient
from tgi_autoscaler.config.metrics import PrometheusConnection
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer

pytestmark = pytest.mark.integration

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _serve(handler: Handler) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/prefix/api/v1/query", handler)
    async with TestServer(app) as server:
        yield str(server.make_url("/prefix"))


@pytest.fixture
async def recorded() -> AsyncIterator[tuple[str, list[web.Request], list[dict[str, str]]]]:
    requests: list[web.Request] = []
    forms: list[dict[str, str]] = []

    async def handler(request: web.Request) -> web.Response:
        requests.append(request)
        forms.append(dict(await request.post()))  # type: ignore[arg-type]
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": []}})

    async for url in _serve(handler):
        yield url, requests, forms


async def test_queries_carry_path_prefix_headers_time_and_a_shorter_server_timeout(
    recorded: tuple[str, list[web.Request], list[dict[str, str]]],
) -> None:
    url, requests, forms = recorded
    connection = PrometheusConnection(
        url=url, bearer_token="t0ken", headers={"X-Scope-OrgID": "team-a"}, timeout_seconds=2
    )
    async with PrometheusClient(connection) as client:
        result = await client.query("sum(up)")
    assert result.samples == ()
    (request,) = requests
    assert request.headers["Authorization"] == "Bearer t0ken"
    assert request.headers["X-Scope-OrgID"] == "team-a"
    assert forms[0]["query"] == "sum(up)"
    assert forms[0]["timeout"] == "1750ms"
    assert float(forms[0]["time"]) == result.evaluated_at


async def test_a_hung_prometheus_is_unavailable_after_the_timeout() -> None:
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        await release.wait()
        return web.json_response({})

    async for url in _serve(hang):
        async with PrometheusClient(PrometheusConnection(url=url, timeout_seconds=0.3)) as client:
            with pytest.raises(PrometheusUnavailable) as caught:
                await client.query("up")
        release.set()
    assert caught.value.reason == "timeout"
    assert "did not answer within 0.3s" in caught.value.message


async def test_nothing_listening_is_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with PrometheusClient(PrometheusConnection(url=f"http://127.0.0.1:{port}")) as client:
        with pytest.raises(PrometheusUnavailable) as caught:
            await client.query("up")
    assert caught.value.reason == "connect"


async def test_real_prometheus_rejects_a_broken_expression_as_a_query_error(
    running_prometheus: PrometheusServer,
) -> None:
    async with PrometheusClient(PrometheusConnection(url=running_prometheus.url)) as client:
        with pytest.raises(PrometheusQueryError) as caught:
            await client.query("sum(")
        assert caught.value.reason == "bad_data"
        scalar = await client.query("1 + 1")
    assert (scalar.result_type, scalar.samples[0].value) == ("scalar", "2")
