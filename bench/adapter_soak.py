"""Soak: the adapter for 30 minutes at 500 reads/s, Prometheus restarted twice, metrics edited each minute.

What runs (all on loopback, all real): the local control plane (the adapter delegates authn/authz
to it and watches its metrics ConfigMap through it), Prometheus scraping ``tgi_exporter.py``
(7,500 one-pod services, gauges and counters, so each of the 500 reads/s has its own selector: the
read rate of 7,500 HPAs syncing every 15 s) and ``tgi-autoscaler adapter`` with its defaults
(grouped prefetch, 0.5 s cache), read over HTTPS as the aggregator reads it.

During the run:

- the load is open loop, in consecutive windows of ``--window`` seconds; every answer is counted
  by status, and reads not answered 10 s after their window are counted as lost (``unfinished``);
- Prometheus is stopped (SIGTERM) for ``--outage`` seconds at one third and two thirds of the run,
  then started on the same data directory. An outage window lasts from the stop until Prometheus
  is ready plus the prefetch staleness bound and one window; errors inside it are expected (503),
  errors outside it are failures;
- the metrics ConfigMap is edited every minute: an extra definition alternates between ``sum`` and
  ``max``, so the served definitions and the prefetch groups change while being read. With
  ``--definitions file`` there is no control plane: the adapter runs with ``--insecure-skip-auth``
  and ``--metrics-file``, and the file is rewritten every minute instead;
- the adapter's resident memory and open file descriptors are sampled every 10 s; the report gives
  their least-squares slope per hour after the first ``--warmup`` seconds.

Usage::

    .venv/bin/python bench/adapter_soak.py                 # the 30-minute soak
    .venv/bin/python bench/adapter_soak.py --minutes 3     # a short check of the script itself
    .venv/bin/python bench/adapter_soak.py --definitions file   # no control plane

It prints a summary table; exit status 1 if an error happened outside the outage windows or a
read was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import ssl
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from compare_prometheus_adapter import HPA, Server, _our_adapter, machine, running, start_stack, stop_stack
from metrics_load import Read, client_session, open_loop, read_once
from tgi_exporter import file_sd_groups, layout

from tgi_autoscaler.config.metrics import METRICS_CONFIGMAP_KEY
from tgi_autoscaler_dev.localstack.process import ManagedProcess, free_port, wait_for
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer
from tgi_autoscaler_dev.sim.filesd import write_file_sd

NAMESPACE, CONFIGMAP = "tgi-autoscaler", "adapter-metrics"
STALENESS_S = 10.0  # prefetch.maxStalenessSeconds default


@dataclass
class Window:
    start: float
    end: float
    statuses: Counter[str]
    p99_ms: float
    dropped: int


@dataclass
class Log:
    windows: list[Window] = field(default_factory=list)
    outages: list[tuple[float, float]] = field(default_factory=list)
    samples: list[tuple[float, float, int]] = field(default_factory=list)  # (t, rss MiB, fds)
    edits: int = 0
    edit_failures: int = 0


def _metrics_yaml(generation: int) -> str:
    aggregation = "sum" if generation % 2 == 0 else "max"
    document = {
        "includeDefaults": True,
        "metrics": [
            {
                "name": "soak_queue",
                "description": f"edit {generation}",
                "query": f"{aggregation}(tgi_queue_size{{$matchers}})",
            }
        ],
    }
    return yaml.safe_dump(document)


def _rss_and_fds(pid: int) -> tuple[float, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return rss_kib / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def _slope_per_hour(points: list[tuple[float, float]]) -> float:
    if len(points) < 3:
        return float("nan")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 3600 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


@dataclass
class FileStack:
    """Prometheus, the exporter and the adapter without a control plane (``--definitions file``)."""

    prom: PrometheusServer
    exporter: ManagedProcess
    client_ctx: ssl.SSLContext
    reads: tuple[Read, ...]
    workdir: Path
    definitions: Path


async def start_file_stack(workdir: Path, services: int, scrape_s: float) -> FileStack:
    prom = PrometheusServer(
        workdir / "prometheus", scrape_interval_s=scrape_s, evaluation_interval_s=scrape_s
    )
    await prom.start()
    port = free_port()
    exporter = ManagedProcess(
        name="tgi-exporter",
        argv=[
            sys.executable,
            str(Path(__file__).with_name("tgi_exporter.py")),
            f"--port={port}",
            "--namespaces=10",
            f"--services={services}",
            "--pods=1",
            "--lean",
        ],
        log_path=workdir / "tgi-exporter.log",
    )
    await exporter.start()
    served = layout(10, services, 1).services
    groups = file_sd_groups(served, f"127.0.0.1:{port}", per_namespace=True)
    write_file_sd(prom.file_sd_dir / "bench.json", groups)

    async def all_scraped() -> bool:
        result = await prom.query("count(tgi_queue_size)")
        return bool(result) and int(float(result[0]["value"][1])) == services

    await wait_for(all_scraped, timeout=180, what=f"Prometheus to scrape {services} pods")
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the adapter's self-signed certificate, on loopback
    reads = tuple(Read(s.namespace, s.selector) for s in served)
    return FileStack(prom, exporter, ctx, reads, workdir, workdir / "metrics.yaml")


def _file_adapter(stack: FileStack) -> Server:
    port = free_port()
    argv = [
        sys.executable, "-m", "tgi_autoscaler", "--log-format", "json", "adapter",
        "--bind-address=127.0.0.1", f"--secure-port={port}", "--insecure-skip-auth",
        f"--prometheus-url={stack.prom.url}", f"--metrics-file={stack.definitions}",
    ]  # fmt: skip
    process = ManagedProcess(
        name="ours", argv=argv, log_path=stack.workdir / "ours.log", env={"PYTHONUNBUFFERED": "1"}
    )
    return Server("ours", process, port)


async def soak(args: argparse.Namespace) -> int:
    info = machine()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tgi-soak-"))
    print(
        f"==> machine: {info['nproc']} CPUs ({info['cpu']}), load {info['load']}; workdir {workdir}",
        flush=True,
    )
    if args.definitions == "file":
        return await _soak_file(args, info, workdir)
    stack = await start_stack(workdir, (10, args.services, 1), args.scrape_interval, lean=True)
    log = Log()
    try:
        cp = stack.cp
        await cp.request("POST", "/api/v1/namespaces", body={"metadata": {"name": NAMESPACE}})
        status, body = await cp.request(
            "POST",
            f"/api/v1/namespaces/{NAMESPACE}/configmaps",
            body={"metadata": {"name": CONFIGMAP}, "data": {METRICS_CONFIGMAP_KEY: _metrics_yaml(0)}},
        )
        if status != 201:
            raise RuntimeError(f"creating the metrics ConfigMap: {status} {body}")
        server = _our_adapter(
            "ours",
            stack,
            cache_ttl=None,
            profile=None,
            extra=[f"--metrics-configmap={NAMESPACE}/{CONFIGMAP}"],
        )

        async def edit_configmap(generation: int) -> bool:
            status, _ = await cp.request(
                "PATCH",
                f"/api/v1/namespaces/{NAMESPACE}/configmaps/{CONFIGMAP}",
                body={"data": {METRICS_CONFIGMAP_KEY: _metrics_yaml(generation)}},
                content_type="application/merge-patch+json",
            )
            return status == 200

        async with running([server], stack):
            await _run(args, server, stack.prom, stack.client_ctx, stack.reads, edit_configmap, log)
    finally:
        await stop_stack(stack)
    return report(args, info, log)


async def _soak_file(args: argparse.Namespace, info: dict[str, str], workdir: Path) -> int:
    stack = await start_file_stack(workdir, args.services, args.scrape_interval)
    stack.definitions.write_text(_metrics_yaml(0))
    log = Log()
    try:
        server = _file_adapter(stack)

        async def edit_file(generation: int) -> bool:
            staged = stack.definitions.with_suffix(".new")
            staged.write_text(_metrics_yaml(generation))
            staged.replace(stack.definitions)
            return True

        async def answers() -> bool:
            async with client_session(stack.client_ctx, limit=1) as session:
                status, _, _ = await read_once(session, server.base_url, stack.reads[0], HPA, timeout_s=5)
            return status == 200

        await server.process.start()
        try:
            await server.process.wait_ready(answers, timeout=120)
            await _run(args, server, stack.prom, stack.client_ctx, stack.reads, edit_file, log)
        finally:
            await server.process.stop()
    finally:
        await stack.exporter.stop()
        await stack.prom.stop()
    return report(args, info, log)


async def _run(
    args: argparse.Namespace,
    server: Server,
    prom: PrometheusServer,
    client_ctx: ssl.SSLContext,
    reads: tuple[Read, ...],
    edit_definitions: Callable[[int], Awaitable[bool]],
    log: Log,
) -> None:
    t0 = time.monotonic()
    duration = args.minutes * 60
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            rss, fds = _rss_and_fds(server.pid)
            log.samples.append((time.monotonic() - t0, rss, fds))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 10)

    async def edit() -> None:
        generation = 0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 60)
            if stop.is_set():
                return
            generation += 1
            ok = await edit_definitions(generation)
            log.edits += 1
            log.edit_failures += not ok

    async def outages() -> None:
        for fraction in (1 / 3, 2 / 3):
            delay = t0 + fraction * duration - time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(delay, 0))
            if stop.is_set():
                return
            began = time.monotonic() - t0
            print(f"==> {began:.0f} s: Prometheus stopped for {args.outage:g} s", flush=True)
            await prom.stop()
            await asyncio.sleep(args.outage)
            await prom.start()
            ready = time.monotonic() - t0
            log.outages.append((began, ready + STALENESS_S + args.window))

    async def load() -> None:
        while time.monotonic() - t0 < duration:
            start = time.monotonic() - t0
            run = await open_loop(
                "ours", server.base_url, client_ctx, reads, HPA, rate=args.rate, seconds=args.window
            )
            log.windows.append(
                Window(start, time.monotonic() - t0, run.statuses, run.percentile(0.99), run.dropped)
            )
        stop.set()

    await asyncio.gather(load(), sample(), edit(), outages())


def report(args: argparse.Namespace, info: dict[str, str], log: Log) -> int:
    def in_outage(w: Window) -> bool:
        return any(w.start < end and w.end > begin for begin, end in log.outages)

    inside: Counter[str] = Counter()
    outside: Counter[str] = Counter()
    lost = dropped = 0
    p99s = []
    for w in log.windows:
        target = inside if in_outage(w) else outside
        target.update(w.statuses)
        lost += w.statuses.get("unfinished", 0)
        dropped += w.dropped
        if not in_outage(w):
            p99s.append(w.p99_ms)
    outside_errors = sum(n for status, n in outside.items() if status != "200")
    after = [(t, rss, fds) for t, rss, fds in log.samples if t >= args.warmup]
    rss_slope = _slope_per_hour([(t, rss) for t, rss, _ in after])
    fd_slope = _slope_per_hour([(t, float(fds)) for t, _, fds in after])
    rows = [
        ("duration", f"{args.minutes:g} min at {args.rate:g} reads/s, {args.services:,} distinct selectors"),
        ("reads answered", f"{sum(inside.values()) + sum(outside.values()):,}"),
        ("outside the outage windows", ", ".join(f"{k}: {v:,}" for k, v in sorted(outside.items()))),
        ("inside the outage windows", ", ".join(f"{k}: {v:,}" for k, v in sorted(inside.items())) or "-"),
        ("errors outside the outage windows", str(outside_errors)),
        ("reads lost (unanswered 10 s after their window) / not sent", f"{lost} / {dropped}"),
        (
            "p99 per window outside outages, median / max",
            f"{statistics.median(p99s):.1f} / {max(p99s):.1f} ms" if p99s else "-",
        ),
        ("Prometheus outages (s from start)", ", ".join(f"{a:.0f}-{b:.0f}" for a, b in log.outages)),
        ("ConfigMap edits (failed)", f"{log.edits} ({log.edit_failures})"),
        (
            "RSS first / last / max",
            (
                f"{log.samples[0][1]:.1f} / {log.samples[-1][1]:.1f} / "
                f"{max(s[1] for s in log.samples):.1f} MiB"
                if log.samples
                else "-"
            ),
        ),
        (f"RSS slope after {args.warmup:g} s", f"{rss_slope:+.2f} MiB/h"),
        (
            "open fds first / last / max",
            (
                f"{log.samples[0][2]} / {log.samples[-1][2]} / {max(s[2] for s in log.samples)}"
                if log.samples
                else "-"
            ),
        ),
        (f"fd slope after {args.warmup:g} s", f"{fd_slope:+.2f} per hour"),
        (
            "host",
            f"{info['nproc']} CPUs ({info['cpu']}), load average at start {info['load']}, "
            f"at end {' '.join(f'{x:.1f}' for x in os.getloadavg())}",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    ok = outside_errors == 0 and lost == 0 and dropped == 0 and log.edit_failures == 0
    print(
        f"\n{'PASS' if ok else 'FAIL'}: no error outside the outage windows and no lost read"
        if ok
        else "\nFAIL: errors outside the outage windows, lost reads or failed edits"
    )
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=500.0, help="reads per second")
    parser.add_argument("--services", type=int, default=7_500, help="one-pod services = distinct selectors")
    parser.add_argument("--window", type=float, default=5.0, help="seconds per load window")
    parser.add_argument("--outage", type=float, default=20.0, help="seconds Prometheus stays down, twice")
    parser.add_argument("--warmup", type=float, default=120.0, help="seconds left out of the slopes")
    parser.add_argument("--scrape-interval", type=float, default=5.0, help="seconds")
    parser.add_argument("--workdir", type=Path, default=None, help="logs of every component go here")
    parser.add_argument(
        "--definitions",
        choices=("configmap", "file"),
        default="configmap",
        help="configmap: a control plane, the adapter watching its ConfigMap (default); file: no "
        "control plane, a watched file",
    )
    return asyncio.run(soak(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
