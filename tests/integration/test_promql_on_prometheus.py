"""Every PromQL expression the project emits, evaluated by a real Prometheus on simulator series.

Simulated TGI, vLLM and SGLang fleets, each exporting its engine's own families at the pinned
version, run under load (with a few invalid requests and a few streams whose client goes away, so
the failure and abort counters move) and are scraped by the session Prometheus. Then:

- every alert expression parses; every one over engine series names only series the engine
  table lists for that engine's version and the simulator exports, and with thresholds set so that
  the condition always holds it returns exactly one series for this service and nothing for a
  service that does not exist; with thresholds that can never be reached it returns nothing;
- every dashboard target (per-service and self-monitoring) parses, and every target over engine
  series names only listed, exported series and returns data;
- the adapter's default metric templates, built for this service's selector, return one sample.

An expression that reads series this environment does not have (kube-state-metrics, DCGM, the
adapter's own metrics) only has to be accepted by Prometheus; those are proven against the real
exporters elsewhere (tests/e2e/test_alerts_kube_state_metrics.py).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from tgi_autoscaler.config.metrics import DEFAULT_METRIC_DEFINITIONS
from tgi_autoscaler.config.observability import AlertsSpec
from tgi_autoscaler.engines import EngineMetrics, engine_metrics
from tgi_autoscaler.render.alerts import alert_rules
from tgi_autoscaler.render.dashboard import SeriesSource, dashboard_json, panel_defs
from tgi_autoscaler.render.self_monitoring import self_alert_rules, self_panel_defs
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer
from tgi_autoscaler_dev.sim.fleet import Fleet
from tgi_autoscaler_dev.sim.loadgen import LoadGenerator, LoadSpec
from tgi_autoscaler_dev.sim.model import ReplicaConfig
from tgi_autoscaler_dev.sim.traces import Constant

pytestmark = pytest.mark.integration

ENGINES = ("tgi", "vllm", "sglang")
SERVICE = "llama"
METRIC_NAME = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{")

ALWAYS = AlertsSpec.model_validate(
    {
        "rateWindow": "1m",
        "latencyP95": {"threshold": 1e-9},
        "queueWaitP95": {"threshold": 1e-9},
        "queueBacklogPerReplica": {"threshold": 1e-9},
        "errorRatio": {"threshold": 1e-9},
        "throughputFloor": {"enabled": True, "threshold": 1e9},
    }
)
NEVER = AlertsSpec.model_validate(
    {
        "rateWindow": "1m",
        "latencyP95": {"threshold": 1e9},
        "queueWaitP95": {"threshold": 1e9},
        "queueBacklogPerReplica": {"threshold": 1e9},
        "errorRatio": {"threshold": 0.999999},
        "throughputFloor": {"enabled": True, "threshold": 1e-9},
    }
)


@dataclass(frozen=True)
class LoadedFleet:
    engine: str
    namespace: str
    exported: frozenset[str]  # metric names the simulator's /metrics exposes


@dataclass(frozen=True)
class Snapshot:
    """The fleets, and the instant (Unix time) at which every fleet had a non-empty queue."""

    fleets: dict[str, LoadedFleet]
    at: float


async def _exported_names(url: str) -> frozenset[str]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as resp:
        text = await resp.text()
    names = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return frozenset(names)


async def query_at(prometheus: PrometheusServer, expr: str, at: float) -> list[dict[str, Any]]:
    """Instant query evaluated at ``at``; raises naming the expression if Prometheus rejects it."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{prometheus.url}/api/v1/query",
            params={"query": expr, "time": f"{at:.3f}"},
            timeout=aiohttp.ClientTimeout(total=30),
        ) as resp,
    ):
        body = await resp.json()
    if body.get("status") != "success":
        raise AssertionError(f"Prometheus rejected {expr!r}: {body.get('error')}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def _poll(prometheus: PrometheusServer, query: str, *, timeout: float = 90.0) -> float:
    """Wait until ``query`` has a result; return the evaluation time of the first one."""
    deadline = time.monotonic() + timeout
    while True:
        at = time.time()
        if await query_at(prometheus, query, at):
            return at
        if time.monotonic() > deadline:
            raise TimeoutError(f"no data for {query} within {timeout:.0f}s")
        await asyncio.sleep(0.5)


@pytest.fixture(scope="module")
async def loaded(prometheus: PrometheusServer) -> Snapshot:
    """One loaded two-replica fleet per engine, each in its own namespace, scraped by Prometheus.

    The tests evaluate their expressions at a recorded instant when every queue was non-empty,
    after the load has ended: no request is in flight while a test runs.
    """
    if not prometheus.running:
        await prometheus.start()
    suffix = uuid.uuid4().hex[:6]
    # Slow replicas with small batches (about 5 req/s per two-replica fleet) under 8 req/s: the
    # queues grow, so gauges like the backlog are above zero at the recorded instant.
    config = ReplicaConfig(max_batch_size=2, token_rate=10.0)
    fleets: dict[str, LoadedFleet] = {}
    async with contextlib_fleets(prometheus, suffix, config) as running:
        spec = LoadSpec(trace=Constant(rate=8.0), duration_s=20.0, max_requests=160, max_new_tokens=8)
        load = [asyncio.create_task(LoadGenerator(fleet.url, spec).run()) for fleet in running.values()]
        try:
            await _fail_some(running.values())
            checks = []
            for engine, fleet in running.items():
                metrics = engine_metrics(engine)
                ns = fleet.namespace
                checks.append(f'count({metrics.queue_size}{{namespace="{ns}"}}) == 2')
                checks.append(f'sum({metrics.queue_size}{{namespace="{ns}"}}) > 0')
                checks.append(f'rate({metrics.request_duration}_count{{namespace="{ns}"}}[1m]) > 0')
                checks.append(_failures(metrics, ns))
            # A failure counter may appear with its first failure; later failures make its rate > 0.
            await _poll(prometheus, " and on () ".join(f"count({check}) > 0" for check in checks))
            await _fail_some(running.values())
            for engine, fleet in running.items():
                checks.append(f"rate({_failures(engine_metrics(engine), fleet.namespace)}[1m]) > 0")
            at = await _poll(prometheus, " and on () ".join(f"count({check}) > 0" for check in checks))
            for engine, fleet in running.items():
                exported = await _exported_names(fleet.replicas[0].url)
                fleets[engine] = LoadedFleet(engine, fleet.namespace, exported)
        finally:
            # The generators stop by themselves (bounded duration and count).
            await asyncio.gather(*load, return_exceptions=True)
    return Snapshot(fleets, at)


def _failures(metrics: EngineMetrics, namespace: str) -> str:
    failures = metrics.failures
    assert failures is not None, metrics.engine
    matchers = f", {failures.matchers}" if failures.matchers else ""
    return f'{failures.name}{{namespace="{namespace}"{matchers}}}'


async def _fail_some(fleets: Any) -> None:
    """Three invalid requests (refused before the engine) and three streams dropped by their client
    (TGI's ``dropped``, vLLM's and SGLang's aborted requests) per fleet."""
    async with aiohttp.ClientSession() as session:
        for fleet in fleets:
            for _ in range(3):  # empty inputs: TGI's validation error, counted as a failure
                async with session.post(f"{fleet.url}/generate", json={"inputs": ""}) as resp:
                    assert resp.status == 422
            for _ in range(3):
                body = {"inputs": "hello", "parameters": {"max_new_tokens": 1000}}
                async with session.post(f"{fleet.url}/generate_stream", json=body) as resp:
                    assert resp.status == 200
                    # Leaving before the stream ends closes the connection: the server drops it.
                    resp.close()


class contextlib_fleets:
    """Start one Fleet per engine and stop them all, whatever happens in between."""

    def __init__(self, prometheus: PrometheusServer, suffix: str, config: ReplicaConfig) -> None:
        self._fleets = {
            engine: Fleet(
                SERVICE,
                namespace=f"promql-{engine}-{suffix}",
                replicas=2,
                config=config,
                engine=engine,
                file_sd_dir=prometheus.file_sd_dir,
            )
            for engine in ENGINES
        }

    async def __aenter__(self) -> dict[str, Fleet]:
        for fleet in self._fleets.values():
            await fleet.start()
        return self._fleets

    async def __aexit__(self, *exc: object) -> None:
        for fleet in self._fleets.values():
            await fleet.stop()


def _engine_names(expr: str, fleet: LoadedFleet) -> set[str] | None:
    """The engine series an expression reads, checked against the engine table and the simulator;
    ``None`` when it reads series of another exporter (kube-state-metrics), which this test lacks."""
    names = set(METRIC_NAME.findall(expr))
    if not names or any(name.startswith("kube_") for name in names):
        return None
    table = engine_metrics(fleet.engine)
    unlisted = sorted(name for name in names if not table.exports(name))
    assert not unlisted, f"{fleet.engine} {table.version} exports no {unlisted}: {expr}"
    missing = sorted(names - fleet.exported)
    assert not missing, f"the {fleet.engine} simulator does not export {missing}: {expr}"
    return names


def _expects_data(expr: str, fleet: LoadedFleet) -> bool:
    """True when every series the expression reads is exported by the simulated fleet."""
    names = set(METRIC_NAME.findall(expr))
    return bool(names) and names <= fleet.exported


def _dashboard_expr(expr: str, fleet: LoadedFleet) -> str:
    return (
        expr.replace("$namespace", fleet.namespace)
        .replace("$service", SERVICE)
        .replace("$__rate_interval", "1m")
    )


@pytest.mark.parametrize("engine", ENGINES)
async def test_alert_expressions_fire_on_real_series_and_stay_quiet_when_unreachable(
    prometheus: PrometheusServer, loaded: Snapshot, engine: str
) -> None:
    fleet = loaded.fleets[engine]
    always = alert_rules(SERVICE, fleet.namespace, ALWAYS, engine=engine)
    never = {r.alert: r for r in alert_rules(SERVICE, fleet.namespace, NEVER, engine=engine)}
    ghost = {r.alert: r for r in alert_rules("no-such-service", fleet.namespace, ALWAYS, engine=engine)}
    checked_with_data = []
    for rule in always:
        result = await query_at(prometheus, rule.expr, loaded.at)
        if _engine_names(rule.expr, fleet) is not None:
            assert len(result) == 1, (rule.alert, rule.expr, result)
            assert result[0]["metric"]["namespace"] == fleet.namespace
            checked_with_data.append(rule.alert)
            assert await query_at(prometheus, never[rule.alert].expr, loaded.at) == [], rule.alert
            assert await query_at(prometheus, ghost[rule.alert].expr, loaded.at) == [], rule.alert
    assert sorted(checked_with_data) == sorted(
        [
            "TGIRequestLatencyHigh",
            "TGIQueueWaitHigh",
            "TGIQueueBacklogHigh",
            "TGIErrorRatioHigh",
            "TGIThroughputLow",
        ]
    )


@pytest.mark.parametrize("engine", ENGINES)
async def test_scaling_metric_absent_is_quiet_while_the_queue_metric_is_scraped(
    prometheus: PrometheusServer, loaded: Snapshot, engine: str
) -> None:
    """The right-hand side of the absence alert sees this service's real queue series."""
    fleet = loaded.fleets[engine]
    queue = engine_metrics(engine).queue_size
    selector = f'{{namespace="{fleet.namespace}", app_kubernetes_io_instance="{SERVICE}"}}'
    rhs = f"count by (namespace) ({queue}{selector})"
    result = await query_at(prometheus, rhs, loaded.at)
    assert [float(r["value"][1]) for r in result] == [2.0]
    (rule,) = [
        r
        for r in alert_rules(SERVICE, fleet.namespace, ALWAYS, engine=engine)
        if r.alert == "TGIScalingMetricAbsent"
    ]
    assert rhs in rule.expr


@pytest.mark.parametrize("engine", ENGINES)
async def test_every_dashboard_target_parses_and_engine_targets_return_data(
    prometheus: PrometheusServer, loaded: Snapshot, engine: str
) -> None:
    fleet = loaded.fleets[engine]
    engine_queries = []
    for panel in panel_defs(engine):
        for query in panel.queries:
            expr = _dashboard_expr(query.expr, fleet)
            result = await query_at(prometheus, expr, loaded.at)  # raises if rejected
            if query.source is SeriesSource.ENGINE:
                assert _engine_names(expr, fleet), (panel.title, expr)
                assert result, (panel.title, expr)
                engine_queries.append(panel.title)
    # Every engine panel of the dashboard is there, for every engine.
    assert {
        "Request rate",
        "Request latency",
        "Generated tokens/s",
        "Time per output token",
        "Queue depth",
        "Queue wait",
        "Batch size",
        "Queue per replica",
    } <= set(engine_queries)


async def test_dashboard_annotation_queries_parse(prometheus: PrometheusServer, loaded: Snapshot) -> None:
    fleet = loaded.fleets["tgi"]
    annotations = dashboard_json(SERVICE, fleet.namespace, "tgi")["annotations"]["list"]
    queries = [a["expr"] for a in annotations if a.get("expr")]
    assert any("rollout_switch_timestamp_seconds" in q for q in queries), "no blue-green switch marks"
    for expr in queries:
        await query_at(prometheus, _dashboard_expr(expr, fleet), loaded.at)  # raises if rejected


async def test_self_monitoring_expressions_parse(prometheus: PrometheusServer) -> None:
    now = time.time()
    for rule in self_alert_rules("tgi-autoscaler"):
        await query_at(prometheus, rule.expr, now)
    for panel in self_panel_defs():
        for query in panel.queries:
            expr = query.expr.replace("$namespace", "tgi-autoscaler")
            await query_at(prometheus, expr.replace("$__rate_interval", "1m"), now)


@pytest.mark.parametrize("definition", DEFAULT_METRIC_DEFINITIONS, ids=lambda d: d.name)
async def test_adapter_default_templates_return_this_services_value(
    prometheus: PrometheusServer, loaded: Snapshot, definition: object
) -> None:
    from tgi_autoscaler.config.metrics import MetricDefinition

    assert isinstance(definition, MetricDefinition)
    for fleet in loaded.fleets.values():
        built = definition.builder.build(
            namespace=fleet.namespace, selector=f"app.kubernetes.io/instance={SERVICE}"
        )
        result = await query_at(prometheus, built.promql, loaded.at)
        if _expects_data(built.promql, fleet):
            assert len(result) == 1, (definition.name, fleet.engine, built.promql, result)
        else:
            assert result == [], (definition.name, fleet.engine, built.promql)
