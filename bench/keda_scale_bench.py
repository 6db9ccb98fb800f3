"""Metric reads at 100 and 1,000 autoscaled services: KEDA as vLLM production-stack sets it up vs ours.

One local control plane (etcd, kube-apiserver, kube-controller-manager with the HPA controller at
its production sync period, 15 s), one Prometheus scraping one light exporter of simulated vLLM pods
(one pod per service, vLLM's metric names, ``vllm:num_requests_waiting`` moving between 0 and 3),
and for each size N two phases on the same N Deployments (1 replica each, spread over 10
namespaces; their pods stay Pending: no node is needed, the HPA reads an External metric and the
Deployment's replica count only):

- ``KEDA``: KEDA v2.21 (operator and metrics server, built from its Go module) owns
  ``v1beta1.external.metrics.k8s.io``; N ScaledObjects in the form vLLM production-stack's chart
  renders (trigger ``prometheus`` on ``sum(vllm:num_requests_waiting{...})`` for the service, threshold
  5, ``pollingInterval`` 15 s, ``cooldownPeriod`` 360 s, KEDA's defaults otherwise), one per
  Deployment; KEDA creates the N HPAs;
- ``ours``: ``tgi-autoscaler adapter`` with its defaults (0.5 s result cache, grouped prefetch) owns
  the APIService; N HPAs from ``render_hpa`` on the queue signal (``vllm_num_requests_waiting``,
  target 5 per replica), which reads the same series.

The real load is kube-controller-manager's HPA controller reading all N HPAs' metrics through
kube-apiserver's aggregator. Once all N HPAs report ``ScalingActive=True`` the bench measures a
steady window (``--window-seconds``):

- metric-read latency through kube-apiserver: the bench's own probe reads (``--probe-rate`` per
  second, each of a random HPA's metric and selector, exactly what the HPA asks for), p50/p99 of
  the 200 answers, and the errors (any other answer, or no answer within 10 s);
- Prometheus queries per second, from Prometheus' own ``prometheus_http_requests_total`` (handlers
  ``/api/v1/query`` and ``/api/v1/query_range``). Counting there instead of at a proxy keeps an
  extra HTTP hop out of one side's metric path (KEDA's reads are each a query, ours mostly are not,
  so a proxy would have slowed KEDA more than us); the bench itself sends no query during the window;
- CPU seconds per minute and peak RSS (``VmHWM``, reset at the start of the window) of the metrics
  servers: KEDA's operator plus its metrics server (the metrics server asks the operator over gRPC
  for every value, and the operator queries Prometheus), or our adapter;
- HPAs with ``ScalingActive=True`` at the end: the correctness check, N on both sides;
- HPA reconciliations in the window, from kube-controller-manager's
  ``horizontal_pod_autoscaler_controller_reconciliations_total``: how many metric reads the HPA
  controller actually made (its client's default 20 requests/s paces it at about 20 syncs/s, so
  1,000 HPAs are each read about every 50 s, not every 15 s, on both sides).

KEDA's operator runs with its defaults unless ``--keda-api-qps`` is given. At 1,000 ScaledObjects
the defaults (``--kube-api-qps=20``, burst 30) did not get there: the scale loop of every active
ScaledObject writes its status (``lastActiveTime``) every polling interval (every throttled
request in the operator's log was a status PATCH), so past about 300
ScaledObjects (300 / 15 s = 20/s) the operator's whole request budget goes to those patches and new
ScaledObjects get their HPA at a fraction of one per second (318 of 1,000 after 8 min). The 1,000
figures in docs/benchmarks.md therefore come from ``--keda-api-qps 200``.

Where KEDA's queries come from cannot be told apart at Prometheus: the operator sends them all, for
every read the metrics server forwards (``useCachedMetrics`` is off by default, so each read is a
query) and for its own polling loop. KEDA v2.21's polling loop reuses the HPA's last observation
instead of querying while the HPA is ``ScalingActive``, for ScaledObjects whose polling interval
does not matter (``minReplicaCount`` >= 1, no ``idleReplicaCount``, no ``useCachedMetrics``:
production-stack's), so here the loop should add next to nothing; the detail lines print the
queries per metric read (HPA syncs plus probes) to check that.

    .venv/bin/python bench/keda_scale_bench.py --sizes 100 --window-seconds 150
    .venv/bin/python bench/keda_scale_bench.py --sizes 1000 --window-seconds 150 --keda-api-qps 200

``--quick`` is a smoke run: 10 services, a 30 s window. Progress goes to stderr, the table and the
detail lines to stdout; ``--json`` also writes every phase's figures, and ``--from-json`` prints the
report of such files again (several runs' lists concatenated into one). The bench samples the load
average; the CPU of kube-apiserver and etcd is not part of its figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import re
import signal
import ssl
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import keda_outage_bench as outage_bench
from aiohttp import web
from metrics_load import cpu_seconds, machine_cpu, peak_rss_mib, reset_peak_rss

from tgi_autoscaler.config.service import parse_service_yaml
from tgi_autoscaler.log import configure_logging
from tgi_autoscaler.render import ServiceSource
from tgi_autoscaler.render.autoscaling import render_hpa
from tgi_autoscaler_dev.localstack.aggregation import apiservice_available, apiservice_objects, local_adapter
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane, ControlPlaneSettings
from tgi_autoscaler_dev.localstack.keda import KEDA_VERSION, running_keda
from tgi_autoscaler_dev.localstack.process import ManagedProcess, free_port, wait_for
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer
from tgi_autoscaler_dev.sim.filesd import write_file_sd

NAMESPACES = 10
KEDA, OURS = "KEDA", "ours"
HPA_SYNC_S = 15.0
THRESHOLD = 5
MAX_REPLICAS = 6
_INSTANCE = "app_kubernetes_io_instance"
_APISERVICE_PATH = "/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.external.metrics.k8s.io"


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# --- the exporter (a child process: its scrapes must not share the probe's event loop) -------------


def service_name(index: int) -> str:
    return f"llm-{index:04d}"


def namespace_of(index: int) -> str:
    return f"bench-{index % NAMESPACES:02d}"


def _noise(key: str) -> int:
    return hashlib.blake2s(key.encode(), digest_size=2).digest()[0]


def exposition(namespace: str, services: int, now: float) -> str:
    """One namespace's pods in vLLM's metric names, one pod per service.

    The queue stays between 0 and 3, below the threshold of 5 on one replica, so no HPA ever wants
    another replica: the bench measures reads, not scaling.
    """
    second = int(now)
    families: dict[str, list[str]] = {
        "vllm:num_requests_waiting": [],
        "vllm:num_requests_running": [],
        "vllm:kv_cache_usage_perc": [],
        "vllm:request_success_total": [],
    }
    for index in range(services):
        if namespace_of(index) != namespace:
            continue
        name = service_name(index)
        digest = hashlib.sha256(name.encode()).hexdigest()
        pod = f"{name}-{digest[:10]}-{digest[10:15]}"
        labels = (
            f'{_INSTANCE}="{name}",app_kubernetes_io_name="vllm",app_kubernetes_io_component="server",'
            f'model_name="meta-llama/Llama-3.1-8B-Instruct",namespace="{namespace}",pod="{pod}"'
        )
        waiting = (_noise(f"{pod}/{second // 10}") + _noise(f"{pod}/{second}") % 2) % 4
        running = _noise(f"{pod}/r/{second // 10}") % 8
        families["vllm:num_requests_waiting"].append(f"{{{labels}}} {waiting}")
        families["vllm:num_requests_running"].append(f"{{{labels}}} {running}")
        families["vllm:kv_cache_usage_perc"].append(f"{{{labels}}} {running / 8:.3f}")
        families["vllm:request_success_total"].append(
            f'{{{labels},finished_reason="stop"}} {second * 2 + _noise(pod)}'
        )
    out: list[str] = []
    for family, samples in families.items():
        kind = "counter" if family.endswith("_total") else "gauge"
        out.append(f"# TYPE {family} {kind}\n")
        out.extend(f"{family}{sample}\n" for sample in samples)
    return "".join(out)


def serve_exporter(port: int, services: int) -> None:
    async def metrics(request: web.Request) -> web.Response:
        text = exposition(request.match_info["namespace"], services, time.time())
        return web.Response(text=text, content_type="text/plain", charset="utf-8")

    app = web.Application()
    app.router.add_get("/metrics/{namespace}", metrics)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# --- objects ----------------------------------------------------------------------------------------


def deployment(index: int) -> dict[str, Any]:
    manifest = outage_bench.deployment(service_name(index), namespace_of(index))
    # Gated: the pod counts in the Deployment's replicas but the scheduler never retries it, so
    # 1,000 unschedulable pods do not load the machine every 5 minutes.
    manifest["spec"]["template"]["spec"]["schedulingGates"] = [{"name": "bench.tgi-autoscaler.io/hold"}]
    return manifest


def production_stack(index: int, prometheus_url: str) -> dict[str, Any]:
    """vLLM production-stack's ScaledObject (keda_outage_bench's), for service ``index``."""
    return outage_bench.production_stack(
        prometheus_url, MAX_REPLICAS, name=service_name(index), namespace=namespace_of(index)
    )


_SPEC = parse_service_yaml(
    "model: {id: meta-llama/Llama-3.1-8B-Instruct}\nengine: {kind: vllm}\n"
    f"autoscaling:\n  minReplicas: 1\n  maxReplicas: {MAX_REPLICAS}\n  signal: queue\n"
    f"  queue: {{targetPerReplica: {THRESHOLD}}}\n",
    source="bench",
)


def our_hpa(index: int) -> dict[str, Any]:
    return render_hpa(ServiceSource(name=service_name(index), namespace=namespace_of(index), spec=_SPEC))


# --- the API server, with one kept-alive session ------------------------------------------------------


class Kube:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self.cp.ssl_context(), limit=32, keepalive_timeout=60)
            self._session = aiohttp.ClientSession(
                base_url=self.cp.server, connector=connector, timeout=aiohttp.ClientTimeout(total=30)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(
            method, path, json=body, headers={"Accept": "application/json"}
        ) as response:
            text = await response.text()
            try:
                return response.status, json.loads(text)
            except ValueError:
                return response.status, text

    async def create_all(self, objects: Sequence[dict[str, Any]], plural_path: Callable[[str], str]) -> None:
        """POST every object, 16 at a time; an object that already exists is left as it is."""
        gate = asyncio.Semaphore(16)

        async def one(obj: dict[str, Any]) -> None:
            async with gate:
                status, body = await self.call("POST", plural_path(obj["metadata"]["namespace"]), obj)
            if status not in (201, 409):
                raise RuntimeError(f"creating {obj['kind']} {obj['metadata']['name']}: {status} {body}")

        await asyncio.gather(*(one(obj) for obj in objects))

    async def hpas(self) -> list[dict[str, Any]]:
        status, body = await self.call("GET", "/apis/autoscaling/v2/horizontalpodautoscalers")
        if status != 200:
            raise RuntimeError(f"listing HPAs: {status} {body}")
        return [h for h in body["items"] if h["metadata"]["namespace"].startswith("bench-")]

    async def count(self, path: str) -> int:
        status, body = await self.call("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body}")
        return sum(1 for item in body["items"] if item["metadata"]["namespace"].startswith("bench-"))


def _hpa_path(namespace: str) -> str:
    return f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers"


def _scaled_objects_path(namespace: str) -> str:
    return f"/apis/keda.sh/v1alpha1/namespaces/{namespace}/scaledobjects"


def _deployments_path(namespace: str) -> str:
    return f"/apis/apps/v1/namespaces/{namespace}/deployments"


def scaling_active(hpa: dict[str, Any]) -> bool:
    conditions = (hpa.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "ScalingActive" and c.get("status") == "True" for c in conditions)


def metric_path(hpa: dict[str, Any]) -> str:
    """The external metrics API path the HPA controller reads for this HPA's first metric."""
    metric = hpa["spec"]["metrics"][0]["external"]["metric"]
    selector = ",".join(f"{k}={v}" for k, v in sorted(metric["selector"]["matchLabels"].items()))
    return (
        f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{hpa['metadata']['namespace']}/"
        f"{metric['name']}?labelSelector={quote(selector, safe='')}"
    )


