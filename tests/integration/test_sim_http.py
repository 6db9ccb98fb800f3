"""The simulated replicas over real HTTP: TGI's API, streaming, overload, draining, the front, load."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.polling import eventually
from tgi_autoscaler_dev.sim import Constant, Fleet, LoadSpec, ReplicaConfig, ReplicaServer, run_load
from tgi_autoscaler_dev.sim.loadgen import ScheduledRequest
from tgi_autoscaler_dev.sim.server import MODEL_HEADER, ServedModel

pytestmark = pytest.mark.integration

FAST = ReplicaConfig(max_batch_size=8, token_rate=500.0, prefill_time_s=0.001)


async def scrape(session: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """A replica's /metrics as ``{'series as exposed': value}``, histogram buckets left out.

    The text is read as exposed on purpose: prometheus_client's parser would add ``_total`` to
    counter samples and hide what the server really emits.
    """
    async with session.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line or "_bucket{" in line:
            continue
        series, _, value = line.rpartition(" ")
        out[series] = float(value)
    return out


def sse_events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[len("data:") :]) for line in text.splitlines() if line.startswith("data:")]


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def fleet() -> AsyncIterator[Fleet]:
    async with Fleet("http-sim", namespace="sim-http", replicas=2, config=FAST) as running:
        yield running


async def test_generate_stream_sends_one_sse_event_per_token_through_the_front(
    fleet: Fleet, client: aiohttp.ClientSession
) -> None:
    body = {"inputs": "Tell me", "parameters": {"max_new_tokens": 6, "details": True}}
    async with client.post(f"{fleet.url}/generate_stream", json=body) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        events = sse_events(await resp.text())
    assert [e["index"] for e in events] == [1, 2, 3, 4, 5, 6]
    assert all(e["generated_text"] is None and e["details"] is None for e in events[:-1])
    last = events[-1]
    assert last["generated_text"] == "".join(e["token"]["text"] for e in events)
    assert last["details"]["generated_tokens"] == 6
    assert last["details"]["finish_reason"] == "length"


async def test_compat_route_streams_or_returns_a_list(fleet: Fleet, client: aiohttp.ClientSession) -> None:
    body: dict[str, Any] = {"inputs": "Hi", "parameters": {"max_new_tokens": 3}}
    async with client.post(f"{fleet.url}/", json=body) as resp:
        assert resp.status == 200
        listed = await resp.json()
    assert isinstance(listed, list)
    assert set(listed[0]) == {"generated_text"}
    async with client.post(f"{fleet.url}/", json={**body, "stream": True}) as resp:
        assert len(sse_events(await resp.text())) == 3


async def test_generate_returns_text_details_and_tgi_timing_headers(
    fleet: Fleet, client: aiohttp.ClientSession
) -> None:
    body = {"inputs": "Hello", "parameters": {"max_new_tokens": 4, "details": True, "seed": 3}}
    async with client.post(f"{fleet.url}/generate", json=body) as resp:
        assert resp.status == 200
        reply = await resp.json()
        assert resp.headers["x-generated-tokens"] == "4"
        assert resp.headers["x-prompt-tokens"] == "2"
        assert "x-queue-time" in resp.headers
    assert reply["details"]["seed"] == 3
    assert len(reply["details"]["tokens"]) == 4


async def test_validation_errors_are_422_with_tgi_error_body(
    fleet: Fleet, client: aiohttp.ClientSession
) -> None:
    body = {"inputs": "Hello", "parameters": {"max_new_tokens": 0}}
    async with client.post(f"{fleet.url}/generate", json=body) as resp:
        assert resp.status == 422
        assert await resp.json() == {
            "error": "Input validation error: `max_new_tokens` must be strictly positive",
            "error_type": "validation",
        }
    async with client.post(f"{fleet.url}/generate", json={"prompt": "x"}) as resp:
        assert resp.status == 422
        assert "missing field `inputs`" in (await resp.json())["error"]


async def test_info_and_health_describe_a_ready_tgi(fleet: Fleet, client: aiohttp.ClientSession) -> None:
    pod = fleet.replicas[0]
    async with client.get(f"{pod.url}/health") as resp:
        assert resp.status == 200
    async with client.get(f"{pod.url}/info") as resp:
        info = await resp.json()
    assert info["max_concurrent_requests"] == FAST.max_concurrent_requests
    assert info["max_total_tokens"] == FAST.max_total_tokens
    assert info["router"] == "text-generation-router"
    assert {"model_id", "model_sha", "version", "sha", "max_input_tokens"} <= set(info)


async def test_load_beyond_capacity_queues_requests(client: aiohttp.ClientSession) -> None:
    config = ReplicaConfig(max_batch_size=2, token_rate=40.0, max_concurrent_requests=500)
    async with Fleet("busy-sim", namespace="sim-http", replicas=1, config=config) as fleet:
        (pod,) = fleet.replicas
        offered = 4 * config.capacity_rps(10)
        spec = LoadSpec(Constant(offered), duration_s=3.0, max_requests=200, max_new_tokens=10)
        load = asyncio.create_task(run_load(fleet.url, spec))
        metrics = await eventually(lambda: scrape(client, pod.url), lambda m: m["tgi_queue_size"] > 0)
        assert metrics["tgi_batch_current_size"] == config.max_batch_size
        report = await load
        assert report.sent == report.planned > 0
        assert report.ok == report.sent
        after = await eventually(lambda: scrape(client, pod.url), lambda m: m["tgi_queue_size"] == 0)
        assert after["tgi_request_success"] == report.ok
        assert after["tgi_request_count"] == after["tgi_request_success"]


async def test_requests_beyond_max_concurrent_get_429_and_are_counted(
    client: aiohttp.ClientSession,
) -> None:
    config = ReplicaConfig(max_batch_size=1, token_rate=2.0, max_concurrent_requests=2)
    server = ReplicaServer(config, name="overloaded")
    await server.start()
    try:
        body = {"inputs": "x", "parameters": {"max_new_tokens": 200}}
        holders = [asyncio.create_task(client.post(f"{server.url}/generate", json=body)) for _ in range(2)]
        await eventually(lambda: server.snapshot().in_flight, lambda n: n == 2)
        async with client.post(f"{server.url}/generate", json=body) as resp:
            assert resp.status == 429
            assert await resp.json() == {"error": "Model is overloaded", "error_type": "overloaded"}
        async with client.post(f"{server.url}/generate_stream", json=body) as resp:
            assert sse_events(await resp.text()) == [
                {"error": "Model is overloaded", "error_type": "overloaded"}
            ]
        for task in holders:
            task.cancel()
        await asyncio.gather(*holders, return_exceptions=True)
        # Clients that went away are dropped from the batch, freeing their permits.
        metrics = await eventually(
            lambda: scrape(client, server.url),
            lambda m: m.get('tgi_request_failure{err="dropped"}') == 2.0,
        )
        assert metrics['tgi_request_failure{err="overloaded"}'] == 2.0
        assert metrics["tgi_request_count"] == 4.0
        assert metrics["tgi_request_count"] == metrics["tgi_request_success"] + sum(
            v for k, v in metrics.items() if k.startswith("tgi_request_failure{")
        )
    finally:
        await server.stop()


async def test_a_removed_replica_finishes_in_flight_work_and_refuses_new_work(
    client: aiohttp.ClientSession,
) -> None:
    config = ReplicaConfig(max_batch_size=4, token_rate=20.0)
    async with Fleet("drain-sim", namespace="sim-http", replicas=2, config=config) as fleet:
        newest = fleet.replicas[-1]
        body = {"inputs": "finish me", "parameters": {"max_new_tokens": 40}}
        in_flight = asyncio.create_task(client.post(f"{newest.url}/generate", json=body))
        await eventually(lambda: newest.snapshot().in_flight, lambda n: n == 1)
        await fleet.scale_to(1)
        assert newest.name not in {p.name for p in fleet.replicas}
        async with client.get(f"{newest.url}/health") as resp:
            assert resp.status == 503
        async with client.post(f"{newest.url}/generate", json=body) as resp:
            assert resp.status == 503
        resp = await in_flight
        assert resp.status == 200
        assert (await resp.json())["generated_text"]
        resp.release()
        # Everything sent to the front now lands on the remaining replica.
        for _ in range(3):
            async with client.post(f"{fleet.url}/generate", json=body) as front:
                assert front.status == 200


async def test_the_front_answers_503_when_no_replica_is_ready(client: aiohttp.ClientSession) -> None:
    async with Fleet("empty-sim", namespace="sim-http", replicas=0, config=FAST) as fleet:
        async with client.post(f"{fleet.url}/generate", json={"inputs": "x"}) as resp:
            assert resp.status == 503
            assert (await resp.json())["error_type"] == "unavailable"
        await fleet.scale_to(1)
        async with client.post(f"{fleet.url}/generate", json={"inputs": "x"}) as resp:
            assert resp.status == 200


async def test_the_load_generator_stops_by_itself_and_accounts_for_every_request(fleet: Fleet) -> None:
    spec = LoadSpec(Constant(50.0), duration_s=1.0, max_requests=30, max_new_tokens=5, stream=True)
    report = await run_load(fleet.url, spec)
    assert report.planned == 30
    assert report.sent == report.ok + report.rejected + report.failed == 30
    assert report.ok == 30
    assert len(report.latencies_s) == 30
    assert report.in_flight == 0


async def test_a_schedule_is_sent_at_its_times_with_its_token_counts_and_times_first_tokens(
    fleet: Fleet,
) -> None:
    schedule = tuple(ScheduledRequest(0.05 * i, 2 + i % 3) for i in range(12))
    spec = LoadSpec(Constant(0.0), duration_s=1.0, max_requests=100, schedule=schedule, stream=True)
    report = await run_load(fleet.url, spec)
    assert report.planned == report.ok == len(report.requests) == 12
    assert [r.due_s for r in report.requests] == [s.at_s for s in schedule]
    assert [r.max_new_tokens for r in report.requests] == [s.max_new_tokens for s in schedule]
    for record in report.requests:
        assert record.outcome == "ok"
        assert 0 <= record.lag_s < 0.5
        # FAST: a 1 ms prefill gives the first token, then 2 ms per decode step.
        assert 0 < record.ttft_s < record.done_s - record.sent_s


async def test_a_starting_replica_is_discoverable_but_has_no_series_and_no_traffic_until_it_serves(
    client: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async with Fleet(
        "loading", namespace="sim-http", replicas=1, config=FAST, file_sd_dir=tmp_path, start_delay_s=1.0
    ) as fleet:
        await fleet.scale_to(2)
        new = fleet.replicas[1]
        assert fleet.file_sd_path is not None
        groups = json.loads(await asyncio.to_thread(fleet.file_sd_path.read_text))
        assert [g["targets"] for g in groups] == [[p.address] for p in fleet.replicas]
        assert (fleet.size, fleet.serving) == (2, 1)
        async with client.get(f"{new.url}/metrics") as resp:
            assert resp.status == 503
        async with client.post(f"{new.url}/generate", json={"inputs": "x"}) as resp:
            assert resp.status == 503
            assert (await resp.json())["error"] == "Model is loading"
        await eventually(lambda: fleet.serving, lambda n: n == 2, timeout=5, what="the new replica to serve")
        async with client.get(f"{new.url}/metrics") as resp:
            assert resp.status == 200
            assert "tgi_queue_size" in await resp.text()


async def test_every_response_names_the_model_in_a_header_and_info_agrees(
    client: aiohttp.ClientSession,
) -> None:
    server = ReplicaServer(FAST, name="named", served=ServedModel(model_id="org/model-b"))
    await server.start()
    try:
        body = {"inputs": "x", "parameters": {"max_new_tokens": 3}}
        async with client.get(f"{server.url}/info") as resp:
            assert (await resp.json())["model_id"] == "org/model-b"
        for path in ("/generate", "/generate_stream", "/health"):
            method = client.get if path == "/health" else client.post
            async with method(f"{server.url}{path}", json=body) as resp:
                assert resp.status == 200, path
                assert resp.headers[MODEL_HEADER] == "org/model-b", path
    finally:
        await server.stop()
