"""``backtest`` predicts what the real HPA does: one trace, replayed live and offline, compared sync by sync.

Live: the trace's requests are sent at their exact arrival times (streaming, so each request's time
to first token is measured at the client) to simulated pods that follow the Deployment's real pods
(kube-scheduler binds them to kwok GPU nodes, kwok runs them and makes them Ready ``START_DELAY_S``
later; a Running pod's replica is discoverable but without series until Ready, as in a cluster), scraped by
Prometheus every second; the adapter serves the demand signal with compressed time constants and
kube-controller-manager's HPA scales the Deployment on it. The HPA's status is watched, so every
status write (about one per sync) is seen with its time.

Offline: ``backtest.run.replay`` of the same trace with the same settings (the fleet's step times,
scrape every second, HPA sync every 2 s, the cold start as a fixed delay, the same target,
behavior, tolerance and bounds).

Two things the comparison has to get right, both real (not fitted to make it pass):

- kube-controller-manager re-queues an HPA one sync period after its reconcile *ends*, so the real
  period is the flag plus the reconcile time (about 2.03 s here, not 2 s): over the trace the syncs
  drift by most of a period against a fixed grid. The replay uses the period measured from the
  status writes.
- A starting pod is visible to service discovery from its creation and has series once it serves;
  a pod that only appears in the file_sd file when it is Ready is scraped up to ~10 s later
  (Prometheus applies discovery updates every 5 s), and meanwhile the traffic it takes is missing
  from the signal (1-3 requests/s too low after each scale-up, in a run where the simulator did
  that). The pod follower gives the first behaviour, the one the model assumes: a replica is listed
  from the pod's start and serves once kwok reports it Ready.

The real controller's sync phase relative to the trace is unknown, so the replay is run with the
trace shifted by each of a few offsets within one sync period and the best-aligned offset is used
(the test prints it, with the phase measured from the status writes). Thresholds (from the issue):
at least 95 % of the sync steps identical, the others within one replica, and SLO attainment within
2 points. The test prints a per-sync table (model and real desired replicas, the demand read) and
the signals' difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
import yaml

from tests.e2e.conftest import ADAPTER_NAMESPACE, METRICS_CONFIGMAP, GpuNodes, RunningAdapter
from tgi_autoscaler.backtest.policies import demand_policy
from tgi_autoscaler.backtest.requests import RequestTrace
from tgi_autoscaler.backtest.run import RunConfig, RunResult, replay
from tgi_autoscaler.engines import ENGINES, EngineKind
from tgi_autoscaler.hpa.spec_input import behavior_to_manifest
from tgi_autoscaler.hpa.types import Behavior, PolicyType, ScalingPolicy, ScalingRules, SelectPolicy
from tgi_autoscaler.k8s.quantity import parse_quantity
from tgi_autoscaler.servicemodel import ColdStart
from tgi_autoscaler.servicemodel.capacity import slo_target_rps
from tgi_autoscaler.signals import DemandSignal
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane
from tgi_autoscaler_dev.localstack.kwok import GPU_RESOURCE, READY_DELAY_ANNOTATION, GpuNodePool
from tgi_autoscaler_dev.localstack.process import background, wait_for
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer
from tgi_autoscaler_dev.localstack.watch import ApiSession
from tgi_autoscaler_dev.sim.fleet import Fleet
from tgi_autoscaler_dev.sim.follow import following_pods
from tgi_autoscaler_dev.sim.loadgen import LoadReport, LoadSpec, ScheduledRequest, run_load
from tgi_autoscaler_dev.sim.model import ReplicaConfig
from tgi_autoscaler_dev.sim.pods import pod_labels
from tgi_autoscaler_dev.sim.protocol import estimate_tokens
from tgi_autoscaler_dev.sim.traces import Constant

pytestmark = pytest.mark.e2e

SERVICE = "faith"
METRIC = "tgi_request_demand_faithfulness"
# Four sequences at 20 tokens/s each, 20 tokens per request: about 3.7 requests/s at a full batch.
CONFIG = ReplicaConfig(max_batch_size=4, token_rate=20.0)
NEW_TOKENS = 20
PROMPT = "Explain autoscaling."
DEMAND = DemandSignal(rate_window_s=10, drain_s=10)
TTFT_SLO_S = 1.0
ATTAINMENT = 0.9
START_DELAY_S = 10.0
MIN_REPLICAS, MAX_REPLICAS = 1, 6
SYNC_PERIOD_S = 2.0  # the test control plane's --horizontal-pod-autoscaler-sync-period
DOWNSCALE_STABILIZATION_S = 10  # its --horizontal-pod-autoscaler-downscale-stabilization
SCRAPE_INTERVAL_S = 1.0  # the session Prometheus
TOLERANCE = 0.1
BEHAVIOR = Behavior(
    scale_up=ScalingRules(
        stabilization_window_seconds=0,
        select_policy=SelectPolicy.MAX,
        policies=(ScalingPolicy(PolicyType.PODS, 4, 10),),
    ),
    scale_down=ScalingRules(
        stabilization_window_seconds=20,
        select_policy=SelectPolicy.MAX,
        policies=(ScalingPolicy(PolicyType.PODS, 1, 10),),
    ),
)
# (start, end, requests/s): base, a step up beyond one replica's capacity, back to base.
SEGMENTS = ((0.0, 20.0, 2.0), (20.0, 80.0, 9.0), (80.0, 150.0, 2.0))
OFFSETS = tuple(i * 0.25 for i in range(9))  # trace shifts tried for the unknown sync phase


def target_rps() -> float:
    params = CONFIG.server_params()
    target = slo_target_rps(
        params,
        prompt_tokens=estimate_tokens(PROMPT),
        output_tokens=NEW_TOKENS,
        ttft_slo_s=TTFT_SLO_S,
        attainment=ATTAINMENT,
    )
    return round(target, 3)


def request_trace(shift_s: float = 0.0) -> RequestTrace:
    """Evenly spaced arrivals per segment (the same requests live and offline), shifted by ``shift_s``."""
    arrival: list[float] = []
    for start, end, rate in SEGMENTS:
        count = round((end - start) * rate)
        arrival += [start + (i + 0.5) / rate for i in range(count)]
    n = len(arrival)
    duration = SEGMENTS[-1][1]
    return RequestTrace(
        f"step +{shift_s:g}s",
        tuple(t + shift_s for t in arrival),
        (estimate_tokens(PROMPT),) * n,
        (NEW_TOKENS,) * n,
        duration + shift_s,
    )


def metric_definition() -> dict[str, Any]:
    counters = ENGINES[EngineKind.TGI].counters
    return {
        "name": METRIC,
        "query": DEMAND.promql(counters),
        "description": "Demand with compressed time constants (backtest faithfulness test).",
    }


def objects(namespace: str, pool: GpuNodePool) -> list[tuple[str, dict[str, Any]]]:
    labels = pod_labels(SERVICE)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": SERVICE, "namespace": namespace},
        "spec": {
            "replicas": MIN_REPLICAS,
            "selector": {"matchLabels": labels},
            "template": {
                # The model load time, played by kwok: Running, then Ready START_DELAY_S later.
                "metadata": {
                    "labels": labels,
                    "annotations": {READY_DELAY_ANNOTATION: f"{START_DELAY_S:g}s"},
                },
                "spec": {
                    "nodeSelector": pool.node_selector,
                    "tolerations": pool.tolerations,
                    "containers": [
                        {
                            "name": "tgi",
                            "image": "registry.invalid/tgi:1",
                            "resources": {"limits": {GPU_RESOURCE: "1"}},
                        }
                    ],
                },
            },
        },
    }
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": SERVICE, "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": SERVICE},
            "minReplicas": MIN_REPLICAS,
            "maxReplicas": MAX_REPLICAS,
            "metrics": [
                {
                    "type": "External",
                    "external": {
                        "metric": {
                            "name": METRIC,
                            "selector": {"matchLabels": {"app.kubernetes.io/instance": SERVICE}},
                        },
                        "target": {"type": "AverageValue", "averageValue": str(target_rps())},
                    },
                }
            ],
            "behavior": behavior_to_manifest(BEHAVIOR),
        },
    }
    return [
        (f"/apis/apps/v1/namespaces/{namespace}/deployments", deployment),
        (f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers", hpa),
    ]


@dataclass
class HpaRecord:
    """The HPA's status as seen by the watch: (loop time, desiredReplicas, metric total, lastScaleTime)."""

    writes: list[tuple[float, int, float | None, str | None]] = field(default_factory=list)

    async def seen(self, hpa: dict[str, Any]) -> None:
        status = hpa.get("status", {})
        value = None
        for metric in status.get("currentMetrics") or []:
            current = metric.get("external", {}).get("current", {})
            if "averageValue" in current:
                replicas = max(int(status.get("currentReplicas") or 1), 1)
                value = float(parse_quantity(current["averageValue"]) * Decimal(replicas))
        entry = (
            asyncio.get_running_loop().time(),
            int(status.get("desiredReplicas") or 0),
            value,
            status.get("lastScaleTime"),
        )
        if not self.writes or self.writes[-1][1:] != entry[1:]:
            self.writes.append(entry)

    def desired_at(self, t: float) -> int | None:
        """The desired replicas the HPA had written by loop time ``t``."""
        value = None
        for at, desired, _, _ in self.writes:
            if at > t:
                break
            value = desired
        return value


