"""Side-by-side benchmark: this project's adapter against prometheus-adapter v0.12.0, same Prometheus.

What runs (all on loopback, all real):

- a local control plane (etcd, kube-apiserver, kube-controller-manager): both adapters delegate
  authentication (front-proxy CA from ``extension-apiserver-authentication``) and authorization
  (SubjectAccessReview) to it;
- Prometheus scraping ``tgi_exporter.py``: 500 simulated TGI pods (50 services x 10 pods in 10
  namespaces by default) with TGI's real metric names and values that move every second;
- three external metrics servers on the same Prometheus: ``ours`` (``tgi-autoscaler adapter`` with
  its defaults, including the 0.5 s result cache), ``ours, no cache`` (``--cache-ttl 0``: one
  Prometheus query per read, like prometheus-adapter) and ``prometheus-adapter`` with an
  ``externalRules`` entry computing the same ``sum(tgi_queue_size{...})``.

Each server is read directly over HTTPS, as the aggregator would: kept-alive connections
authenticated with the front-proxy client certificate, identity in ``X-Remote-User`` /
``X-Remote-Group`` (the HPA controller's ServiceAccount, which is not ``system:masters``, so both
servers do SubjectAccessReviews). Loads: closed loop at 1, 8 and 32 concurrent readers, then open
loop at the rates of 100, 1,000 and 10,000 HPAs syncing every 15 s. Servers take turns at each
level, so slow drifts of the shared machine hit all of them alike.

Then the outage scenario: Prometheus stopped for 20 s and started again, and (full run) Prometheus
frozen with SIGSTOP for 12 s, while every server is probed four times a second.

Usage::

    .venv/bin/python bench/compare_prometheus_adapter.py [--quick] [--no-docs] [--no-profile]

Prints the tables and (unless ``--no-docs``) writes them to the section "Comparison with
prometheus-adapter" of docs/benchmarks.md. A full run takes 6 to 7 minutes (the control plane's
start included), ``--quick`` (3 s runs, 10 s outage, no freeze and no profile) under 2.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import aiohttp
from compare_report import SECTION_HEADING, Measured, write_section
from compare_text import Results, Sanity, render
from metrics_load import (
    Identity,
    Read,
    RunResult,
    client_session,
    closed_loop,
    cpu_seconds,
    machine_cpu,
    open_loop,
    peak_rss_mib,
    read_once,
    reset_peak_rss,
)
from outage_probe import OutageSummary, Prober, classify, summarize, wait_recovered
from tgi_exporter import LEAN_SERIES_PER_POD, SERIES_PER_POD, file_sd_groups, layout

from tgi_autoscaler_dev.localstack.aggregation import issue_serving_cert
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane
from tgi_autoscaler_dev.localstack.pki import KeyPair
from tgi_autoscaler_dev.localstack.process import ManagedProcess, free_port, wait_for
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer
from tgi_autoscaler_dev.localstack.prometheus_adapter import (
    PROMETHEUS_ADAPTER_VERSION,
    PrometheusAdapterSettings,
    ensure_prometheus_adapter,
    external_rules_config,
    prometheus_adapter_process,
)
from tgi_autoscaler_dev.sim.filesd import write_file_sd

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs" / "benchmarks.md"
OURS, OURS_NO_CACHE, THEIRS = "ours", "ours, no cache", "prometheus-adapter"
HPA = Identity(
    "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
    ("system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"),
)
HPA_SYNC_S = 15.0
RELIST_S = 60.0  # the prometheus-adapter Helm chart's default --metrics-relist-interval


@dataclass(frozen=True)
class Plan:
    seconds: float
    concurrencies: tuple[int, ...]
    hpas: tuple[int, ...]
    servers: tuple[str, ...]
    outage_s: float
    freeze_s: float  # 0: skip the hung-Prometheus scenario
    profile_s: float  # 0: no profile


def plan_for(args: argparse.Namespace) -> Plan:
    closed = () if args.distinct else (1, 8, 32)
    if args.quick:
        return Plan(3.0, closed, (100, 1_000, 10_000), (OURS, OURS_NO_CACHE, THEIRS), 10.0, 0.0, 0.0)
    return Plan(
        args.seconds,
        closed,
        (100, 1_000, 10_000),
        (OURS, OURS_NO_CACHE, THEIRS),
        20.0,
        12.0,
        0.0 if args.no_profile else 15.0,
    )


@dataclass
class Server:
    name: str
    process: ManagedProcess
    port: int

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.process.pid is None:
            raise RuntimeError(f"{self.name} is not running")
        return self.process.pid


@dataclass
class Stack:
    cp: ControlPlane
    prom: PrometheusServer
    exporter: ManagedProcess
    serving: KeyPair
    client_ctx: ssl.SSLContext
    reads: tuple[Read, ...]
    workdir: Path


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        found = re.search(r"^Model name:\s*(.+)$", out, flags=re.MULTILINE)
        model = found.group(1).strip() if found else model
    mem_kib = int(re.findall(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[0])
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "memory": f"{mem_kib / 2**20:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load": " ".join(f"{x:.1f}" for x in os.getloadavg()),
    }


def _say(text: str) -> None:
    print(f"==> {text}", flush=True)


def _our_adapter(
    name: str,
    stack: Stack,
    *,
    cache_ttl: float | None,
    profile: Path | None,
    prefetch: bool = True,
    extra: Sequence[str] = (),
) -> Server:
    port = free_port()
    flags = [
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--tls-cert-file={stack.serving.cert}",
        f"--tls-private-key-file={stack.serving.key}",
        f"--kubeconfig={stack.cp.kubeconfig}",
        f"--prometheus-url={stack.prom.url}",
    ]
    if cache_ttl is not None:
        flags.append(f"--cache-ttl={cache_ttl:g}")
    if not prefetch:
        flags.append("--no-prefetch")
    flags += extra
    if profile is None:
        argv = [sys.executable, "-m", "tgi_autoscaler", "--log-format", "json", "adapter", *flags]
    else:
        argv = [
            sys.executable,
            str(Path(__file__).with_name("profiled_adapter.py")),
            str(profile),
            "--",
            *flags,
        ]
    slug = re.sub(r"\W+", "-", name).strip("-")
    process = ManagedProcess(
        name=name, argv=argv, log_path=stack.workdir / f"{slug}.log", env={"PYTHONUNBUFFERED": "1"}
    )
    return Server(name, process, port)


def _their_adapter(stack: Stack, binary: Path) -> Server:
    port = free_port()
    process = prometheus_adapter_process(
        PrometheusAdapterSettings(
            binary=binary,
            workdir=stack.workdir / "prometheus-adapter",
            port=port,
            prometheus_url=stack.prom.url,
            kubeconfig=stack.cp.kubeconfig,
            serving=stack.serving,
            relist_interval_s=RELIST_S,
        )
    )
    return Server(THEIRS, process, port)


def _answers_probe(server: Server, stack: Stack) -> Callable[[], Awaitable[bool]]:
    """True once ``server`` answers the first read with 200 (for prometheus-adapter: after discovery)."""

    async def answers() -> bool:
        async with client_session(stack.client_ctx, limit=1) as session:
            status, _, _ = await read_once(session, server.base_url, stack.reads[0], HPA, timeout_s=5)
        return status == 200

    return answers


@contextlib.asynccontextmanager
async def running(servers: Sequence[Server], stack: Stack) -> AsyncIterator[None]:
    for server in servers:
        await server.process.start()
    try:
        for server in servers:
            await server.process.wait_ready(_answers_probe(server, stack), timeout=120)
        yield
    finally:
        for server in servers:
            await server.process.stop()


async def prometheus_handler_counts(session: aiohttp.ClientSession, url: str) -> tuple[int, int]:
    """(query requests, discovery requests) Prometheus has served, from its own /metrics."""
    async with session.get(f"{url}/metrics") as response:
        text = await response.text()
    queries = discovery = 0
    for line in text.splitlines():
        if not line.startswith("prometheus_http_requests_total{"):
            continue
        handler = re.search(r'handler="([^"]*)"', line)
        value = int(float(line.rsplit(" ", 1)[1]))
        if handler is None:
            continue
        if handler.group(1) in ("/api/v1/query", "/api/v1/query_range"):
            queries += value
        elif handler.group(1) in ("/api/v1/series", "/api/v1/labels", "/api/v1/label/:name/values"):
            discovery += value
    return queries, discovery


async def subject_access_reviews(cp: ControlPlane) -> int:
    status, text = await cp.request("GET", "/metrics")
    if status != 200 or not isinstance(text, str):
        return 0
    total = 0
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{") and 'resource="subjectaccessreviews"' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


async def measure(server: Server, stack: Stack, run: Awaitable[RunResult]) -> Measured:
    async with aiohttp.ClientSession() as session:
        prom_pid = stack.prom.process.pid or 0
        q0, s0 = await prometheus_handler_counts(session, stack.prom.url)
        sar0 = await subject_access_reviews(stack.cp)
        cpu0, prom_cpu0 = cpu_seconds(server.pid), cpu_seconds(prom_pid)
        idle0, total0 = machine_cpu()
        reset_peak_rss(server.pid)
        result = await run
        cpu1, prom_cpu1 = cpu_seconds(server.pid), cpu_seconds(prom_pid)
        idle1, total1 = machine_cpu()
        peak = peak_rss_mib(server.pid)
        q1, s1 = await prometheus_handler_counts(session, stack.prom.url)
        sar1 = await subject_access_reviews(stack.cp)
    return Measured(
        run=result,
        adapter_cpu_s=cpu1 - cpu0,
        peak_rss_mib=peak,
        prom_queries=q1 - q0,
        prom_series=s1 - s0,
        sars=sar1 - sar0,
        prom_cpu_s=prom_cpu1 - prom_cpu0,
        machine_idle_pct=100 * (idle1 - idle0) / max(1.0, total1 - total0),
    )


async def load_runs(servers: Sequence[Server], stack: Stack, plan: Plan) -> list[Measured]:
    measured: list[Measured] = []
    for concurrency in plan.concurrencies:
        for server in servers:
            run = closed_loop(
                server.name,
                server.base_url,
                stack.client_ctx,
                stack.reads,
                HPA,
                concurrency=concurrency,
                seconds=plan.seconds,
            )
            measured.append(await measure(server, stack, run))
            _progress(measured[-1])
    for hpas in plan.hpas:
        # One selector per HPA when there are enough services (--distinct): nothing repeats.
        reads = stack.reads[:hpas] if len(stack.reads) >= hpas else stack.reads
        for server in servers:
            run = open_loop(
                server.name,
                server.base_url,
                stack.client_ctx,
                reads,
                HPA,
                rate=hpas / HPA_SYNC_S,
                seconds=plan.seconds,
            )
            measured.append(await measure(server, stack, run))
            _progress(measured[-1])
    return measured


def _progress(m: Measured) -> None:
    r = m.run
    print(
        f"    {r.adapter:<18} {m.load:<22} {r.throughput:8.1f} reads/s  p50 {r.percentile(0.5):7.2f} ms  "
        f"p99 {r.percentile(0.99):7.2f} ms  errors {r.errors}  CPU {m.adapter_cpu_s:.2f}s",
        flush=True,
    )


def _promql(read: Read) -> str:
    key, value = read.selector.split("=", 1)
    return f'sum(tgi_queue_size{{namespace="{read.namespace}",{key}="{value}"}})'


async def _prometheus_value(prom: PrometheusServer, read: Read) -> Decimal | None:
    result = await prom.query(_promql(read))
    return Decimal(result[0]["value"][1]) if result else None


async def sanity(servers: Sequence[Server], stack: Stack) -> Sanity:
    """Every server's value for every selector equals Prometheus' own answer to the same PromQL.

    Values move with each scrape, so one comparison is a bracket: Prometheus, then every server,
    then Prometheus again; it counts only if both Prometheus answers agree (no scrape in between).
    """
    agreeing = 0
    disagreements: list[str] = []
    async with client_session(stack.client_ctx, limit=4) as session:
        for read in stack.reads[:50]:
            last = ""
            for _ in range(8):
                before = await _prometheus_value(stack.prom, read)
                answers = {}
                for server in servers:
                    status, body, _ = await read_once(session, server.base_url, read, HPA)
                    answers[server.name] = classify(status, body)[1]
                after = await _prometheus_value(stack.prom, read)
                if before != after:
                    continue
                if all(v is not None and v == before for v in answers.values()):
                    agreeing += 1
                    break
                last = f"{read.namespace}/{read.selector}: prometheus={before} " + ", ".join(
                    f"{k}={v}" for k, v in answers.items()
                )
                # A cached answer may be up to one TTL (0.5 s) older than Prometheus' latest scrape.
                await asyncio.sleep(0.6)
            else:
                disagreements.append(last or f"{read.namespace}/{read.selector}: values kept moving")
        special = []
        first = stack.reads[0]
        cases = {
            "Kubernetes label key (app.kubernetes.io/instance=...)": Read(
                first.namespace,
                first.selector.replace("app_kubernetes_io_instance", "app.kubernetes.io/instance"),
            ),
            "selector matching no series": Read(
                first.namespace, "app_kubernetes_io_instance=no-such-service"
            ),
        }
        for case, read in cases.items():
            for server in servers:
                status, body, _ = await read_once(session, server.base_url, read, HPA)
                kind, value, message = classify(status, body)
                shown = f"{kind} {value}" if value is not None else kind
                special.append((case, server.name, f"{shown}: {message}" if message else shown))
    return Sanity(agreeing, len(stack.reads[:50]), tuple(disagreements), tuple(special))


async def outage(
    servers: Sequence[Server], stack: Stack, *, down_s: float, freeze: bool
) -> list[OutageSummary]:
    """Stop Prometheus for ``down_s`` (or freeze it with SIGSTOP) while probing every server."""
    probers = [Prober(s.name, s.base_url, stack.reads[0], HPA, stack.client_ctx) for s in servers]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(p.run(stop), name=f"probe {p.name}") for p in probers]
    try:
        await asyncio.sleep(2.0)
        if not all(p.value_since(0) for p in probers):
            raise RuntimeError("not every server answered before the outage")
        # The outage starts once Prometheus can no longer answer (a SIGTERMed Prometheus still
        # answers while it shuts down) and ends when it is ready again.
        if freeze:
            pid = stack.prom.process.pid or 0
            os.kill(pid, signal.SIGSTOP)
            away = time.monotonic()
            try:
                await asyncio.sleep(down_s)
            finally:
                until = time.monotonic()
                os.kill(pid, signal.SIGCONT)
        else:
            await stack.prom.stop()
            away = time.monotonic()
            await asyncio.sleep(down_s)
            until = time.monotonic()
            await stack.prom.start()
        back = time.monotonic()
        await wait_recovered(probers, back, timeout_s=60)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    return [summarize(p, away=away, until=until, back=back) for p in probers]


async def profile(stack: Stack, seconds: float) -> tuple[str, str]:
    """Where our adapter's time goes at 32 concurrent readers: (summary by category, top functions)."""
    try:
        import pyinstrument  # noqa: F401
    except ImportError:
        return "(pyinstrument is not installed: pip install pyinstrument)", ""
    prefix = stack.workdir / "ours-profile"
    summary = prefix.with_suffix(".summary.txt")
    server = _our_adapter("ours (profiled)", stack, cache_ttl=None, profile=prefix)
    async with running([server], stack):
        await closed_loop(
            server.name, server.base_url, stack.client_ctx, stack.reads, HPA, concurrency=32, seconds=seconds
        )
    await wait_for(lambda: _exists(summary), timeout=60, what="the profile to be written")
    flat = await asyncio.to_thread(prefix.with_suffix(".flat.txt").read_text)
    rows = [line for line in flat.splitlines() if re.match(r"\s*[0-9.]+%", line)]
    return await asyncio.to_thread(summary.read_text), "\n".join(rows[:25])


