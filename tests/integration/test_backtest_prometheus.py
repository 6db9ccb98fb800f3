"""The backtest's metrics pipeline is Prometheus' arithmetic: on a simulated TGI fleet scraped every
second by a real Prometheus, ``backtest.scrape`` computes from the raw samples exactly what
Prometheus answers for ``rate()`` and for the adapter's default demand query."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import pytest

from tgi_autoscaler.backtest.scrape import Scrapes, extrapolated_rate
from tgi_autoscaler.config.metrics import DEFAULT_METRIC_DEFINITIONS
from tgi_autoscaler.servicemodel import ServiceCounters
from tgi_autoscaler.signals import DEFAULT_DEMAND
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer
from tgi_autoscaler_dev.sim.fleet import Fleet
from tgi_autoscaler_dev.sim.loadgen import LoadGenerator, LoadSpec
from tgi_autoscaler_dev.sim.model import ReplicaConfig
from tgi_autoscaler_dev.sim.traces import Constant

pytestmark = pytest.mark.integration

SERVICE = "bt-llm"
WINDOW_S = DEFAULT_DEMAND.rate_window_s
# About 5.4 requests/s for the two replicas under 8 requests/s: the queues grow, so the backlog term
# of the demand signal is not zero.
SLOW = ReplicaConfig(max_batch_size=2, token_rate=10.0)

Samples = dict[str, list[tuple[int, float]]]  # pod -> (timestamp in ms, value)


async def query_at(prometheus: PrometheusServer, expr: str, at_ms: int) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{prometheus.url}/api/v1/query",
            params={"query": expr, "time": f"{at_ms // 1000}.{at_ms % 1000:03d}"},
            timeout=aiohttp.ClientTimeout(total=30),
        ) as resp,
    ):
        body = await resp.json()
    assert body.get("status") == "success", (expr, body.get("error"))
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def raw_samples(prometheus: PrometheusServer, series: str, at_ms: int) -> Samples:
    """Every sample of ``series`` in the rate window ending at ``at_ms``, per pod."""
    result = await query_at(prometheus, f"{series}[{WINDOW_S}s]", at_ms)
    return {
        r["metric"]["pod"]: [(round(float(ts) * 1000), float(value)) for ts, value in r["values"]]
        for r in result
    }


def seconds(ms: int, origin_ms: int) -> float:
    # Relative to the evaluation time: small numbers, so no precision is lost to the Unix epoch.
    return (ms - origin_ms) / 1000


def rel_equal(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1e-12)


async def test_backtest_rate_and_demand_equal_prometheus_on_a_scraped_fleet(
    running_prometheus: PrometheusServer,
) -> None:
    prom = running_prometheus
    namespace = f"bt-{uuid.uuid4().hex[:6]}"
    selector = f'namespace="{namespace}",app_kubernetes_io_instance="{SERVICE}"'
    counter, queue = f"tgi_request_count{{{selector}}}", f"tgi_queue_size{{{selector}}}"
    (demand,) = [d for d in DEFAULT_METRIC_DEFINITIONS if d.name == "tgi_request_demand"]
    demand_promql = demand.builder.build(
        namespace=namespace, selector=f"app.kubernetes.io/instance={SERVICE}"
    ).promql
    assert "rate(tgi_request_count{" in demand_promql

    async with Fleet(
        SERVICE, namespace=namespace, replicas=2, config=SLOW, file_sd_dir=prom.file_sd_dir
    ) as fleet:
        spec = LoadSpec(
            trace=Constant(rate=8.0), duration_s=40.0, max_requests=400, max_new_tokens=8, drain_timeout_s=0
        )
        # Start the load once both counters are scraped (at 0): the series begin before the first
        # request, which is what Prometheus' extrapolation-to-zero limit is about.
        deadline = time.monotonic() + 30.0
        while len(await query_at(prom, counter, round(time.time() * 1000))) < 2:
            assert time.monotonic() < deadline, "the fleet's counters were not scraped within 30 s"
            await asyncio.sleep(0.5)
        load = asyncio.create_task(LoadGenerator(fleet.url, spec).run())
        try:
            await asyncio.sleep(30.0)
            now_ms = round(time.time() * 1000)
            await asyncio.sleep(3.0)  # every scrape up to now_ms is in the TSDB
            latest = await raw_samples(prom, counter, now_ms)
            assert sorted(latest) == sorted(p.name for p in fleet.replicas)
            # Evaluation times: on a scrape's timestamp (a sample at the window's end), between
            # scrapes, and early, when the window still reaches back before the series began.
            on_sample = max(ms for samples in latest.values() for ms, _ in samples)
            times = [on_sample, now_ms - 1357, now_ms - 12_345]
            seen: list[tuple[float, float]] = []  # (sum of rates, backlog) per evaluation time
            for at_ms in times:
                samples = await raw_samples(prom, counter, at_ms)
                rates = await query_at(prom, f"rate({counter}[{WINDOW_S}s])", at_ms)
                assert len(rates) == 2 == len(samples)
                start, end = -float(WINDOW_S), 0.0
                scrapes = Scrapes()
                points = sorted((ms, pod, v) for pod, series in samples.items() for ms, v in series)
                uid = {pod: i for i, pod in enumerate(sorted(samples))}
                for ms, pod, value in points:  # each sample as its own scrape of one pod
                    scrapes.record(seconds(ms, at_ms), [ServiceCounters(uid[pod], 0, 0, int(value), 0)])
                total = 0.0
                for r in rates:
                    pod = r["metric"]["pod"]
                    ours = extrapolated_rate([(seconds(ms, at_ms), v) for ms, v in samples[pod]], start, end)
                    theirs = float(r["value"][1])
                    assert ours is not None
                    assert rel_equal(ours, theirs), (at_ms, pod, ours, theirs, samples[pod][:3])
                    total += theirs
                # The backtest's sum over series, with its own choice of samples in the window.
                backtest_sum = scrapes.rate_sum(lambda c: c.arrivals, float(WINDOW_S), 0.0)
                assert backtest_sum is not None
                assert rel_equal(backtest_sum, total), (at_ms, backtest_sum, total)

                # (b) The adapter's demand query = rate + queue / drain, from the raw samples.
                queues = await raw_samples(prom, queue, at_ms)
                backlog = sum(series[-1][1] for series in queues.values())
                (answer,) = await query_at(prom, demand_promql, at_ms)
                expected = backtest_sum + backlog / DEFAULT_DEMAND.drain_s
                assert rel_equal(float(answer["value"][1]), expected), (at_ms, answer, backtest_sum, backlog)
                seen.append((total, backlog))
            assert len(seen) == len(times)
            # The load was real and the queues had built up. (Under 8 requests/s: the series are
            # younger than the window, and Prometheus extrapolates a young series only so far.)
            rate_now, backlog_now = seen[0]
            assert 3.0 < rate_now < 8.0
            assert backlog_now > 0
        finally:
            await load
