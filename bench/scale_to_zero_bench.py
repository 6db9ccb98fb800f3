"""First request at zero: time to first token through the activator while the real HPA wakes the
service, and requests lost (must be 0).

Starts the local stack on loopback, as the reaction benchmark does: etcd, kube-apiserver and
kube-controller-manager (v1.37, whose HPAScaleToZero gate is beta and on; HPA sync ``--sync``),
Prometheus scraping every ``--scrape`` seconds, the adapter (a process behind the aggregation
layer, serving the held-demand signal with a ``--window`` rate window and drain horizon), the
activator (a process, idle window ``--idle``) in front of a simulated fleet whose replicas follow
the Deployment and load the model for ``--load`` seconds before they serve.

Each trial waits until the HPA has scaled the service to zero (``ScaledToZero`` True, no replica
left), then sends ``--burst`` streaming requests at once and times, from the send: the HPA's
``spec.replicas`` leaving zero, the first replica serving, and each request's first token (the
first server-sent event). Every request must be answered with 200; any other answer is lost.

The expected first token is about ``scrape/2 + sync/2`` (the held count reaching the HPA) plus the
model load plus the activator's probe (``--probe``/4 while requests are held) plus one prefill.

    .venv/bin/python bench/scale_to_zero_bench.py --trials 5
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

from tgi_autoscaler.engines import ENGINES, EngineKind
from tgi_autoscaler.log import configure_logging
from tgi_autoscaler.signals import DemandSignal
from tgi_autoscaler_dev.localstack.aggregation import apiservice_available, apiservice_objects, local_adapter
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane, ControlPlaneSettings
from tgi_autoscaler_dev.localstack.process import ManagedProcess, background, free_port, running, wait_for
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer
from tgi_autoscaler_dev.sim.filesd import write_file_sd
from tgi_autoscaler_dev.sim.fleet import Fleet
from tgi_autoscaler_dev.sim.model import ReplicaConfig
from tgi_autoscaler_dev.sim.pods import target_group
from tgi_autoscaler_dev.sim.workload import external_metric_workload

NAMESPACE = "wake"
SERVICE = "zero"
METRIC = "tgi_request_demand_with_held"
REPLICA = ReplicaConfig(max_batch_size=64, token_rate=50.0, prefill_time_s=0.05)


class Follower:
    """Simulated replicas at the Deployment's count, and when the count last left zero."""

    def __init__(self, cp: ControlPlane, fleet: Fleet) -> None:
        self.cp = cp
        self.fleet = fleet
        self.woke_at = math.nan
        self.served_at = math.nan

    async def replicas(self) -> int:
        status, body = await self.cp.request(
            "GET", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{SERVICE}"
        )
        assert status == 200, body
        return int(body["spec"].get("replicas", 1))

    async def scaled_to_zero(self) -> bool:
        path = f"/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers/{SERVICE}"
        status, body = await self.cp.request("GET", path)
        assert status == 200, body
        conditions = body.get("status", {}).get("conditions", [])
        flag = next((c for c in conditions if c["type"] == "ScaledToZero"), None)
        return flag is not None and flag["status"] == "True"

    async def run(self) -> None:
        while True:
            want = await self.replicas()
            if want > 0 and self.fleet.size == 0:
                self.woke_at = time.monotonic()
            if want != self.fleet.size:
                await self.fleet.scale_to(want)
            if self.fleet.serving and math.isnan(self.served_at):
                self.served_at = time.monotonic()
            await asyncio.sleep(0.1)


async def _first_token(session: aiohttp.ClientSession, url: str) -> tuple[int, float]:
    """(status, seconds to the first server-sent event); inf when none came."""
    started = time.monotonic()
    body = {"inputs": "hello", "parameters": {"max_new_tokens": 8}}
    first = math.inf
    async with session.post(f"{url}/generate_stream", json=body) as resp:
        async for line in resp.content:
            if line.startswith(b"data:") and first == math.inf:
                first = time.monotonic() - started
        return resp.status, first


async def _trial(
    args: argparse.Namespace, follower: Follower, session: aiohttp.ClientSession, url: str
) -> tuple[float, float, list[tuple[int, float]]]:
    async def at_zero() -> bool:
        return await follower.scaled_to_zero() and follower.fleet.size == 0 and follower.fleet.draining == 0

    await wait_for(at_zero, timeout=120, interval=0.2, what="the HPA to scale the service to zero")
    await asyncio.sleep(args.scrape * 2)  # the activator's ready gauge has been scraped at zero
    sent = time.monotonic()
    follower.woke_at = follower.served_at = math.nan
    results = await asyncio.gather(*(_first_token(session, url) for _ in range(args.burst)))
    return follower.woke_at - sent, follower.served_at - sent, list(results)