# --- counters from /metrics text ----------------------------------------------------------------------


def metric_sum(text: str, name: str, where: Callable[[str], bool] = lambda labels: True) -> float:
    """Sum of the samples of ``name`` whose label text satisfies ``where``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        match = re.match(rf"{re.escape(name)}(\{{[^}}]*\}})?\s+(\S+)", line)
        if match and where(match.group(1) or ""):
            total += float(match.group(2))
    return total


async def fetch_text(url: str, ctx: ssl.SSLContext | None = None) -> str:
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, ssl=ctx if ctx is not None else False, timeout=aiohttp.ClientTimeout(total=10)) as r,
    ):
        return await r.text()


def kcm_context(cp: ControlPlane) -> ssl.SSLContext:
    """Admin's client certificate against kube-controller-manager's self-signed serving cert."""
    assert cp.pki is not None
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(str(cp.pki.admin.cert), str(cp.pki.admin.key))
    return ctx


@dataclass
class Counters:
    prom_queries: float
    hpa_syncs: float
    hpa_sync_errors: float


async def counters(cp: ControlPlane, prom: PrometheusServer) -> Counters:
    prom_text = await fetch_text(f"{prom.url}/metrics")
    queries = metric_sum(
        prom_text,
        "prometheus_http_requests_total",
        lambda labels: 'handler="/api/v1/query"' in labels or 'handler="/api/v1/query_range"' in labels,
    )
    kcm_text = await fetch_text(f"https://127.0.0.1:{cp.kcm_port}/metrics", kcm_context(cp))
    name = "horizontal_pod_autoscaler_controller_reconciliations_total"
    if name not in kcm_text:
        raise RuntimeError(f"kube-controller-manager's /metrics has no {name}: {kcm_text[:200]}")
    syncs = metric_sum(kcm_text, name)
    errors = metric_sum(kcm_text, name, lambda labels: 'error="none"' not in labels)
    return Counters(queries, syncs, errors)


# --- one phase ------------------------------------------------------------------------------------------


@dataclass
class Phase:
    size: int
    server: str
    window_s: float = 0.0
    probed: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    prom_queries: float = 0.0
    hpa_syncs: float = 0.0
    hpa_sync_errors: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)
    peak_rss_mib: dict[str, float] = field(default_factory=dict)
    prom_cpu_s: float = 0.0
    machine_busy_pct: float = 0.0
    load: list[float] = field(default_factory=list)
    active_after_s: float = 0.0
    active_at_end: int = 0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    @property
    def queries_per_s(self) -> float:
        return self.prom_queries / self.window_s if self.window_s else float("nan")

    @property
    def reads(self) -> float:
        """Metric reads that reached the metrics server in the window: HPA syncs plus probes."""
        return self.hpa_syncs + self.probed

    def row(self) -> str:
        cpu = sum(self.cpu_s.values()) / self.window_s * 60 if self.window_s else float("nan")
        return (
            f"| {self.size:,} | {self.server} | {self.probed} | {self.percentile(0.5):.1f} | "
            f"{self.percentile(0.99):.1f} | {self.error_count} | {self.queries_per_s:.2f} | {cpu:.1f} | "
            f"{sum(self.peak_rss_mib.values()):.0f} | {self.active_at_end}/{self.size} |"
        )

    def detail(self) -> str:
        per_read = self.prom_queries / self.reads if self.reads else float("nan")
        cpu = ", ".join(f"{k} {v:.1f} s" for k, v in self.cpu_s.items())
        rss = ", ".join(f"{k} {v:.0f} MiB" for k, v in self.peak_rss_mib.items())
        errors = ", ".join(f"{k} x{v}" for k, v in self.errors.items()) or "none"
        return (
            f"- {self.size:,} {self.server}: all {self.size} HPAs ScalingActive {self.active_after_s:.0f} s "
            f"after the last object was created; window {self.window_s:.0f} s: HPA syncs "
            f"{self.hpa_syncs:.0f} ({self.hpa_syncs / self.window_s:.1f}/s, errors "
            f"{self.hpa_sync_errors:.0f}), probes {self.probed} (errors: {errors}); Prometheus queries "
            f"{self.prom_queries:.0f} = {per_read:.2f} per read; CPU {cpu}; peak RSS {rss}; "
            f"Prometheus CPU {self.prom_cpu_s:.1f} s; machine busy {self.machine_busy_pct:.0f}%; "
            f"load average {min(self.load):.1f}-{max(self.load):.1f}"
        )


async def wait_all_active(kube: Kube, size: int, what: str) -> float:
    started = time.monotonic()
    last = -1

    async def all_active() -> bool:
        nonlocal last
        hpas = await kube.hpas()
        active = sum(1 for h in hpas if scaling_active(h))
        if active != last:
            _say(f"  {what}: {len(hpas)} HPAs, {active} ScalingActive")
            last = active
        return len(hpas) == size and active == size

    # KEDA's operator, at its default 20 API requests/s, creates about one HPA per second.
    await wait_for(all_active, timeout=300 + size * 2.0, interval=5.0, what=f"{size} HPAs ScalingActive")
    return time.monotonic() - started


async def probe(kube: Kube, paths: Sequence[str], rate: float, seconds: float, phase: Phase) -> None:
    """Reads of random HPAs' metrics on a fixed schedule (open loop), each timed from when it was due."""
    rng = random.Random(phase.size)
    tasks: set[asyncio.Task[None]] = set()

    async def one(path: str, due: float) -> None:
        try:
            async with kube.session.get(
                path, headers={"Accept": "application/json"}, timeout=aiohttp.ClientTimeout(total=10)
            ) as response:
                body = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            phase.errors[type(exc).__name__] = phase.errors.get(type(exc).__name__, 0) + 1
            return
        if status == 200 and json.loads(body).get("items"):
            phase.latencies_ms.append((time.perf_counter() - due) * 1000)
        else:
            key = f"{status} {body[:80].decode(errors='replace')}" if status != 200 else "200 empty"
            phase.errors[key] = phase.errors.get(key, 0) + 1

    start = time.perf_counter()
    sent = 0
    while sent / rate < seconds:
        due = start + sent / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        task = asyncio.create_task(one(rng.choice(paths), due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        sent += 1
    if tasks:
        await asyncio.wait(tasks, timeout=15)
    phase.probed = sent


async def measure(
    kube: Kube,
    prom: PrometheusServer,
    phase: Phase,
    processes: dict[str, ManagedProcess],
    *,
    window_s: float,
    rate: float,
) -> None:
    cp = kube.cp
    paths = [metric_path(h) for h in await kube.hpas()]
    pids = {name: p.pid or 0 for name, p in processes.items()}
    prom_pid = prom.process.pid or 0
    for pid in pids.values():
        reset_peak_rss(pid)
    before = await counters(cp, prom)
    cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    prom_cpu0 = cpu_seconds(prom_pid)
    idle0, total0 = machine_cpu()
    phase.load.append(os.getloadavg()[0])

    async def sample_load() -> None:
        while True:
            await asyncio.sleep(10)
            phase.load.append(os.getloadavg()[0])

    sampler = asyncio.create_task(sample_load())
    started = time.monotonic()
    try:
        await probe(kube, paths, rate, window_s, phase)
    finally:
        sampler.cancel()
    phase.window_s = time.monotonic() - started
    phase.load.append(os.getloadavg()[0])
    after = await counters(cp, prom)
    phase.cpu_s = {name: cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
    phase.peak_rss_mib = {name: peak_rss_mib(pid) for name, pid in pids.items()}
    phase.prom_cpu_s = cpu_seconds(prom_pid) - prom_cpu0
    idle1, total1 = machine_cpu()
    phase.machine_busy_pct = 100 * (1 - (idle1 - idle0) / max(1.0, total1 - total0))
    phase.prom_queries = after.prom_queries - before.prom_queries
    phase.hpa_syncs = after.hpa_syncs - before.hpa_syncs
    phase.hpa_sync_errors = after.hpa_sync_errors - before.hpa_sync_errors
    phase.active_at_end = sum(1 for h in await kube.hpas() if scaling_active(h))


async def wait_pods(kube: Kube, size: int) -> None:
    """Every Deployment has its pod, so every HPA sees 1 current replica from its first sync."""

    async def created() -> bool:
        status, body = await kube.call("GET", "/apis/apps/v1/deployments")
        assert status == 200, body
        return sum(1 for d in body["items"] if (d.get("status") or {}).get("replicas") == 1) >= size

    await wait_for(created, timeout=600, interval=2.0, what=f"{size} Deployments to have their pod")


async def wait_gone(kube: Kube, path: str, what: str) -> None:
    async def gone() -> bool:
        return await kube.count(path) == 0

    await wait_for(gone, timeout=600, interval=2.0, what=what)


async def keda_phase(
    kube: Kube, prom: PrometheusServer, size: int, workdir: Path, args: argparse.Namespace
) -> Phase:
    phase = Phase(size, KEDA)
    flags = [f"--kube-api-qps={args.keda_api_qps:g}", f"--kube-api-burst={int(args.keda_api_qps * 1.5)}"]
    async with running_keda(
        kube.cp, workdir / f"keda-{size}", operator_args=flags if args.keda_api_qps else ()
    ) as keda:
        _say(f"{size} {KEDA}: creating {size} ScaledObjects")
        await kube.create_all([production_stack(i, prom.url) for i in range(size)], _scaled_objects_path)
        phase.active_after_s = await wait_all_active(kube, size, f"{size} {KEDA}")
        _say(f"{size} {KEDA}: all active; measuring {args.window_seconds:g} s")
        processes = {"operator": keda.operator, "metrics server": keda.metrics_server}
        await measure(kube, prom, phase, processes, window_s=args.window_seconds, rate=args.probe_rate)
        _say(f"{size} {KEDA}: done; deleting the ScaledObjects")
        for n in range(NAMESPACES):
            status, body = await kube.call("DELETE", _scaled_objects_path(f"bench-{n:02d}"))
            assert status == 200, body
        await wait_gone(kube, "/apis/keda.sh/v1alpha1/scaledobjects", "KEDA to remove its ScaledObjects")
        await wait_gone(kube, "/apis/autoscaling/v2/horizontalpodautoscalers", "KEDA to delete its HPAs")
    return phase


async def ours_phase(
    kube: Kube, prom: PrometheusServer, size: int, workdir: Path, args: argparse.Namespace
) -> Phase:
    phase = Phase(size, OURS)
    api, adapter = local_adapter(kube.cp, prometheus_url=prom.url, workdir=workdir / f"ours-{size}")
    await adapter.start()
    try:
        await kube.cp.apply(*apiservice_objects(api))
        await wait_for(
            lambda: apiservice_available(kube.cp, api.apiservice_name),
            timeout=120,
            what="our adapter's APIService",
        )
        _say(f"{size} {OURS}: creating {size} HPAs")
        await kube.create_all([our_hpa(i) for i in range(size)], _hpa_path)
        phase.active_after_s = await wait_all_active(kube, size, f"{size} {OURS}")
        _say(f"{size} {OURS}: all active; measuring {args.window_seconds:g} s")
        await measure(
            kube, prom, phase, {"adapter": adapter}, window_s=args.window_seconds, rate=args.probe_rate
        )
        _say(f"{size} {OURS}: done; deleting the HPAs")
        for n in range(NAMESPACES):
            status, body = await kube.call("DELETE", _hpa_path(f"bench-{n:02d}"))
            assert status == 200, body
        await wait_gone(kube, "/apis/autoscaling/v2/horizontalpodautoscalers", "the HPAs to be deleted")
    finally:
        await adapter.stop()
        with contextlib.suppress(Exception):
            await kube.call("DELETE", _APISERVICE_PATH)
    return phase


@contextlib.asynccontextmanager
async def stack(
    workdir: Path, services: int, scrape_s: float
) -> AsyncIterator[tuple[Kube, PrometheusServer]]:
    cp = ControlPlane(
        workdir / "control-plane",
        # The production defaults: the HPA controller syncs every HPA every 15 s.
        settings=ControlPlaneSettings(hpa_sync_period_s=HPA_SYNC_S, hpa_downscale_stabilization_s=300.0),
    )
    prom = PrometheusServer(
        workdir / "prometheus", scrape_interval_s=scrape_s, evaluation_interval_s=scrape_s
    )
    port = free_port()
    exporter = ManagedProcess(
        name="vllm-exporter",
        argv=[
            sys.executable,
            str(Path(__file__)),
            "--serve-exporter",
            str(port),
            "--services",
            str(services),
        ],
        log_path=workdir / "exporter.log",
    )
    kube = Kube(cp)
    await cp.start()
    try:
        await prom.start()
        await exporter.start()
        write_file_sd(
            prom.file_sd_dir / "vllm.json",
            [
                {"targets": [f"127.0.0.1:{port}"], "labels": {"__metrics_path__": f"/metrics/bench-{n:02d}"}}
                for n in range(NAMESPACES)
            ],
        )

        async def scraped() -> bool:
            result = await prom.query("count(vllm:num_requests_waiting)")
            return bool(result) and int(float(result[0]["value"][1])) == services

        await wait_for(scraped, timeout=120, interval=1.0, what=f"Prometheus to scrape {services} pods")
        for n in range(NAMESPACES):
            await cp.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"bench-{n:02d}"}})
        yield kube, prom
    finally:
        await kube.close()
        await exporter.stop()
        await prom.stop()
        await cp.stop()