@contextlib.asynccontextmanager
async def demand_metric_served(control_plane: ControlPlane) -> AsyncIterator[None]:
    """The test's demand definition added to the adapter's ConfigMap, removed afterwards."""
    path = f"/api/v1/namespaces/{ADAPTER_NAMESPACE}/configmaps/{METRICS_CONFIGMAP}"
    status, original = await control_plane.request("GET", path)
    assert status == 200, original
    document = yaml.safe_load(original["data"]["metrics.yaml"])
    document["metrics"] = [*document.get("metrics", []), metric_definition()]
    patch = {"data": {"metrics.yaml": yaml.safe_dump(document)}}
    status, body = await control_plane.request(
        "PATCH", path, body=patch, content_type="application/merge-patch+json"
    )
    assert status == 200, body
    try:
        yield
    finally:
        restore = {"data": {"metrics.yaml": original["data"]["metrics.yaml"]}}
        await control_plane.request("PATCH", path, body=restore, content_type="application/merge-patch+json")


@dataclass(frozen=True)
class Comparison:
    offset_s: float
    steps: int
    identical: int
    max_difference: int
    rows: tuple[tuple[float, int, int, float | None], ...]  # (trace time, model, real, model signal)

    @property
    def share_identical(self) -> float:
        return self.identical / self.steps if self.steps else 0.0


