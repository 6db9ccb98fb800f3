"""The adapter against a real Prometheus scraping simulated TGI pods, over real HTTP.

Each test builds the app with a real ``PrometheusClient`` and serves it on loopback. Values are
compared with what the pods report; outages are real (the Prometheus process is stopped).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from tests.support.polling import eventually
from tgi_autoscaler.adapter.app import build_app
from tgi_autoscaler.adapter.definitions import DefinitionStore, watch_file
from tgi_autoscaler.adapter.own_metrics import AdapterMetrics
from tgi_autoscaler.adapter.prometheus import InstantResult, PrometheusClient
from tgi_autoscaler.config.metrics import AdapterSettings, MetricsConfig, PrometheusConnection
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer
from tgi_autoscaler_dev.sim.fleet import Fleet
from tgi_autoscaler_dev.sim.model import ReplicaConfig

pytestmark = pytest.mark.integration

API = "/apis/external.metrics.k8s.io/v1beta1"
Client = TestClient[web.Request, web.Application]


class CountingQuerier:
    """Wraps the real client to count the queries that actually leave the adapter."""

    def __init__(self, inner: PrometheusClient) -> None:
        self.inner = inner
        self.count = 0

    async def query(self, promql: str) -> InstantResult:
        self.count += 1
        return await self.inner.query(promql)


@asynccontextmanager
async def adapter(
    prometheus: PrometheusServer,
    *,
    ttl: float = 0.5,
    store: DefinitionStore | None = None,
    prefetch: dict[str, Any] | None = None,
) -> AsyncIterator[tuple[Client, CountingQuerier, AdapterMetrics]]:
    settings = AdapterSettings(
        prometheus=PrometheusConnection(url=prometheus.url, timeout_seconds=2.0),
        cache={"ttl_seconds": ttl},
        prefetch=prefetch or {},
    )
    metrics = AdapterMetrics(CollectorRegistry())
    async with PrometheusClient(settings.prometheus, metrics=metrics) as client:
        querier = CountingQuerier(client)
        app = build_app(
            settings,
            prometheus=querier,
            definitions=store or DefinitionStore(MetricsConfig(), metrics=metrics),
            metrics=metrics,
        )
        async with TestClient(TestServer(app)) as http:
            yield http, querier, metrics


async def read(http: Client, namespace: str, metric: str, selector: str) -> tuple[int, dict[str, Any]]:
    response = await http.get(f"{API}/namespaces/{namespace}/{metric}", params={"labelSelector": selector})
    return response.status, await response.json()


def _fresh_namespace() -> str:
    return f"it-{uuid.uuid4().hex[:8]}"


async def _queue_requests(session: aiohttp.ClientSession, url: str, count: int) -> list[asyncio.Task[Any]]:
    async def one() -> None:
        with suppress(aiohttp.ClientError):
            async with session.post(
                f"{url}/generate", json={"inputs": "hello", "parameters": {"max_new_tokens": 8}}
            ) as response:
                await response.read()

    return [asyncio.create_task(one(), name="sim-request") for _ in range(count)]


async def test_served_value_is_the_sum_of_the_pods_queues(running_prometheus: PrometheusServer) -> None:
    namespace = _fresh_namespace()
    # One request in the batch at a time, 2 s each: queued requests stay queued for a while, and
    # every request still finishes within seconds of the check.
    config = ReplicaConfig(max_batch_size=1, token_rate=4.0)
    async with (
        Fleet(
            "llama",
            namespace=namespace,
            replicas=2,
            config=config,
            file_sd_dir=running_prometheus.file_sd_dir,
        ) as fleet,
        Fleet(
            "other",
            namespace=namespace,
            replicas=1,
            config=config,
            file_sd_dir=running_prometheus.file_sd_dir,
        ) as other,
        aiohttp.ClientSession() as session,
        adapter(running_prometheus) as (http, _, _),
    ):
        tasks = []
        for pod, count in zip(fleet.replicas, (3, 4), strict=True):
            tasks += await _queue_requests(session, pod.url, count)
        tasks += await _queue_requests(session, other.replicas[0].url, 3)
        try:
            expected = 2 + 3  # all but the one running request on each pod
            selector = "app.kubernetes.io/instance=llama"

            async def fleet_queue_reached() -> bool:
                return fleet.snapshot().queue_size == expected

            await eventually(fleet_queue_reached, what="the simulated queues to fill")
            # Each fleet has its own file_sd file and Prometheus may discover them a scrape apart:
            # wait until the other service is served too, so the sum below is taken while its
            # series exist and could wrongly be counted.
            other_seen: list[object] = []

            async def other_served() -> bool:
                status, body = await read(
                    http, namespace, "tgi_queue_size", "app.kubernetes.io/instance=other"
                )
                other_seen.append((status, body.get("items") or body.get("message")))
                return status == 200

            await eventually(other_served, what=f"the other service to be served (saw {other_seen[-3:]})")
            seen: list[object] = []

            async def adapter_agrees() -> bool:
                status, body = await read(http, namespace, "tgi_queue_size", selector)
                seen.append((status, body.get("items") or body.get("message")))
                return status == 200 and body["items"][0]["value"] == str(fleet.snapshot().queue_size)

            await eventually(adapter_agrees, what=f"the adapter to serve {expected} (saw {seen[-3:]})")
            status, body = await read(http, namespace, "tgi_queue_size", selector)
            (item,) = body["items"]
            assert item["metricName"] == "tgi_queue_size"
            assert item["metricLabels"] == {"app.kubernetes.io/instance": "llama"}
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", item["timestamp"])
            # The other service in the same namespace is not counted; another namespace sees nothing.
            status, other_body = await read(
                http, namespace, "tgi_queue_size", "app.kubernetes.io/instance=other"
            )
            assert status == 200
            assert int(other_body["items"][0]["value"]) <= 2  # its own queue, draining meanwhile
            status, body = await read(http, _fresh_namespace(), "tgi_queue_size", selector)
            assert (status, body["reason"]) == (404, "NotFound")
        finally:
            # Let the requests finish: a simulated pod stops only once its handlers return.
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=60)


async def test_every_shipped_definition_is_a_query_prometheus_accepts(
    running_prometheus: PrometheusServer,
) -> None:
    async with adapter(running_prometheus) as (http, querier, _):
        for metric in (
            "tgi_queue_size",
            "tgi_batch_current_size",
            "vllm_num_requests_waiting",
            "sglang_num_queue_reqs",
        ):
            status, body = await read(
                http, _fresh_namespace(), metric, "app.kubernetes.io/instance=x,tier in (a,b)"
            )
            # A syntax error would be a 503 from Prometheus' bad_data; no data is a 404.
            assert (status, body["reason"]) == (404, "NotFound"), body
            assert "no value is reported rather than a made-up zero" in body["message"]
        assert querier.count == 4


@pytest.mark.parametrize("prefetch", [False, True], ids=["one-query-per-read", "prefetch"])
async def test_prometheus_outage_is_503_and_service_resumes(
    running_prometheus: PrometheusServer, prefetch: bool
) -> None:
    namespace = _fresh_namespace()
    settings = {"enabled": prefetch, "refresh_seconds": 0.5, "max_staleness_seconds": 2}
    async with (
        Fleet("svc", namespace=namespace, replicas=1, file_sd_dir=running_prometheus.file_sd_dir),
        adapter(running_prometheus, ttl=0, prefetch=settings) as (http, _, metrics),
    ):
        selector = "app.kubernetes.io/instance=svc"

        async def served() -> bool:
            status, _ = await read(http, namespace, "tgi_queue_size", selector)
            return status == 200

        await eventually(served, what="the first scrape of the simulated pod")
        await running_prometheus.stop()
        try:
            # With prefetch, the last grouped answer is served until it is maxStalenessSeconds old;
            # then the read queries Prometheus itself, and from then on no value comes back.
            answers: list[int] = []

            async def unavailable() -> bool:
                answers.append((await read(http, namespace, "tgi_queue_size", selector))[0])
                return answers[-1] == 503

            await eventually(unavailable, what=f"a 503 (saw {answers[-3:]})")
            assert set(answers) <= {200, 503}
            assert prefetch or answers == [503]
            for _ in range(5):
                status, body = await read(http, namespace, "tgi_queue_size", selector)
                assert status == 503
                assert body["kind"] == "Status"
                assert body["reason"] == "ServiceUnavailable"
                assert "cannot connect to Prometheus" in body["message"]
            assert metrics.prometheus_query_errors.labels(reason="connect")._value.get() >= 1
        finally:
            await running_prometheus.start()
        await eventually(served, what="the adapter to serve again after Prometheus came back")


def _api_query_count(exposition: str) -> float:
    total = 0.0
    for line in exposition.splitlines():
        if line.startswith("prometheus_http_requests_total{") and 'handler="/api/v1/query"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_concurrent_identical_reads_make_one_prometheus_query(
    running_prometheus: PrometheusServer,
) -> None:
    namespace = _fresh_namespace()
    async with aiohttp.ClientSession() as session, adapter(running_prometheus, ttl=5.0) as (http, querier, _):

        async def queries_seen_by_prometheus() -> float:
            # Its own /metrics, so reading the count does not add a query.
            async with session.get(f"{running_prometheus.url}/metrics") as response:
                return _api_query_count(await response.text())

        before = await queries_seen_by_prometheus()
        selectors = [
            "app.kubernetes.io/instance=a,tier in (x,y)",
            "tier in (y,x), app.kubernetes.io/instance==a",
        ]
        responses = await asyncio.gather(
            *(read(http, namespace, "tgi_queue_size", selectors[i % 2]) for i in range(50))
        )
        assert {status for status, _ in responses} == {404}  # an empty result, identically for all 50
        again = await read(http, namespace, "tgi_queue_size", selectors[0])  # within the TTL
        assert again[0] == 404
        after = await queries_seen_by_prometheus()
        assert querier.count == 1
        assert after - before == 1


async def test_a_config_file_edit_is_served_and_a_broken_one_ignored(
    running_prometheus: PrometheusServer, tmp_path: Path
) -> None:
    namespace = _fresh_namespace()
    path = tmp_path / "metrics.yaml"
    path.write_text(
        "includeDefaults: false\nmetrics:\n  - {name: first, query: 'sum(tgi_queue_size{$matchers})'}\n"
    )
    metrics = AdapterMetrics(CollectorRegistry())
    store = DefinitionStore(metrics=metrics)
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_file(store, path, interval_s=0.1, stop=stop), name="watch-file")
    try:
        async with (
            Fleet("svc", namespace=namespace, replicas=2, file_sd_dir=running_prometheus.file_sd_dir),
            adapter(running_prometheus, store=store) as (http, _, _),
        ):

            async def listed(name: str) -> bool:
                response = await http.get(API)
                names = [r["name"] for r in (await response.json())["resources"]]
                return names == [name]

            await eventually(lambda: listed("first"), what="the first definitions")
            path.write_text("includeDefaults: false\nmetrics:\n  - {name: broken, query: 'sum(up)'}\n")
            assert await store.wait_for_attempts(2, timeout=10)
            assert await listed("first")
            path.write_text(
                "includeDefaults: false\nmetrics:\n  - {name: replicas_up, query: 'count(up{$matchers})'}\n"
            )
            await eventually(lambda: listed("replicas_up"), what="the edited definitions")

            async def two_pods() -> bool:
                status, body = await read(http, namespace, "replicas_up", "app.kubernetes.io/instance=svc")
                return status == 200 and body["items"][0]["value"] == "2"

            await eventually(two_pods, what="the new definition to be served")
            status, body = await read(http, namespace, "first", "")
            assert (status, body["reason"]) == (404, "NotFound")
    finally:
        stop.set()
        await watcher


async def test_http_surface_errors_and_discovery(running_prometheus: PrometheusServer) -> None:
    async with adapter(running_prometheus) as (http, _, _):
        response = await http.get("/apis/external.metrics.k8s.io/v1beta1/namespaces/ns/tgi_queue_size/extra")
        assert (response.status, (await response.json())["message"]) == (
            404,
            "the server could not find the requested resource",
        )
        response = await http.post(f"{API}/namespaces/ns/tgi_queue_size")
        assert response.status == 405
        response = await http.get(f"{API}/namespaces/ns/tgi_queue_size", headers={"Accept": "text/html"})
        assert (response.status, (await response.json())["reason"]) == (406, "NotAcceptable")
        response = await http.get(f"{API}/namespaces/ns/tgi_queue_size", params={"labelSelector": "x>1"})
        body = await response.json()
        assert (response.status, body["reason"]) == (400, "BadRequest")
        assert "'x>1'" in body["message"]

        accept = (
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
        )
        response = await http.get("/apis", headers={"Accept": accept})
        assert response.headers["Content-Type"] == (
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
        )
        etag = response.headers["ETag"]
        response = await http.get("/apis", headers={"Accept": accept, "If-None-Match": etag})
        assert response.status == 304

        response = await http.get("/openapi/v3")
        url = (await response.json())["paths"]["apis/external.metrics.k8s.io/v1beta1"]["serverRelativeURL"]
        response = await http.get(url)
        assert response.status == 200
        assert response.headers["Cache-Control"] == "public, immutable"
        response = await http.get(url.split("?")[0] + "?hash=stale", allow_redirects=False)
        assert (response.status, response.headers["Location"]) == (301, url)

        response = await http.get("/metrics")
        exposition = await response.text()
        assert 'tgi_autoscaler_adapter_request_duration_seconds_count{code="406"' in exposition
        for path in ("/healthz", "/livez", "/readyz"):
            response = await http.get(path)
            assert (response.status, await response.text()) == (200, "ok")