async def run(args: argparse.Namespace) -> list[Phase]:
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="keda-scale-"))
    sizes: list[int] = args.sizes
    _say(f"workdir {workdir}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    phases: list[Phase] = []
    async with stack(workdir, max(sizes), args.scrape_interval) as (kube, prom):
        created = 0
        for size in sizes:
            if size > created:
                _say(f"creating Deployments {created}..{size - 1}")
                await kube.create_all([deployment(i) for i in range(created, size)], _deployments_path)
                created = size
                await wait_pods(kube, size)
            for runner in (keda_phase, ours_phase):
                phase = await runner(kube, prom, size, workdir, args)
                phases.append(phase)
                _say(phase.row())
                if args.json is not None:
                    args.json.write_text(json.dumps([asdict(p) for p in phases], indent=2))
    return phases


async def stoppable(work: Coroutine[Any, Any, list[Phase]]) -> list[Phase]:
    """``work`` cancelled on SIGTERM or SIGINT, so every process it started is stopped on the way out
    (a background job of a non-interactive shell ignores SIGINT, and the children run in their own
    sessions)."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    return await task


HEADER = (
    "| N | metrics server | reads probed | p50 ms | p99 ms | errors | Prom queries/s | CPU s/min | "
    "peak RSS MiB | HPAs active |\n|---|---|---|---|---|---|---|---|---|---|"
)


def _sizes(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_sizes, default=[100, 1000], help="comma-separated, e.g. 100,1000")
    parser.add_argument("--window-seconds", type=float, default=180.0)
    parser.add_argument("--probe-rate", type=float, default=2.0, help="probe reads per second")
    parser.add_argument("--scrape-interval", type=float, default=5.0, help="Prometheus, seconds")
    parser.add_argument(
        "--keda-api-qps",
        type=float,
        default=0.0,
        help="KEDA operator's --kube-api-qps (burst 1.5x); 0: KEDA's defaults (20, burst 30)",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 10 services, a 30 s window")
    parser.add_argument("--workdir", type=Path, default=None, help="logs of every component go here")
    parser.add_argument("--json", type=Path, default=None, help="also write every phase's figures here")
    parser.add_argument("--from-json", type=Path, default=None, help="print the report of a --json file")
    parser.add_argument("--serve-exporter", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--services", type=int, default=1000, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_exporter is not None:
        serve_exporter(args.serve_exporter, args.services)
        return 0
    if args.from_json is not None:
        phases = [Phase(**fields) for fields in json.loads(args.from_json.read_text())]
    else:
        if args.quick:
            args.sizes, args.window_seconds = [10], 30.0
        configure_logging("console")
        _say(f"KEDA {KEDA_VERSION}; sizes {args.sizes}; window {args.window_seconds:g} s")
        phases = asyncio.run(stoppable(run(args)))
    phases.sort(key=lambda p: (p.size, p.server != KEDA))
    print(HEADER)
    for phase in phases:
        print(phase.row())
    print()
    for phase in phases:
        print(phase.detail())
    return 0


if __name__ == "__main__":
    sys.exit(main())
