"""Simulated fleets scraped by a real Prometheus: names, labels and values as the adapter will see them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.support.polling import eventually
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer
from tgi_autoscaler_dev.sim import Fleet, ReplicaConfig

pytestmark = pytest.mark.integration

# One token every two seconds and one sequence per batch: a request holds its replica for minutes,
# so queue sizes stay put while Prometheus scrapes them.
FROZEN = ReplicaConfig(max_batch_size=1, token_rate=0.5, prefill_time_s=0.0)
FAST = ReplicaConfig(max_batch_size=8, token_rate=500.0, prefill_time_s=0.001)


def by_pod(result: list[dict[str, Any]]) -> dict[str, float]:
    return {r["metric"]["pod"]: float(r["value"][1]) for r in result}


@pytest.fixture
def service() -> str:
    return f"sim-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_prometheus_sees_each_pods_queue_with_pod_labels(
    running_prometheus: PrometheusServer, service: str, client: aiohttp.ClientSession
) -> None:
    prom = running_prometheus
    async with Fleet(
        service, namespace="sim-it", replicas=2, config=FROZEN, file_sd_dir=prom.file_sd_dir
    ) as fleet:
        first, second = fleet.replicas
        body = {"inputs": "hold the replica", "parameters": {"max_new_tokens": 500}}
        # 3 requests on the first pod (1 running, 2 queued), 2 on the second (1 running, 1 queued).
        pending = [
            asyncio.create_task(client.post(f"{pod.url}/generate", json=body))
            for pod in (first, first, first, second, second)
        ]

        async def queued() -> int:
            return fleet.snapshot().queue_size

        try:
            await eventually(queued, lambda q: q == 3, timeout=10)
            selector = f'namespace="sim-it",app_kubernetes_io_instance="{service}"'
            result = await eventually(
                lambda: prom.query(f"tgi_queue_size{{{selector}}}"),
                lambda r: by_pod(r) == {first.name: 2.0, second.name: 1.0},
            )
            snapshot = fleet.snapshot()
            assert by_pod(result) == {name: float(s.queue_size) for name, s in snapshot.pods.items()}
            for series in result:
                labels = series["metric"]
                pod = first if labels["pod"] == first.name else second
                assert labels["namespace"] == "sim-it"
                assert labels["app_kubernetes_io_instance"] == service
                assert labels["app_kubernetes_io_name"] == "tgi"
                assert labels["instance"] == pod.address
            total = await prom.query(f"sum(tgi_queue_size{{{selector}}})")
            assert float(total[0]["value"][1]) == 3.0
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


async def test_counters_keep_tgi_names_and_histograms_have_buckets(
    running_prometheus: PrometheusServer, service: str, client: aiohttp.ClientSession
) -> None:
    prom = running_prometheus
    async with Fleet(
        service, namespace="sim-it", replicas=2, config=FAST, file_sd_dir=prom.file_sd_dir
    ) as fleet:
        body = {"inputs": "count me", "parameters": {"max_new_tokens": 5}}
        for _ in range(6):
            async with client.post(f"{fleet.url}/generate", json=body) as resp:
                assert resp.status == 200
        selector = f'namespace="sim-it",app_kubernetes_io_instance="{service}"'
        await eventually(
            lambda: prom.query(f"sum(tgi_request_success{{{selector}}})"),
            lambda r: bool(r) and float(r[0]["value"][1]) == 6.0,
        )
        per_pod = await prom.query(f"tgi_request_success{{{selector}}}")
        assert by_pod(per_pod) == {pod.name: 3.0 for pod in fleet.replicas}  # round-robin front
        assert await prom.query(f"tgi_request_success_total{{{selector}}}") == []
        buckets = await prom.query(f'sum(tgi_request_duration_bucket{{{selector},le="+Inf"}})')
        assert float(buckets[0]["value"][1]) == 6.0
        p50 = await prom.query(
            f"histogram_quantile(0.5, sum by (le) (tgi_request_duration_bucket{{{selector}}}))"
        )
        assert float(p50[0]["value"][1]) > 0
        count = await prom.query(f"sum(tgi_request_count{{{selector}}})")
        assert float(count[0]["value"][1]) == 6.0


async def test_scale_to_changes_the_scraped_target_set(
    running_prometheus: PrometheusServer, service: str
) -> None:
    prom = running_prometheus
    query = f'up{{namespace="sim-it",app_kubernetes_io_instance="{service}"}}'

    async def scraped() -> set[str]:
        return {r["metric"]["pod"] for r in await prom.query(query) if r["value"][1] == "1"}

    async with Fleet(
        service, namespace="sim-it", replicas=1, config=FAST, file_sd_dir=prom.file_sd_dir
    ) as fleet:
        await eventually(scraped, lambda pods: pods == {p.name for p in fleet.replicas})
        await fleet.scale_to(3)
        three = {p.name for p in fleet.replicas}
        assert len(three) == 3
        await eventually(scraped, lambda pods: pods == three)
        await fleet.scale_to(1, wait_drained=True)
        one = {p.name for p in fleet.replicas}
        assert one < three
        await eventually(scraped, lambda pods: pods == one)
    assert not (prom.file_sd_dir / f"sim-it_{service}.json").exists()


@pytest.mark.parametrize(
    ("engine", "waiting"), [("vllm", "vllm:num_requests_waiting"), ("sglang", "sglang:num_queue_reqs")]
)
async def test_other_engines_queue_metrics_reach_prometheus(
    running_prometheus: PrometheusServer,
    service: str,
    client: aiohttp.ClientSession,
    engine: str,
    waiting: str,
) -> None:
    prom = running_prometheus
    async with Fleet(
        service,
        namespace="sim-it",
        replicas=1,
        config=FROZEN,
        engine=engine,
        file_sd_dir=prom.file_sd_dir,
    ) as fleet:
        (pod,) = fleet.replicas
        body = {"inputs": "wait", "parameters": {"max_new_tokens": 500}}
        pending = [asyncio.create_task(client.post(f"{pod.url}/generate", json=body)) for _ in range(3)]
        try:
            result = await eventually(
                lambda: prom.query(f'{waiting}{{app_kubernetes_io_instance="{service}"}}'),
                lambda r: by_pod(r) == {pod.name: 2.0},
            )
            assert result[0]["metric"]["namespace"] == "sim-it"
            assert result[0]["metric"]["model_name"] == fleet.served.model_id
            assert await prom.query(f'tgi_queue_size{{app_kubernetes_io_instance="{service}"}}') == []
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