async def _exists(path: Path) -> bool:
    return await asyncio.to_thread(lambda: path.exists() and path.stat().st_size > 0)


async def start_stack(
    workdir: Path, pods_layout: tuple[int, int, int], scrape_s: float, *, lean: bool = False
) -> Stack:
    cp = ControlPlane(workdir / "control-plane")
    await cp.start()
    assert cp.pki is not None
    prom = PrometheusServer(
        workdir / "prometheus", scrape_interval_s=scrape_s, evaluation_interval_s=scrape_s
    )
    await prom.start()
    services = layout(*pods_layout).services
    port = free_port()
    exporter = ManagedProcess(
        name="tgi-exporter",
        argv=[
            sys.executable,
            str(Path(__file__).with_name("tgi_exporter.py")),
            f"--port={port}",
            f"--namespaces={pods_layout[0]}",
            f"--services={pods_layout[1]}",
            f"--pods={pods_layout[2]}",
            *(["--lean"] if lean else []),
        ],
        log_path=workdir / "tgi-exporter.log",
    )
    await exporter.start()
    write_file_sd(
        prom.file_sd_dir / "bench.json", file_sd_groups(services, f"127.0.0.1:{port}", per_namespace=lean)
    )
    pods = pods_layout[1] * pods_layout[2]

    async def all_pods_scraped() -> bool:
        result = await prom.query("count(tgi_queue_size)")
        return bool(result) and int(float(result[0]["value"][1])) == pods

    await wait_for(all_pods_scraped, timeout=120, what=f"Prometheus to scrape {pods} pods")
    serving = issue_serving_cert(cp.pki.cluster_ca, "bench-adapters", "bench")
    ctx = ssl.create_default_context(cafile=str(cp.pki.cluster_ca.cert_path))
    ctx.load_cert_chain(str(cp.pki.front_proxy_client.cert), str(cp.pki.front_proxy_client.key))
    reads = tuple(Read(s.namespace, s.selector) for s in services)
    return Stack(cp, prom, exporter, serving, ctx, reads, workdir)