def compare(
    result: RunResult, offset_s: float, record: HpaRecord, zero: float, duration: float, period: float
) -> Comparison:
    """The replay's desired replicas at each of its syncs against the real HPA's half a sync later."""
    rows = []
    for tick in result.ticks:
        t = tick.time - offset_s  # trace time of this sync
        if not 0 <= t <= duration:
            continue
        real = record.desired_at(zero + t + period / 2)
        if real is None:
            continue
        rows.append((t, tick.desired, real, tick.signal))
    diffs = [abs(m - r) for _, m, r, _ in rows]
    return Comparison(offset_s, len(rows), sum(d == 0 for d in diffs), max(diffs, default=0), tuple(rows))


def measured_sync_period(record: HpaRecord) -> float:
    """The real controller's sync period, fitted to its status writes.

    kube-controller-manager re-queues an HPA one sync period after its reconcile *ends*, so the
    period is the flag plus the reconcile time (a metric read through the aggregation layer and the
    status write: tens of milliseconds), and the syncs drift against a fixed grid by that much per
    sync. Writes are numbered by whole nominal periods between them (a sync that changes nothing
    writes nothing) and the period is the least-squares slope of time over number.
    """
    # Only syncs that read the metric: a sync that failed to (the first pod still loading) is
    # re-queued by the controller's error backoff, not by the period.
    times = [at for at, _, value, _ in record.writes if value is not None]
    if len(times) < 3:
        return SYNC_PERIOD_S
    numbers = [0]
    for a, b in itertools.pairwise(times):
        numbers.append(numbers[-1] + max(1, round((b - a) / SYNC_PERIOD_S)))
    n = len(times)
    mean_x, mean_y = sum(numbers) / n, sum(times) / n
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(numbers, times, strict=True)) / sum(
        (x - mean_x) ** 2 for x in numbers
    )
    return round(slope, 4)


def attainment_live(report: LoadReport) -> float:
    met = sum(1 for r in report.requests if r.outcome == "ok" and r.ttft_s <= TTFT_SLO_S)
    return met / report.planned  # a request never sent (none here) counts as a miss


def attainment_replay(result: RunResult) -> float:
    log = result.log
    return sum(1 for i in range(len(log)) if log.ttft(i) <= TTFT_SLO_S) / len(log)


