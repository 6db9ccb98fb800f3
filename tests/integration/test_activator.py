"""The activator over real HTTP in front of the TGI simulator's fleet (its Service stand-in).

The fleet starts at zero replicas, whose front answers 503, as a Service without ready endpoints
does; the activator must hold, count, bound and then release the requests unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.support.polling import eventually
from tgi_autoscaler.activator.gate import Gate, HoldPolicy
from tgi_autoscaler.activator.proxy import ActivatorOptions, build_apps
from tgi_autoscaler.config.metrics import MetricDefinition
from tgi_autoscaler.engines import ENGINES, EngineKind
from tgi_autoscaler.signals import DemandSignal
from tgi_autoscaler_dev.localstack.process import free_port
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer
from tgi_autoscaler_dev.sim import Fleet, ReplicaConfig
from tgi_autoscaler_dev.sim.filesd import remove_file_sd, write_file_sd
from tgi_autoscaler_dev.sim.pods import target_group

pytestmark = pytest.mark.integration

FAST = ReplicaConfig(max_batch_size=8, token_rate=200.0, prefill_time_s=0.001)


@dataclass
class Running:
    url: str
    metrics_url: str
    gate: Gate


@contextlib.asynccontextmanager
async def activator(upstream: str, policy: HoldPolicy) -> AsyncIterator[Running]:
    options = ActivatorOptions(
        upstream=upstream,
        policy=policy,
        bind_address="127.0.0.1",
        port=free_port(),
        metrics_port=free_port(),
        probe_interval_s=0.2,
    )
    async with build_apps(options) as (app, side, gate):
        runners = [web.AppRunner(app), web.AppRunner(side)]
        for runner in runners:
            await runner.setup()
        await web.TCPSite(runners[0], "127.0.0.1", options.port).start()
        await web.TCPSite(runners[1], "127.0.0.1", options.metrics_port).start()
        try:
            yield Running(
                f"http://127.0.0.1:{options.port}", f"http://127.0.0.1:{options.metrics_port}", gate
            )
        finally:
            for runner in runners:
                await runner.cleanup()


async def gauges(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with session.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            out[series] = float(value)
    return out


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def generate(
    session: aiohttp.ClientSession, url: str, tokens: int = 4
) -> tuple[int, dict[str, str], str]:
    body = {"inputs": "hello", "parameters": {"max_new_tokens": tokens}}
    async with session.post(f"{url}/generate", json=body) as resp:
        return resp.status, dict(resp.headers), await resp.text()


async def test_a_burst_at_zero_is_held_counted_bounded_then_answered(session: aiohttp.ClientSession) -> None:
    policy = HoldPolicy(max_held=5, max_wait_s=60, idle_after_s=30, retry_after_s=7)
    async with (
        Fleet("act", namespace="act", replicas=0, config=FAST) as fleet,
        activator(fleet.url, policy) as act,
    ):
        before = await gauges(session, act.metrics_url)
        assert before["tgi_autoscaler_activator_upstream_ready"] == 0
        assert before["tgi_autoscaler_activator_active"] == 0
        held = [asyncio.create_task(generate(session, act.url)) for _ in range(5)]

        async def five_held() -> bool:
            return (await gauges(session, act.metrics_url))["tgi_autoscaler_activator_held_requests"] == 5

        await eventually(five_held, timeout=10, what="five requests held")
        # Beyond the bound: refused at once, with the time to come back.
        status, headers, text = await generate(session, act.url)
        assert status == 503
        assert headers["Retry-After"] == "7"
        assert "5 requests already wait" in json.loads(text)["error"]
        assert (await gauges(session, act.metrics_url))["tgi_autoscaler_activator_active"] == 1

        await fleet.scale_to(1)
        answers = await asyncio.wait_for(asyncio.gather(*held), timeout=30)
        assert [a[0] for a in answers] == [200] * 5
        assert all(json.loads(a[2])["generated_text"] for a in answers)
        after = await gauges(session, act.metrics_url)
        assert after["tgi_autoscaler_activator_held_requests"] == 0
        assert after["tgi_autoscaler_activator_upstream_ready"] == 1
        assert after['tgi_autoscaler_activator_requests_total{outcome="forwarded"}'] == 5
        assert after['tgi_autoscaler_activator_requests_total{outcome="rejected_full"}'] == 1


async def test_a_request_waiting_longer_than_max_wait_gets_503_with_retry_after(
    session: aiohttp.ClientSession,
) -> None:
    policy = HoldPolicy(max_held=5, max_wait_s=0.5, idle_after_s=30, retry_after_s=3)
    async with (
        Fleet("act", namespace="act", replicas=0, config=FAST) as fleet,
        activator(fleet.url, policy) as act,
    ):
        status, headers, text = await generate(session, act.url)
        assert status == 503
        assert headers["Retry-After"] == "3"
        assert "within 0.5 s" in json.loads(text)["error"]
        metrics = await gauges(session, act.metrics_url)
        assert metrics['tgi_autoscaler_activator_requests_total{outcome="rejected_timeout"}'] == 1
        assert metrics["tgi_autoscaler_activator_held_requests"] == 0


async def test_server_sent_events_pass_through_unchanged(session: aiohttp.ClientSession) -> None:
    policy = HoldPolicy(max_held=5, max_wait_s=30, idle_after_s=30)
    async with (
        Fleet("act", namespace="act", replicas=1, config=FAST) as fleet,
        activator(fleet.url, policy) as act,
    ):
        await eventually(lambda: act.gate.ready, timeout=10, what="the activator to see the replica")
        body: dict[str, Any] = {"inputs": "Tell me", "parameters": {"max_new_tokens": 8, "seed": 1}}
        chunks: list[bytes] = []
        async with session.post(f"{act.url}/generate_stream", json=body) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            async for chunk in resp.content.iter_any():
                chunks.append(chunk)
        via_activator = b"".join(chunks).decode()
        async with session.post(f"{fleet.url}/generate_stream", json=body) as resp:
            direct = await resp.text()
        events = [json.loads(line[5:]) for line in via_activator.splitlines() if line.startswith("data:")]
        assert [e["index"] for e in events] == list(range(1, 9))
        # Same shape as the server's own stream: the same lines, token by token.
        assert len(via_activator.splitlines()) == len(direct.splitlines())
        assert len(chunks) > 1, "the stream was buffered into one chunk"


async def test_a_replica_going_away_closes_the_gate_and_requests_wait_again(
    session: aiohttp.ClientSession,
) -> None:
    policy = HoldPolicy(max_held=5, max_wait_s=60, idle_after_s=30)
    async with (
        Fleet("act", namespace="act", replicas=1, config=FAST) as fleet,
        activator(fleet.url, policy) as act,
    ):
        await eventually(lambda: act.gate.ready, timeout=10, what="the activator to see the replica")
        await fleet.scale_to(0, wait_drained=True)
        await eventually(lambda: not act.gate.ready, timeout=10, what="the activator to see zero replicas")
        waiting = asyncio.create_task(generate(session, act.url))
        await eventually(lambda: act.gate.held == 1, timeout=10, what="the request held")
        await fleet.scale_to(1)
        status, _, _ = await asyncio.wait_for(waiting, timeout=30)
        assert status == 200


async def test_the_held_demand_query_on_prometheus_zero_at_rest_held_when_holding_none_without_activator(
    running_prometheus: PrometheusServer, session: aiohttp.ClientSession
) -> None:
    prom = running_prometheus
    namespace, service = "act-prom", "held"
    query = (
        MetricDefinition(
            name="held",
            query=DemandSignal(rate_window_s=10, drain_s=10).promql_with_held(
                ENGINES[EngineKind.TGI].counters
            ),
        )
        .builder.build(namespace=namespace, selector=f"app.kubernetes.io/instance={service}")
        .promql
    )

    async def value() -> float | None:
        result = await prom.query(query)
        return float(result[0]["value"][1]) if result else None

    # Without the activator's series the query has no sample: an error, never a zero.
    assert await value() is None
    policy = HoldPolicy(max_held=5, max_wait_s=60, idle_after_s=600)
    sd = prom.file_sd_dir / f"{namespace}_{service}_activator.json"
    async with (
        Fleet(service, namespace=namespace, replicas=0, config=FAST, file_sd_dir=prom.file_sd_dir) as fleet,
        activator(fleet.url, policy) as act,
    ):
        labels = {"namespace": namespace, "app_kubernetes_io_instance": service, "pod": "held-activator"}
        write_file_sd(sd, [target_group(act.metrics_url.removeprefix("http://"), labels)])
        try:
            await eventually(value, lambda v: v == 0, timeout=30, what="zero at rest, no replica")
            held = [asyncio.create_task(generate(session, act.url)) for _ in range(2)]
            # Two held over a 10 s drain, plus the keep-alive of a request within the idle window.
            await eventually(
                value, lambda v: v is not None and abs(v - 0.201) < 1e-9, timeout=30, what="held"
            )
            await fleet.scale_to(1)
            assert [r[0] for r in await asyncio.wait_for(asyncio.gather(*held), timeout=30)] == [200, 200]
            # Replicas Ready: the engine's own demand counts (its arrivals), the keep-alive stays.
            await eventually(value, lambda v: v is not None and v > 0.001, timeout=30, what="engine demand")
        finally:
            remove_file_sd(sd)