async def _bench(args: argparse.Namespace, workdir: Path) -> int:
    cp = ControlPlane(
        workdir / "control-plane",
        settings=ControlPlaneSettings(hpa_sync_period_s=args.sync, hpa_downscale_stabilization_s=0),
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
    signal = DemandSignal(rate_window_s=args.window, drain_s=args.window)
    definition = {"name": METRIC, "query": signal.promql_with_held(ENGINES[EngineKind.TGI].counters)}
    metrics_file = workdir / "metrics.yaml"
    metrics_file.write_text(yaml.safe_dump({"metrics": [definition]}), encoding="utf-8")
    api, adapter = local_adapter(
        cp,
        prometheus_url=prom.url,
        workdir=workdir,
        metrics_file=metrics_file,
        extra_args=("--cache-ttl=0.5",),
    )
    rows: list[tuple[float, float, list[tuple[int, float]]]] = []
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
            min_replicas=0,
            max_replicas=4,
        ):
            await cp.apply(obj)
        async with Fleet(
            SERVICE,
            namespace=NAMESPACE,
            replicas=0,
            config=REPLICA,
            file_sd_dir=prom.file_sd_dir,
            start_delay_s=args.load,
        ) as fleet:
            port, metrics_port = free_port(), free_port()
            activator = ManagedProcess(
                name="tgi-autoscaler-activator",
                argv=[
                    sys.executable, "-m", "tgi_autoscaler", "--log-format=json", "activator",
                    f"--upstream={fleet.url}", "--bind-address=127.0.0.1", f"--port={port}",
                    f"--metrics-port={metrics_port}", f"--idle-after={args.idle}", "--max-held=256",
                    "--max-wait=120", f"--probe-interval={args.probe}",
                ],
                log_path=workdir / "activator.log",
            )  # fmt: skip
            async with running(activator), aiohttp.ClientSession() as session:
                labels = {
                    "namespace": NAMESPACE,
                    "app_kubernetes_io_instance": SERVICE,
                    "pod": "zero-activator",
                }
                write_file_sd(
                    prom.file_sd_dir / "activator.json", [target_group(f"127.0.0.1:{metrics_port}", labels)]
                )
                follower = Follower(cp, fleet)
                async with background(follower.run(), "follow-deployment"):
                    head = f"{'trial':>5} {'HPA woke (s)':>13} {'replica serves (s)':>19}"
                    print(f"{head} {'first token p50/max (s)':>24} {'lost':>5}")
                    for i in range(args.trials):
                        woke, serving, results = await _trial(
                            args, follower, session, f"http://127.0.0.1:{port}"
                        )
                        rows.append((woke, serving, results))
                        firsts = sorted(r[1] for r in results)
                        lost = sum(1 for r in results if r[0] != 200 or r[1] == math.inf)
                        print(
                            f"{i + 1:5d} {woke:13.2f} {serving:19.2f} "
                            f"{firsts[len(firsts) // 2]:11.2f} / {firsts[-1]:8.2f} {lost:5d}",
                            flush=True,
                        )
    load_after = os.getloadavg()
    firsts = sorted(r[1] for row in rows for r in row[2] if r[1] != math.inf)
    woke_all = sorted(row[0] for row in rows)
    served_all = sorted(row[1] for row in rows)
    lost = sum(1 for row in rows for r in row[2] if r[0] != 200 or r[1] == math.inf)
    total = sum(len(row[2]) for row in rows)
    print()
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load_before[0]:.2f} before, {load_after[0]:.2f} after"
    )
    print(
        f"settings: scrape {args.scrape:g} s, window {args.window} s, HPA sync {args.sync:g} s, model load "
        f"{args.load:g} s, activator probe {args.probe:g} s, {args.burst} requests per wake"
    )
    print(f"| {'measure':<46} | {'value':>8} |")
    print(f"|{'-' * 48}|{'-' * 10}|")
    for name, value in (
        (f"first token p50 ({len(firsts)} requests)", f"{firsts[len(firsts) // 2]:.2f} s" if firsts else "-"),
        ("first token max", f"{firsts[-1]:.2f} s" if firsts else "-"),
        ("HPA leaves zero p50 (request -> spec.replicas)", f"{woke_all[len(woke_all) // 2]:.2f} s"),
        ("first replica serves p50 (request -> serving)", f"{served_all[len(served_all) // 2]:.2f} s"),
        ("of which model load (simulated)", f"{args.load:.2f} s"),
        ("requests lost", f"{lost} / {total}"),
    ):
        print(f"| {name:<46} | {value:>8} |")
    return 0 if lost == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--burst", type=int, default=8, help="requests sent at once at zero")
    parser.add_argument("--scrape", type=float, default=1.0, help="Prometheus scrape interval (s)")
    parser.add_argument("--window", type=int, default=10, help="the signal's rate window and drain (s)")
    parser.add_argument("--sync", type=float, default=2.0, help="the HPA controller's sync period (s)")
    parser.add_argument("--target", type=float, default=2.0, help="AverageValue target (req/s per replica)")
    parser.add_argument("--load", type=float, default=10.0, help="model load of a new replica (s)")
    parser.add_argument("--idle", type=float, default=3.0, help="the activator's idle window (s)")
    parser.add_argument("--probe", type=float, default=1.0, help="the activator's probe interval (s)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.trials < 1 or args.burst < 1:
        parser.error("need --trials >= 1 and --burst >= 1")
    configure_logging("console", "WARNING")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="scale-to-zero-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    code = asyncio.run(_bench(args, workdir))
    print(f"done in {time.monotonic() - started:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