@pytest.mark.timeout(420)
async def test_backtest_predicts_the_real_hpa_sync_by_sync(
    adapter: RunningAdapter,
    control_plane: ControlPlane,
    running_prometheus: PrometheusServer,
    gpu_nodes: GpuNodes,
    namespace: str,
) -> None:
    trace = request_trace()
    schedule = tuple(ScheduledRequest(t, n) for t, n in zip(trace.arrival, trace.output_tokens, strict=True))
    metric_path = (
        f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{METRIC}"
        f"?labelSelector=app.kubernetes.io%2Finstance%3D{SERVICE}"
    )
    record = HpaRecord()
    pool = await gpu_nodes(count=2, gpus_per_node=MAX_REPLICAS // 2)
    async with (
        demand_metric_served(control_plane),
        aiohttp.ClientSession() as session,
        Fleet(
            SERVICE,
            namespace=namespace,
            replicas=0,
            config=CONFIG,
            file_sd_dir=running_prometheus.file_sd_dir,
        ) as fleet,
    ):
        api = ApiSession(control_plane, session)
        for path, obj in objects(namespace, pool):
            status, body = await control_plane.request("POST", path, body=obj)
            assert status == 201, body

        async def served() -> bool:
            status, body = await control_plane.request("GET", metric_path)
            return status == 200 and bool(body.get("items"))

        hpas = f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers"
        async with (
            following_pods(
                fleet,
                kubeconfig=control_plane.kubeconfig,
                label_selector=f"app.kubernetes.io/instance={SERVICE}",
            ),
            background(api.watch(hpas, SERVICE, record.seen), "watch-hpa"),
        ):

            async def first_pod_serves() -> bool:
                return fleet.serving == MIN_REPLICAS

            await wait_for(first_pod_serves, timeout=60, interval=0.2, what="the first pod to be Ready")
            await wait_for(served, timeout=60, interval=0.5, what=f"{METRIC} through the aggregation layer")

            async def read_metric() -> bool:
                return bool(record.writes) and record.writes[-1][2] is not None

            await wait_for(read_metric, timeout=60, interval=0.5, what="the HPA to read the demand")
            spec = LoadSpec(
                Constant(0.0),
                duration_s=trace.duration,
                max_requests=len(schedule),
                schedule=schedule,
                prompt=PROMPT,
                stream=True,
                request_timeout_s=60.0,
                drain_timeout_s=30.0,
            )
            report = await run_load(fleet.url, spec)
    zero = report.started_at

    period = measured_sync_period(record)
    assert SYNC_PERIOD_S <= period < SYNC_PERIOD_S * 1.1, f"sync period {period} s"
    base = demand_policy("faithfulness", behavior=BEHAVIOR, demand=DEMAND, target=target_rps())
    policy = replace(
        base,
        sync_period_s=period,
        tolerance=TOLERANCE,
        downscale_stabilization_s=DOWNSCALE_STABILIZATION_S,
    )
    config = RunConfig(
        params=CONFIG.server_params(),
        cold_start=ColdStart(median_s=START_DELAY_S, sigma=0.0),
        min_replicas=MIN_REPLICAS,
        max_replicas=MAX_REPLICAS,
        initial_replicas=MIN_REPLICAS,
        scrape_interval_s=SCRAPE_INTERVAL_S,
        drain_after_s=30.0,
    )
    results = {d: replay(request_trace(d), policy, config) for d in OFFSETS}
    comparisons = [compare(results[d], d, record, zero, trace.duration, period) for d in OFFSETS]
    best = max(comparisons, key=lambda c: (c.identical, -c.max_difference, -c.offset_s))
    live, offline = attainment_live(report), attainment_replay(results[best.offset_s])

    writes = [(round(at - zero, 2), d, v) for at, d, v, _ in record.writes if at >= zero]
    # The demand each side read at the same sync (the real one from the status write that follows).
    signal_diffs = [
        real - model
        for t, _, _, model in best.rows
        if model is not None
        for real in [next((v for at, _, v in writes if t - 0.2 <= at <= t + period and v), None)]
        if real is not None
    ]
    phases = sorted(((at - zero) % period) for at, *_ in record.writes if at >= zero)
    lags = sorted(r.lag_s for r in report.requests)
    summary = {
        "sync_period_s": period,
        "offset_s": best.offset_s,
        "offsets": {c.offset_s: f"{c.identical}/{c.steps} max {c.max_difference}" for c in comparisons},
        "status_write_phase_median_s": round(phases[len(phases) // 2], 3) if phases else None,
        "identical": f"{best.identical}/{best.steps} ({best.share_identical:.1%})",
        "max_difference": best.max_difference,
        "signal_real_minus_model_mean_abs_max": [
            round(sum(abs(d) for d in signal_diffs) / max(len(signal_diffs), 1), 3),
            round(max((abs(d) for d in signal_diffs), default=0.0), 3),
        ],
        "attainment_live": round(live, 4),
        "attainment_replay": round(offline, 4),
        "send_lag_p50_p99_max_ms": [round(1000 * lags[int(q * (len(lags) - 1))], 1) for q in (0.5, 0.99, 1)],
        "load": report.summary(),
        "last_scale_times": sorted({s for *_, s in record.writes if s}),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
    table = "\n".join(
        f"{t:7.2f} model={m} real={r} signal={'-' if s is None else f'{s:.2f}'}{'' if m == r else '  <<'}"
        for t, m, r, s in best.rows
    )
    print(json.dumps(summary, indent=1))
    print(table)
    print("real status writes (trace time, desired, metric total):", writes)
    assert report.planned == len(trace)
    assert best.steps >= trace.duration / SYNC_PERIOD_S - 2
    assert max(r for _, _, r, _ in best.rows) > MIN_REPLICAS, "the step never scaled the Deployment up"
    assert best.share_identical >= 0.95, f"{summary}\n{table}"
    assert best.max_difference <= 1, f"{summary}\n{table}"
    assert abs(live - offline) <= 0.02, f"{summary}\n{table}"
