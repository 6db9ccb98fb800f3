"""End-to-end reaction benchmark: a load step until the real HPA's ``desiredReplicas`` changes.

Starts the whole local stack on loopback, as the demo does: etcd, kube-apiserver and
kube-controller-manager (HPA sync period ``--sync``), Prometheus scraping every ``--scrape``
seconds, the adapter (as a process, registered as ``v1beta1.external.metrics.k8s.io`` behind the
aggregation layer, serving the demand signal with a ``--window`` rate window and the manifests'
0.5 s result cache) and one simulated TGI replica with room for the whole load (so the signal is
the arrival rate, with no queue). A Deployment and an HPA (AverageValue ``--target``) scale on the
signal; nothing follows the Deployment, since only the first decision is timed.

Each trial waits until the system is idle (the HPA reads 0 and wants ``minReplicas``), then a random
fraction of a sync period so the step falls at any phase of the scrapes and syncs, then sends
``--rate`` requests/s (exactly spaced, the first one at the step) and times the step to the watch
event of the HPA's status with a higher ``desiredReplicas``. The load stops at once after.

The bound is ``scrape + window + sync + 1 s``: the sample after the step may be taken up to a
scrape interval late, the rate over the window reaches any level above the target's tolerance
within one window, the HPA reads it at its next sync, and 1 s covers the API calls and the cache.
With a step of ``rate`` against a target of ``target`` the expected reaction is shorter: the rate
crosses ``1.1 * target`` after about ``window * 1.1 * target / rate`` seconds.

    .venv/bin/python bench/reaction_bench.py --trials 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tgi_autoscaler.engines import ENGINES, EngineKind
from tgi_autoscaler.k8s.quantity import parse_quantity
from tgi_autoscaler.log import configure_logging
from tgi_autoscaler.signals import DemandSignal
from tgi_autoscaler_dev.localstack.aggregation import apiservice_available, apiservice_objects, local_adapter
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane, ControlPlaneSettings
from tgi_autoscaler_dev.localstack.process import background, running, wait_for
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer
from tgi_autoscaler_dev.localstack.watch import ApiSession
from tgi_autoscaler_dev.sim.fleet import Fleet
from tgi_autoscaler_dev.sim.loadgen import LoadSpec, ScheduledRequest, run_load
from tgi_autoscaler_dev.sim.model import ReplicaConfig
from tgi_autoscaler_dev.sim.traces import Constant
from tgi_autoscaler_dev.sim.workload import external_metric_workload

NAMESPACE = "reaction"
SERVICE = "step"
METRIC = "tgi_request_demand"
# Room for the whole step on one replica: 64 sequences, 5 tokens each, about 100 requests/s.
REPLICA = ReplicaConfig(max_batch_size=64, token_rate=50.0, max_concurrent_requests=1024)
NEW_TOKENS = 5


@dataclass
class HpaStatus:
    """The latest status write of the HPA and an event set at every change."""

    desired: int = 0
    value: float | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    at: float = math.nan

    async def seen(self, hpa: dict[str, Any]) -> None:
        status = hpa.get("status", {})
        value = None
        for metric in status.get("currentMetrics") or []:
            current = metric.get("external", {}).get("current", {})
            if "averageValue" in current:
                replicas = max(int(status.get("currentReplicas") or 1), 1)
                value = float(parse_quantity(current["averageValue"]) * Decimal(replicas))
        desired = int(status.get("desiredReplicas") or 0)
        if (desired, value) != (self.desired, self.value):
            self.desired, self.value = desired, value
            self.at = asyncio.get_running_loop().time()
            self.changed.set()


def _quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile (p99 of 20 trials is the largest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def _trial(
    fleet: Fleet, status: HpaStatus, args: argparse.Namespace, rng: random.Random, timeout: float
) -> float:
    async def idle() -> bool:
        return status.desired == 1 and status.value == 0

    await wait_for(idle, timeout=args.window * 4 + 30, interval=0.1, what="the HPA to read 0 at 1 replica")
    await asyncio.sleep(rng.uniform(0, args.sync))
    count = math.ceil(timeout * args.rate)
    schedule = tuple(ScheduledRequest(i / args.rate, NEW_TOKENS) for i in range(count))
    spec = LoadSpec(
        Constant(0.0),
        duration_s=timeout,
        max_requests=count,
        schedule=schedule,
        drain_timeout_s=1.0,
    )
    load = asyncio.create_task(run_load(fleet.url, spec), name="step-load")
    loop = asyncio.get_running_loop()
    step = loop.time()
    try:
        async with asyncio.timeout(timeout):
            while status.desired <= 1:
                status.changed.clear()
                await status.changed.wait()
        return status.at - step
    finally:
        load.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await load


async def _bench(args: argparse.Namespace, workdir: Path) -> int:
    cp = ControlPlane(
        workdir / "control-plane",
        settings=ControlPlaneSettings(hpa_sync_period_s=args.sync, hpa_downscale_stabilization_s=10),
    )
    prom = PrometheusServer(
        workdir / "prometheus", scrape_interval_s=args.scrape, evaluation_interval_s=args.scrape
    )
    print(f"starting the control plane and Prometheus in {workdir}", flush=True)
    await cp.start()
    try:
        await prom.start()
        try:
            return await _with_stack(args, workdir, cp, prom)
        finally:
            await prom.stop()
    finally:
        await cp.stop()


async def _with_stack(
    args: argparse.Namespace, workdir: Path, cp: ControlPlane, prom: PrometheusServer
) -> int:
    demand = DemandSignal(rate_window_s=args.window, drain_s=args.window)
    definition = {"name": METRIC, "query": demand.promql(ENGINES[EngineKind.TGI].counters)}
    metrics_file = workdir / "metrics.yaml"
    metrics_file.write_text(yaml.safe_dump({"metrics": [definition]}), encoding="utf-8")
    api, adapter = local_adapter(
        cp,
        prometheus_url=prom.url,
        workdir=workdir,
        metrics_file=metrics_file,
        extra_args=("--cache-ttl=0.5",),
    )
    bound = args.scrape + args.window + args.sync + 1.0
    timeout = bound * 3
    rng = random.Random(args.seed)
    reactions: list[float] = []
    load_before = os.getloadavg()
    async with running(adapter):
        for obj in apiservice_objects(api):
            await cp.apply(obj)
        await wait_for(
            lambda: apiservice_available(cp, api.apiservice_name), timeout=60, what="APIService Available"
        )
        for obj in external_metric_workload(
            namespace=NAMESPACE,
            service=SERVICE,
            metric=METRIC,
            target=args.target,
            min_replicas=1,
            max_replicas=10,
        ):
            await cp.apply(obj)
        status = HpaStatus()
        hpas = f"/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers"
        async with (
            aiohttp.ClientSession() as session,
            Fleet(
                SERVICE, namespace=NAMESPACE, replicas=1, config=REPLICA, file_sd_dir=prom.file_sd_dir
            ) as fleet,
            background(ApiSession(cp, session).watch(hpas, SERVICE, status.seen), "watch-hpa"),
        ):
            print(f"{'trial':>5} {'reaction (s)':>13} {'value read':>11} {'desired':>8}", flush=True)
            for i in range(args.trials):
                reaction = await _trial(fleet, status, args, rng, timeout)
                reactions.append(reaction)
                print(
                    f"{i + 1:5d} {reaction:13.2f} {status.value or 0:11.2f} {status.desired:8d}", flush=True
                )
    load_after = os.getloadavg()
    p50, p99, worst = _quantile(reactions, 0.5), _quantile(reactions, 0.99), max(reactions)
    expected = args.scrape / 2 + args.window * 1.1 * args.target / args.rate + args.sync / 2
    print()
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    print(
        f"settings: scrape {args.scrape:g} s, rate window {args.window} s, HPA sync {args.sync:g} s, "
        f"step 0 -> {args.rate:g} req/s against a target of {args.target:g} req/s per replica"
    )
    print(f"| {'measure':<44} | {'seconds':>8} |")
    print(f"|{'-' * 46}|{'-' * 10}|")
    for name, value in (
        (f"p50 over {len(reactions)} trials", p50),
        ("p99", p99),
        ("max", worst),
        ("min", min(reactions)),
        ("expected mean (scrape/2 + crossing + sync/2)", expected),
        ("bound: scrape + window + sync + 1 s", bound),
    ):
        print(f"| {name:<44} | {value:8.2f} |")
    return 0 if worst <= bound else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--scrape", type=float, default=1.0, help="Prometheus scrape interval (s)")
    parser.add_argument("--window", type=int, default=10, help="the demand signal's rate window (s)")
    parser.add_argument("--sync", type=float, default=2.0, help="the HPA controller's sync period (s)")
    parser.add_argument("--target", type=float, default=2.0, help="AverageValue target (req/s per replica)")
    parser.add_argument("--rate", type=float, default=8.0, help="requests/s of the step")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.trials < 1 or args.rate <= 1.1 * args.target:
        parser.error("need --trials >= 1 and a --rate above 1.1 x --target")
    configure_logging("console", "WARNING")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="reaction-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    code = asyncio.run(_bench(args, workdir))
    print(f"done in {time.monotonic() - started:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
