"""The age of the data, against a real Prometheus: lagging samples are a 503 naming their age.

An exporter publishes samples with explicit timestamps 20 s in the past (data that arrives late,
as through federation or a stuck exporter); Prometheus scrapes it with ``honor_timestamps``, so its
lookback (30 s in the test stack) still returns them and an instant query answers with a value
stamped at the evaluation time. Only ``timestamp()`` of the samples shows their age.
A second target with ordinary samples is served normally, with the value Prometheus computes
directly. The exported age is then fed to ``promtool test rules`` with the shipped alert rules.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from tests.promtool.scenarios import self_rule_file
from tests.support.polling import eventually
from tgi_autoscaler.adapter.app import build_app
from tgi_autoscaler.adapter.definitions import DefinitionStore
from tgi_autoscaler.adapter.own_metrics import AdapterMetrics
from tgi_autoscaler.adapter.prometheus import PrometheusClient
from tgi_autoscaler.config.metrics import AdapterSettings, MetricsConfig, PrometheusConnection
from tgi_autoscaler.promql import format_quantity
from tgi_autoscaler.render.self_monitoring import SelfMonitoringThresholds, self_alert_rules
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer, ScrapeJob

pytestmark = pytest.mark.integration

API = "/apis/external.metrics.k8s.io/v1beta1"
LAG_S = 20.0
MAX_AGE_S = 10.0
ALERT_AGE_S = 15.0


@asynccontextmanager
async def exporter() -> AsyncIterator[str]:
    """``/frozen`` with timestamps ``LAG_S`` old, ``/fresh`` without (stamped at the scrape)."""
    counts = iter(range(10**9))

    async def frozen(_: web.Request) -> web.Response:
        stamp = int((time.time() - LAG_S) * 1000)
        text = f"tgi_queue_size 3 {stamp}\ntgi_request_count {next(counts)} {stamp}\n"
        return web.Response(text=text, content_type="text/plain")

    async def fresh(_: web.Request) -> web.Response:
        return web.Response(text="tgi_queue_size 5\ntgi_request_count 0\n", content_type="text/plain")

    app = web.Application()
    app.router.add_get("/frozen", frozen)
    app.router.add_get("/fresh", fresh)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def _age_series(exposition: str, metric: str, namespace: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in exposition.splitlines():
        ours = f'metric="{metric}"' in line and f'metric_namespace="{namespace}"' in line
        if line.startswith("tgi_autoscaler_adapter_data_age_seconds{") and ours:
            selector = line.split('selector="', 1)[1].split('"', 1)[0]
            found[selector] = float(line.rsplit(" ", 1)[1])
    return found


@pytest.mark.parametrize("prefetch", [True, False], ids=["prefetch", "one-query-per-read"])
async def test_frozen_samples_are_a_503_naming_their_age_and_fire_the_alert(
    running_prometheus: PrometheusServer, tmp_path: Path, prefetch: bool
) -> None:
    namespace = f"it-{uuid.uuid4().hex[:8]}"
    settings = AdapterSettings(
        prometheus=PrometheusConnection(url=running_prometheus.url, timeout_seconds=2.0),
        prefetch={"enabled": prefetch, "refresh_seconds": 0.5, "max_staleness_seconds": 2},
        data_age={"max_seconds": MAX_AGE_S},
    )
    metrics = AdapterMetrics(CollectorRegistry())
    async with (
        exporter() as address,
        PrometheusClient(settings.prometheus, metrics=metrics) as client,
    ):
        for name in ("frozen", "fresh"):
            labels = {"namespace": namespace, "app_kubernetes_io_instance": name}
            await running_prometheus.add_scrape_job(
                ScrapeJob(f"{namespace}-{name}", [address], metrics_path=f"/{name}", labels=labels)
            )
        app = build_app(
            settings,
            prometheus=client,
            definitions=DefinitionStore(MetricsConfig(), metrics=metrics),
            metrics=metrics,
        )
        async with TestClient(TestServer(app)) as http:

            async def read(metric: str, service: str) -> tuple[int, dict[str, Any]]:
                response = await http.get(
                    f"{API}/namespaces/{namespace}/{metric}",
                    params={"labelSelector": f"app.kubernetes.io/instance={service}"},
                )
                return response.status, await response.json()

            seen: list[object] = []

            async def both_scraped() -> bool:
                answers = [await read("tgi_queue_size", service) for service in ("frozen", "fresh")]
                seen.append([(status, body.get("message") or body.get("items")) for status, body in answers])
                return [status for status, _ in answers] == [503, 200]

            await eventually(both_scraped, what=f"both targets to be scraped (saw {seen[-2:]})")
            # Prometheus itself still returns the frozen value: the lookback covers it.
            direct = await running_prometheus.query(
                f'sum(tgi_queue_size{{namespace="{namespace}",app_kubernetes_io_instance="frozen"}})'
            )
            assert direct[0]["value"][1] == "3"
            for metric in ("tgi_queue_size", "tgi_request_demand"):
                status, body = await read(metric, "frozen")
                assert (status, body["reason"]) == (503, "ServiceUnavailable"), body
                age = float(body["message"].split(" is ", 1)[1].split("s old", 1)[0])
                assert LAG_S <= age < LAG_S + 5, body["message"]
                assert f"more than the {MAX_AGE_S:g}s allowed (dataAge.maxSeconds)" in body["message"]

            async def demand_served() -> bool:  # rate() needs two scrapes
                return (await read("tgi_request_demand", "fresh"))[0] == 200

            await eventually(demand_served, what="the fresh service's demand")
            status, body = await read("tgi_request_demand", "fresh")
            assert status == 200, body
            (item,) = body["items"]
            # rate() of a constant counter is 0, plus the backlog over 60 s: 5/60, rounded up to
            # milli as Kubernetes does; the same as Prometheus computes for this selector alone.
            assert item["value"] == "84m"
            matchers = f'namespace="{namespace}",app_kubernetes_io_instance="fresh"'
            direct = await running_prometheus.query(
                f"sum(rate(tgi_request_count{{{matchers}}}[60s])) + sum(tgi_queue_size{{{matchers}}}) / 60"
            )
            assert format_quantity(direct[0]["value"][1]) == "84m"
            stamped = time.mktime(time.strptime(item["timestamp"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
            assert time.time() - stamped < 10  # the scrape's time, not 100 s ago

            response = await http.get("/metrics")
            ages = _age_series(await response.text(), "tgi_request_demand", namespace)
            assert set(ages) == {"app.kubernetes.io/instance=frozen", "app.kubernetes.io/instance=fresh"}
            assert ages["app.kubernetes.io/instance=frozen"] >= LAG_S
            assert ages["app.kubernetes.io/instance=fresh"] < 10

    _alert_fires_on(ages, namespace, tmp_path)


def _alert_fires_on(ages: dict[str, float], namespace: str, tmp_path: Path) -> None:
    """The exported ages, held for 10 minutes, through the shipped rule in ``promtool test rules``
    (its threshold set to ``ALERT_AGE_S``, between the fresh and the lagging data's ages)."""
    thresholds = SelfMonitoringThresholds(data_age_seconds=ALERT_AGE_S)
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: install Debian's prometheus package (scripts/setup.sh does)")
    (tmp_path / "self.yaml").write_text(yaml.safe_dump(self_rule_file("tgi-autoscaler", thresholds)))
    series = []
    for selector, age in ages.items():
        labels = (
            f'namespace="tgi-autoscaler", metric="tgi_request_demand", selector="{selector}", '
            f'metric_namespace="{namespace}"'
        )
        series.append(
            {"series": f"tgi_autoscaler_adapter_data_age_seconds{{{labels}}}", "values": f"{age:.3f}x20"}
        )
    frozen = "app.kubernetes.io/instance=frozen"
    (rule,) = [
        rule
        for rule in self_alert_rules("tgi-autoscaler", thresholds)
        if rule.alert == "TGIAutoscalerAdapterStaleSamples"
    ]
    expected = {
        "alertname": "TGIAutoscalerAdapterStaleSamples",
        "exp_alerts": [
            {
                "exp_labels": {
                    "severity": "warning",
                    "service": "tgi-autoscaler",
                    "namespace": "tgi-autoscaler",
                    "metric": "tgi_request_demand",
                    "selector": frozen,
                    "metric_namespace": namespace,
                },
                "exp_annotations": rule.expected_annotations(round(ages[frozen], 3)),
            }
        ],
    }
    document = {
        "rule_files": ["self.yaml"],
        "evaluation_interval": "30s",
        "tests": [
            {
                "interval": "30s",
                "input_series": series,
                "alert_rule_test": [{**expected, "eval_time": "8m"}],
            }
        ],
    }
    tests = tmp_path / "tests.yaml"
    tests.write_text(yaml.safe_dump(document, sort_keys=False))
    result = subprocess.run(
        [promtool, "test", "rules", str(tests)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