async def stop_stack(stack: Stack) -> None:
    await stack.exporter.stop()
    await stack.prom.stop()
    await stack.cp.stop()


async def run(args: argparse.Namespace) -> int:
    plan = plan_for(args)
    info = machine()
    started = time.monotonic()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tgi-compare-"))
    _say(
        f"machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory']}, load {info['load']}; "
        f"workdir {workdir}"
    )
    _say(f"prometheus-adapter {PROMETHEUS_ADAPTER_VERSION} (built on first use, then cached)")
    binary = await asyncio.to_thread(ensure_prometheus_adapter)
    if not args.skip_equivalence:
        # A comparison is only worth reading if both servers compute the same number.
        _say("checking that both adapters serve the same values (bench/equivalence)")
        check = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            str(REPO / "bench" / "equivalence"),
            cwd=REPO,
        )
        if await check.wait() != 0:
            _say("the adapters disagree: no comparison")
            return 1
    _say("starting the control plane, Prometheus and the TGI exporter")
    if args.distinct:
        args.services, args.pods = max(args.services, 10_000), 1
    stack = await start_stack(
        workdir, (args.namespaces, args.services, args.pods), args.scrape_interval, lean=args.distinct
    )
    try:
        factories = {
            OURS: lambda: _our_adapter(OURS, stack, cache_ttl=None, profile=None),
            OURS_NO_CACHE: lambda: _our_adapter(
                OURS_NO_CACHE, stack, cache_ttl=0.0, profile=None, prefetch=not args.distinct
            ),
            THEIRS: lambda: _their_adapter(stack, binary),
        }
        servers = [factories[name]() for name in plan.servers]
        _say(f"starting {', '.join(s.name for s in servers)}")
        async with running(servers, stack):
            _say("sanity: comparing every selector's value with Prometheus")
            checked = await sanity(servers, stack)
            _say(f"{checked.agreeing}/{checked.total} selectors agree")
            _say("load runs")
            measured = await load_runs(servers, stack, plan)
            _say(f"Prometheus outage: stopped for {plan.outage_s:g} s")
            down = await outage(servers, stack, down_s=plan.outage_s, freeze=False)
            frozen: list[OutageSummary] = []
            if plan.freeze_s:
                _say(f"Prometheus frozen (SIGSTOP) for {plan.freeze_s:g} s")
                frozen = await outage(servers, stack, down_s=plan.freeze_s, freeze=True)
        summary, flat = "", ""
        if plan.profile_s:
            _say(f"profiling ours for {plan.profile_s:g} s")
            summary, flat = await profile(stack, plan.profile_s)
    finally:
        await stop_stack(stack)
    text = render(
        Results(
            command=".venv/bin/python bench/compare_prometheus_adapter.py"
            + (" --quick" if args.quick else "")
            + (" --distinct" if args.distinct else ""),
            machine=info,
            elapsed_s=time.monotonic() - started,
            namespaces=args.namespaces,
            services=args.services,
            pods=args.pods,
            series_per_pod=LEAN_SERIES_PER_POD if args.distinct else SERIES_PER_POD,
            distinct=args.distinct,
            scrape_interval_s=args.scrape_interval,
            relist_s=RELIST_S,
            their_version=PROMETHEUS_ADAPTER_VERSION,
            their_rule=external_rules_config()["externalRules"][0],
            hpa_sync_s=HPA_SYNC_S,
            hpas=plan.hpas,
            seconds=plan.seconds,
            ours=OURS,
            ours_no_cache=OURS_NO_CACHE,
            theirs=THEIRS,
            measured=measured,
            sanity=checked,
            outage_s=plan.outage_s,
            down=down,
            freeze_s=plan.freeze_s,
            frozen=frozen,
            profile_s=plan.profile_s,
            profile_summary=summary,
            profile_flat=flat,
            servers=plan.servers,
        )
    )
    print()
    print(text)
    if not args.no_docs:
        heading = SECTION_HEADING + (", one selector per HPA" if args.distinct else "")
        write_section(DOCS, text, heading)
        _say(f"written to {DOCS.relative_to(REPO)}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 s runs, 10 s outage, no freeze, no profile")
    parser.add_argument("--seconds", type=float, default=15.0, help="duration of each load run")
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--pods", type=int, default=10, help="pods per service")
    parser.add_argument("--scrape-interval", type=float, default=5.0, help="seconds")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument(
        "--distinct",
        action="store_true",
        help="one selector per HPA: 10,000 one-pod services (no histograms), open loop only; "
        "'ours, no cache' also without prefetch",
    )
    parser.add_argument(
        "--skip-equivalence", action="store_true", help="do not check first that both adapters agree"
    )
    parser.add_argument("--no-docs", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--workdir", type=Path, default=None, help="logs of every component go here")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
