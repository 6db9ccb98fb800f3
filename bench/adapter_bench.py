"""Benchmark of external metric reads: cache hits, cache misses, and Prometheus queried directly.

Starts a real Prometheus (loopback) scraping four simulated TGI pods, then runs the adapter in a
child process pinned to one CPU (plain HTTP on loopback: TLS and authentication are measured by the
security layer's own benchmark), with JSON access logs on as in production. An open-loop load
generator in this process sends reads at a fixed rate and records each latency:

- ``adapter hit``:  one selector, so all but one read per TTL are served from the cache;
- ``adapter miss``: a distinct selector per read, so every read is a Prometheus query;
- ``prometheus``:   the same PromQL sent straight to Prometheus' /api/v1/query.

Usage::

    .venv/bin/python bench/adapter_bench.py [--rate 1000] [--miss-rate 200] [--seconds 10]

Prints a table; resident memory is the adapter's VmRSS after its warm-up and after the load.
"CPU ms/read" is the server process' user+system CPU time divided by the reads it answered, and
"reads/s per core" its inverse: the capacity of one dedicated core, which stays meaningful when the
machine is shared and wall-clock latencies are dominated by waiting for a CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp

API = "/apis/external.metrics.k8s.io/v1beta1/namespaces/bench/tgi_queue_size"
SELECTOR = "app.kubernetes.io/instance=llama"
PROMQL = 'sum(tgi_queue_size{namespace="bench",app_kubernetes_io_instance="llama"})'


@dataclass(frozen=True)
class Result:
    name: str
    target_rate: float
    sent: int
    ok: int
    seconds: float
    latencies_ms: list[float]
    cpu_s: float = float("nan")  # CPU time the server process used during the row

    @property
    def achieved(self) -> float:
        return self.ok / self.seconds

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (from /proc; clock ticks of 1/100 s)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measured(pid: int, row: Awaitable[Result]) -> Result:
    before = _cpu_seconds(pid)
    result = await row
    return replace(result, cpu_s=_cpu_seconds(pid) - before)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _open_loop(
    name: str,
    session: aiohttp.ClientSession,
    request: Callable[[int], tuple[str, str, dict[str, str] | None]],
    *,
    rate: float,
    seconds: float,
) -> Result:
    """Send ``rate`` requests per second for ``seconds`` regardless of answers (open loop)."""
    latencies: list[float] = []
    ok = 0
    tasks: set[asyncio.Task[None]] = set()

    async def one(index: int) -> None:
        nonlocal ok
        method, url, form = request(index)
        started = time.perf_counter()
        async with session.request(method, url, data=form) as response:
            await response.read()
            if response.status in (200, 404):
                ok += 1
        latencies.append((time.perf_counter() - started) * 1000)

    interval = 1.0 / rate
    start = time.perf_counter()
    sent = 0
    while (now := time.perf_counter()) - start < seconds:
        due = int((now - start) / interval) + 1
        while sent < due:
            task = asyncio.create_task(one(sent))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        await asyncio.sleep(max(0.0, start + sent * interval - time.perf_counter()))
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    elapsed = time.perf_counter() - start
    return Result(name, rate, sent, ok, elapsed, latencies)


def _serve(args: argparse.Namespace) -> None:
    """Child process: the adapter on one CPU."""
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    from aiohttp import web
    from prometheus_client import CollectorRegistry

    from tgi_autoscaler.adapter.app import build_app
    from tgi_autoscaler.adapter.definitions import DefinitionStore
    from tgi_autoscaler.adapter.own_metrics import AdapterMetrics
    from tgi_autoscaler.adapter.prometheus import PrometheusClient
    from tgi_autoscaler.config.metrics import AdapterSettings, MetricsConfig
    from tgi_autoscaler.log import configure_logging

    configure_logging("json", "INFO")

    async def main() -> None:
        settings = AdapterSettings.model_validate(
            {"prometheus": {"url": args.prometheus}, "cache": {"ttlSeconds": args.ttl}}, by_alias=True
        )
        metrics = AdapterMetrics(CollectorRegistry())
        async with PrometheusClient(settings.prometheus, metrics=metrics) as client:
            app = build_app(
                settings,
                prometheus=client,
                definitions=DefinitionStore(MetricsConfig(), metrics=metrics),
                metrics=metrics,
            )
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", args.port).start()
            await asyncio.Event().wait()

    asyncio.run(main())


async def _bench(args: argparse.Namespace) -> None:
    from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer
    from tgi_autoscaler_dev.sim.fleet import Fleet

    workdir = Path(tempfile.mkdtemp(prefix="adapter-bench-"))
    prometheus = PrometheusServer(workdir / "prometheus", scrape_interval_s=1.0)
    await prometheus.start()
    port = _free_port()
    log_file = (workdir / "adapter.log").open("w")
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", "--port", str(port), "--prometheus", prometheus.url,
        "--ttl", str(args.ttl),
        stdout=subprocess.DEVNULL,
        stderr=log_file,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    results: list[Result] = []
    try:
        async with (
            Fleet("llama", namespace="bench", replicas=4, file_sd_dir=prometheus.file_sd_dir),
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as session,
        ):
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{base}{API}", params={"labelSelector": SELECTOR}) as probe:
                        if probe.status == 200:
                            break
                if time.monotonic() > deadline:
                    raise RuntimeError("the adapter never served the metric; see " + str(workdir))
                await asyncio.sleep(0.5)
            warm = await _open_loop(
                "warm-up",
                session,
                lambda i: ("GET", f"{base}{API}?labelSelector={SELECTOR}", None),
                rate=args.rate,
                seconds=2,
            )
            del warm
            rss_before = _rss_mib(child.pid)
            prometheus_pid = prometheus.process.pid or 0
            results.append(
                await _measured(
                    child.pid,
                    _open_loop(
                        "adapter, cache hit",
                        session,
                        lambda i: ("GET", f"{base}{API}?labelSelector={SELECTOR}", None),
                        rate=args.rate,
                        seconds=args.seconds,
                    ),
                )
            )
            results.append(
                await _measured(
                    child.pid,
                    _open_loop(
                        "adapter, cache miss",
                        session,
                        lambda i: ("GET", f"{base}{API}?labelSelector={SELECTOR},req+notin+(r{i})", None),
                        rate=args.miss_rate,
                        seconds=args.seconds,
                    ),
                )
            )
            results.append(
                await _measured(
                    prometheus_pid,
                    _open_loop(
                        "prometheus, direct",
                        session,
                        lambda i: ("POST", f"{prometheus.url}/api/v1/query", {"query": PROMQL}),
                        rate=args.miss_rate,
                        seconds=args.seconds,
                    ),
                )
            )
            rss_after = _rss_mib(child.pid)
    finally:
        child.terminate()
        await asyncio.wait_for(child.wait(), timeout=10)
        log_file.close()
        await prometheus.stop()

    load = os.getloadavg()[0]
    print(
        f"adapter pinned to one CPU; {os.cpu_count()} CPUs, load average {load:.1f} while measuring; "
        f"{args.seconds:g} s per row"
    )
    print(
        f"{'scenario':<22}{'target/s':>9}{'achieved/s':>11}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'CPU ms/read':>12}{'reads/s per core':>18}"
    )
    for r in results:
        cpu_per_read = r.cpu_s * 1000 / max(r.ok, 1)
        per_core = 1000 / cpu_per_read if cpu_per_read > 0 else float("nan")
        print(
            f"{r.name:<22}{r.target_rate:>9.0f}{r.achieved:>11.0f}"
            f"{r.percentile(0.5):>9.2f}{r.percentile(0.99):>9.2f}{max(r.latencies_ms):>9.2f}"
            f"{cpu_per_read:>12.3f}{per_core:>18.0f}"
        )
    print(f"adapter resident memory: {rss_before:.1f} MiB after warm-up, {rss_after:.1f} MiB after load")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="cache-hit reads per second")
    parser.add_argument(
        "--miss-rate", type=float, default=200.0, help="cache-miss and direct queries per second"
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--ttl", type=float, default=0.5)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--prometheus", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args)
    else:
        asyncio.run(_bench(args))


if __name__ == "__main__":
    main()
