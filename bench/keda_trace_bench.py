"""GPU-hours and SLO attainment on the Azure trace, live through one real KEDA, beside ``backtest``.

Two simulated vLLM services of the same shape get the same window of the Azure conversation trace
(CC-BY 4.0, see ../shared/traces/README.md: Patel et al., "Splitwise", ISCA 2024), each request
sent at its arrival time with its generated-token count, streaming, so time to first token is
measured at the client. One scales through the ScaledObject the controller renders
(``--autoscaler keda``: the demand signal, its target derived from the SLO and the replica's
capacity, our HPA behavior), the other through the one vLLM production-stack's chart renders
(``vllm:num_requests_waiting`` threshold 5, polling 15 s, HPA default behavior). Same Prometheus,
same KEDA, same kube-controller-manager with the real defaults (sync 15 s, downscale stabilization
300 s). A new replica serves ``--start-delay`` seconds after the Deployment asks for it (the model
load), as ``Fleet(start_delay_s=...)`` plays it.

Live figures: GPU-hours are the integral over the trace of the replicas that exist (starting,
serving and draining, 1 GPU each), sampled every second; SLO attainment is the share of the
trace's requests answered with their first token within the SLO (a request that failed counts as
a miss). Beside them, ``backtest``'s replay of the same requests under the same two policies
(``production-stack-keda`` and the service spec's own, the replica as ``ReplicaConfig.server_params``
describes it, the same cold start, scrape interval and bounds), and the hindsight oracle.

The prompt is the same short text for every request (the simulator's prompt limits are a real
server's, and the trace's prompts run to 14,000 tokens); the replay uses that prompt's token count,
so both sides serve the same requests.

    .venv/bin/python bench/keda_trace_bench.py            # minutes 20-40 of the trace, x0.35 rate
    .venv/bin/python bench/keda_trace_bench.py --quick    # 4 minutes, 20 s model load: a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
from keda_outage_bench import PRODSTACK, deployment, production_stack

from tgi_autoscaler.backtest.oracle import oracle
from tgi_autoscaler.backtest.policies import BASELINES, HpaPolicy, Slo, service_policy
from tgi_autoscaler.backtest.requests import RequestTrace, parse_azure_csv, scale_trace
from tgi_autoscaler.backtest.run import RunConfig, RunResult, replay
from tgi_autoscaler.backtest.study import initial_replicas
from tgi_autoscaler.backtest.summary import Summary, percentile, summarize
from tgi_autoscaler.config.service import TGIServiceSpec, parse_service_yaml
from tgi_autoscaler.log import configure_logging
from tgi_autoscaler.render import KedaOptions, ServiceSource
from tgi_autoscaler.render.keda import render_scaled_object
from tgi_autoscaler.servicemodel import ColdStart
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane, ControlPlaneSettings
from tgi_autoscaler_dev.localstack.keda import running_keda
from tgi_autoscaler_dev.localstack.process import background, wait_for
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer
from tgi_autoscaler_dev.sim.fleet import Fleet
from tgi_autoscaler_dev.sim.loadgen import LoadGenerator, LoadReport, LoadSpec, ScheduledRequest
from tgi_autoscaler_dev.sim.model import ReplicaConfig
from tgi_autoscaler_dev.sim.protocol import estimate_tokens
from tgi_autoscaler_dev.sim.traces import Constant

NAMESPACE = "keda-trace"
OURS = "ours"
TRACE = Path(__file__).resolve().parents[1].parent / "shared" / "traces" / "azure-llm-2023-conv.csv"
PROMPT = "Summarise the conversation so far."
# Four sequences per replica at 50 tokens/s: about 0.9 requests/s of the trace's mean 211 tokens,
# so the trace at 0.35 of its rate needs 3 to 6 replicas at the SLO target.
REPLICA = ReplicaConfig(max_batch_size=4, token_rate=50.0, batch_slowdown=0.02, prefill_time_s=0.02)
SCALED_OBJECTS = f"/apis/keda.sh/v1alpha1/namespaces/{NAMESPACE}/scaledobjects"


def trace_window(source: RequestTrace, start_s: float, length_s: float, *, max_output: int) -> RequestTrace:
    """The requests arriving in ``[start_s, start_s + length_s)``, from time zero, with the bench's prompt."""
    rows = [
        (t - start_s, min(o, max_output))
        for t, o in zip(source.arrival, source.output_tokens, strict=True)
        if start_s <= t < start_s + length_s
    ]
    if not rows:
        raise SystemExit(f"no request in the trace between {start_s:g} s and {start_s + length_s:g} s")
    prompt = estimate_tokens(PROMPT)
    return RequestTrace(
        f"{source.name} min {start_s / 60:g}-{(start_s + length_s) / 60:g}",
        tuple(t for t, _ in rows),
        (prompt,) * len(rows),
        tuple(o for _, o in rows),
        length_s,
    )


def our_spec(args: argparse.Namespace, trace: RequestTrace) -> TGIServiceSpec:
    """Our service, with the capacity of the simulated replica (so the derived target is right for it)."""
    params = REPLICA.server_params()
    return parse_service_yaml(
        f"model: {{id: meta-llama/Llama-3.1-8B-Instruct}}\nengine: {{kind: vllm}}\n"
        f"autoscaling:\n  minReplicas: 1\n  maxReplicas: {args.max_replicas}\n  signal: demand\n"
        f"  slo: {{timeToFirstTokenSeconds: {args.slo_ttft:g}, attainment: {args.slo_attainment:g}}}\n"
        f"  capacity:\n    maxBatchSize: {params.max_batch_size}\n"
        f"    decodeSecondsPerToken: {params.decode_step_s:g}\n"
        f"    batchSlowdown: {params.batch_slowdown:g}\n"
        f"    prefillSecondsPerToken: {params.prefill_s_per_token:g}\n"
        f"    prefillOverheadSeconds: {params.prefill_overhead_s:g}\n"
        f"    promptTokens: {round(trace.mean_prompt_tokens)}\n"
        f"    outputTokens: {round(trace.mean_output_tokens)}\n",
        source="bench",
    )


@dataclass
class Sample:
    t: float  # seconds from the trace's start
    desired: int  # the Deployment's spec.replicas
    replicas: int  # pods that exist and are not draining (starting or serving)
    serving: int
    draining: int


@dataclass
class Live:
    samples: list[Sample] = field(default_factory=list)

    def gpu_seconds(self, until: float) -> float:
        total = 0.0
        for a, b in zip(self.samples, self.samples[1:], strict=False):
            overlap = min(b.t, until) - max(a.t, 0.0)
            if overlap > 0:
                total += overlap * (a.replicas + a.draining)
        return total

    def rescales(self, until: float) -> int:
        inside = [s.desired for s in self.samples if 0 <= s.t <= until]
        return sum(1 for a, b in itertools.pairwise(inside) if a != b)

    def peak(self, until: float) -> int:
        return max((s.replicas for s in self.samples if 0 <= s.t <= until), default=0)


@dataclass(frozen=True)
class Row:
    policy: str
    live_gpu_hours: float | None
    backtest_gpu_hours: float
    live_attainment: float | None
    backtest_attainment: float
    live_ttft_p95_s: float | None
    backtest_ttft_p95_s: float
    live_peak: int | None
    backtest_peak: int
    live_rescales: int | None
    backtest_rescales: int


def live_attainment(report: LoadReport, slo_s: float) -> float:
    met = sum(1 for r in report.requests if r.outcome == "ok" and r.ttft_s <= slo_s)
    return met / report.planned if report.planned else math.nan


def live_ttft_p95(report: LoadReport) -> float:
    """Nearest rank, as backtest's column beside it; a failed request counts as never answered."""
    return percentile(sorted(r.ttft_s if r.outcome == "ok" else math.inf for r in report.requests), 95)


async def replicas_of(cp: ControlPlane, name: str) -> int:
    status, body = await cp.request("GET", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{name}")
    assert status == 200, body
    return int(body["spec"].get("replicas") or 0)


async def follow(cp: ControlPlane, name: str, fleet: Fleet, live: Live, zero: list[float]) -> None:
    """The Deployment's replicas become simulated pods (serving after the model load), sampled each second.

    ``zero`` holds the trace's start on the loop clock once the load begins (samples before it are
    at negative times and left out of the figures).
    """
    loop = asyncio.get_running_loop()
    next_sample = loop.time()
    while True:
        want = await replicas_of(cp, name)
        if want and want != fleet.size:
            await fleet.scale_to(want)
        now = loop.time()
        if now >= next_sample:
            live.samples.append(
                Sample(now - (zero[0] if zero else now), want, fleet.size, fleet.serving, fleet.draining)
            )
            next_sample += 1.0
        await asyncio.sleep(0.25)


async def hpa_reads(cp: ControlPlane, name: str) -> bool:
    status, body = await cp.request(
        "GET", f"/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers/keda-hpa-{name}"
    )
    return status == 200 and bool((body.get("status") or {}).get("currentMetrics"))


@contextlib.asynccontextmanager
async def progress(
    reports: dict[str, LoadReport], lives: dict[str, Live], every_s: float
) -> AsyncIterator[None]:
    async def tell() -> None:
        while True:
            await asyncio.sleep(every_s)
            parts = []
            for name, report in reports.items():
                last = lives[name].samples[-1] if lives[name].samples else None
                where = f"{last.replicas} pods ({last.serving} serving)" if last else "-"
                parts.append(
                    f"{name}: {where}, {report.ok}/{report.planned} ok, {report.in_flight} in flight"
                )
            print(f"[{time.strftime('%H:%M:%S')}] " + "; ".join(parts), file=sys.stderr, flush=True)

    task = asyncio.create_task(tell())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def run_live(
    args: argparse.Namespace, trace: RequestTrace, make: Callable[[str], dict[str, dict[str, Any]]]
) -> tuple[dict[str, LoadReport], dict[str, Live], dict[str, Any]]:
    """Both services live; ``make`` gives the ScaledObjects for Prometheus' URL."""
    workdir = Path(tempfile.mkdtemp(prefix="keda-trace-"))
    cp = ControlPlane(
        workdir / "cp",
        settings=ControlPlaneSettings(hpa_sync_period_s=args.sync, hpa_downscale_stabilization_s=300.0),
    )
    prom = PrometheusServer(workdir / "prometheus", scrape_interval_s=args.scrape)
    await cp.start()
    await prom.start()
    scaled_objects = make(prom.url)
    lives = {name: Live() for name in scaled_objects}
    zero: list[float] = []
    schedule = tuple(ScheduledRequest(t, n) for t, n in zip(trace.arrival, trace.output_tokens, strict=True))
    spec = LoadSpec(
        Constant(0.0),
        duration_s=trace.duration,
        max_requests=len(schedule),
        schedule=schedule,
        prompt=PROMPT,
        stream=True,
        request_timeout_s=300.0,
        drain_timeout_s=60.0,
    )
    try:
        async with running_keda(cp, workdir / "keda", build=True):
            await cp.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
            initial = run_config(trace, args).initial_replicas or 1
            for name, scaled in scaled_objects.items():
                manifest = deployment(name, NAMESPACE)
                manifest["spec"]["replicas"] = initial
                status, body = await cp.request(
                    "POST", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments", body=manifest
                )
                assert status == 201, body
                status, body = await cp.request("POST", SCALED_OBJECTS, body=scaled)
                assert status == 201, body
            async with contextlib.AsyncExitStack() as stack:
                fleets: dict[str, Fleet] = {}
                for name in scaled_objects:
                    fleets[name] = await stack.enter_async_context(
                        Fleet(
                            name,
                            namespace=NAMESPACE,
                            replicas=initial,
                            engine="vllm",
                            config=REPLICA,
                            file_sd_dir=prom.file_sd_dir,
                            start_delay_s=args.start_delay,
                            drain_timeout_s=120.0,
                        )
                    )
                    await stack.enter_async_context(
                        background(follow(cp, name, fleets[name], lives[name], zero), f"follow-{name}")
                    )
                for name in scaled_objects:

                    async def ready(name: str = name) -> bool:
                        return fleets[name].serving >= initial and await hpa_reads(cp, name)

                    await wait_for(
                        ready, timeout=300, interval=1.0, what=f"{name}: a serving pod and KEDA's HPA reading"
                    )
                print(
                    f"[{time.strftime('%H:%M:%S')}] both ready; sending the trace",
                    file=sys.stderr,
                    flush=True,
                )
                zero.append(asyncio.get_running_loop().time())
                async with aiohttp.ClientSession() as session:
                    generators = {
                        name: LoadGenerator(fleets[name].url, spec, session=session)
                        for name in scaled_objects
                    }
                    live_reports = {name: g.report for name, g in generators.items()}
                    async with progress(live_reports, lives, 60.0):
                        done = await asyncio.gather(*(g.run() for g in generators.values()))
                reports = dict(zip(scaled_objects, done, strict=True))
    finally:
        await prom.stop()
        await cp.stop()
    lags = sorted(r.lag_s for report in reports.values() for r in report.requests)
    health = {
        "send_lag_p50_p99_max_ms": [round(1000 * lags[int(q * (len(lags) - 1))], 1) for q in (0.5, 0.99, 1)],
        "loadavg_end": [round(x, 2) for x in os.getloadavg()],
    }
    return reports, lives, health


def run_config(trace: RequestTrace, args: argparse.Namespace) -> RunConfig:
    """The replay's servers and bounds; both services start with the replicas the first minute needs."""
    config = RunConfig(
        params=REPLICA.server_params(),
        # The follower polls the Deployment every 0.25 s, so a pod starts on average 0.125 s late.
        cold_start=ColdStart(median_s=args.start_delay + 0.125, sigma=0.0),
        min_replicas=1,
        max_replicas=args.max_replicas,
        scrape_interval_s=args.scrape,
        drain_after_s=300.0,
    )
    return replace(
        config, initial_replicas=initial_replicas(trace, config, Slo(args.slo_ttft, args.slo_attainment))
    )


def backtest(
    trace: RequestTrace, policies: dict[str, HpaPolicy], args: argparse.Namespace
) -> tuple[dict[str, RunResult], RunResult]:
    config = run_config(trace, args)
    results = {
        name: replay(trace, replace(p, sync_period_s=args.sync), config) for name, p in policies.items()
    }
    return results, oracle(trace, config, args.slo_ttft)


def rows_of(
    trace: RequestTrace,
    reports: dict[str, LoadReport] | None,
    lives: dict[str, Live] | None,
    summaries: dict[str, Summary],
    slo_s: float,
) -> list[Row]:
    rows = []
    for name, s in summaries.items():
        report = reports.get(name) if reports else None
        live = lives.get(name) if lives else None
        rows.append(
            Row(
                name,
                None if live is None else live.gpu_seconds(trace.duration) / 3600,
                s.gpu_hours,
                None if report is None else live_attainment(report, slo_s),
                s.slo_attainment,
                None if report is None else live_ttft_p95(report),
                s.ttft_p95,
                None if live is None else live.peak(trace.duration),
                s.peak_replicas,
                None if live is None else live.rescales(trace.duration),
                s.rescales,
            )
        )
    return rows


def table(rows: list[Row]) -> str:
    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else "inf" if math.isinf(value) else format(value, fmt)

    lines = [
        "| policy | GPU-hours live | GPU-hours backtest | SLO attainment live | backtest | "
        "TTFT p95 live (s) | backtest | peak replicas live | backtest | rescales live | backtest |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.policy} | {num(r.live_gpu_hours, '.3f')} | {r.backtest_gpu_hours:.3f} | "
            f"{num(r.live_attainment, '.1%')} | {r.backtest_attainment:.1%} | "
            f"{num(r.live_ttft_p95_s, '.2f')} | {num(r.backtest_ttft_p95_s, '.2f')} | "
            f"{num(r.live_peak, 'd')} | {r.backtest_peak} | "
            f"{num(r.live_rescales, 'd')} | {r.backtest_rescales} |"
        )
    return "\n".join(lines)


def plot(
    trace: RequestTrace,
    lives: dict[str, Live],
    reports: dict[str, LoadReport],
    results: dict[str, RunResult],
    best: RunResult,
    slo_s: float,
    path: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(lives) + 1, 1, figsize=(12.5, 2.2 * (len(lives) + 1) + 0.6), sharex=True)
    axes[0].step(
        range(len(trace.rate_per_minute())), trace.rate_per_minute(), where="post", color="black", lw=1
    )
    axes[0].set_ylabel("req/s")
    axes[0].set_title(f"live through KEDA v2.21 vs backtest: {trace.name}", fontsize=10)
    for ax, (name, live) in zip(axes[1:], lives.items(), strict=True):
        shown = [s for s in live.samples if 0 <= s.t <= trace.duration]
        times = [s.t / 60 for s in shown]
        ax.step(times, [s.replicas for s in shown], where="post", color="tab:blue", label="live replicas")
        ax.step(
            times, [s.serving for s in shown], where="post", color="tab:green", lw=0.8, label="live serving"
        )
        ticks = results[name].ticks
        ax.step(
            [t.time / 60 for t in ticks],
            [t.replicas for t in ticks],
            where="post",
            color="tab:purple",
            ls="--",
            lw=1,
            label="backtest replicas",
        )
        ax.step(
            [t.time / 60 for t in best.ticks],
            [t.replicas for t in best.ticks],
            where="post",
            color="tab:gray",
            ls=":",
            lw=1,
            label="oracle",
        )
        misses = [
            r.due_s / 60 for r in reports[name].requests if not (r.outcome == "ok" and r.ttft_s <= slo_s)
        ]
        if misses:
            top = max((s.replicas for s in shown), default=1)
            ax.plot(misses, [top + 0.5] * len(misses), "|", color="tab:red", ms=6, label="live SLO miss")
        ax.set_ylabel(name, fontsize=8)
        # Outside the axes: inside, it hid the SLO misses drawn along the top.
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    axes[-1].set_xlabel("minutes")
    for ax in axes:
        ax.set_xlim(0, math.ceil(trace.duration / 60))
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trace", type=Path, default=TRACE, help="Azure-format trace CSV")
    parser.add_argument("--start-minute", type=float, default=20.0)
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--rate-scale", type=float, default=0.35, help="requests per trace request")
    parser.add_argument("--max-output", type=int, default=1000, help="cap on generated tokens per request")
    parser.add_argument(
        "--start-delay", type=float, default=60.0, help="model load: pod asked for -> serving, s"
    )
    parser.add_argument("--max-replicas", type=int, default=10)
    parser.add_argument("--slo-ttft", type=float, default=2.0, help="SLO: time to first token, s")
    parser.add_argument("--slo-attainment", type=float, default=0.95)
    parser.add_argument("--sync", type=float, default=15.0, help="HPA sync period, s")
    parser.add_argument("--scrape", type=float, default=10.0, help="Prometheus scrape interval, s")
    parser.add_argument("--backtest-only", action="store_true", help="skip the live run")
    parser.add_argument("--quick", action="store_true", help="minutes 27-31, 20 s model load")
    parser.add_argument("--plot", type=Path, default=Path("docs/keda-trace.png"))
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    if args.quick:
        args.start_minute, args.minutes, args.start_delay = 27.0, 4.0, 20.0
    configure_logging("console", level="warning")
    started = time.monotonic()
    source = parse_azure_csv(args.trace.read_text(), source=args.trace.name)
    scaled = scale_trace(source, rate_scale=args.rate_scale, seed=0) if args.rate_scale != 1 else source
    trace = trace_window(scaled, args.start_minute * 60, args.minutes * 60, max_output=args.max_output)
    spec = our_spec(args, trace)
    prod = next(p for p in BASELINES if p.name == "production-stack-keda")
    assert isinstance(prod, HpaPolicy)
    policies = {OURS: service_policy(spec, OURS), PRODSTACK: replace(prod, name=PRODSTACK)}
    print(
        f"trace: {trace.name}, {len(trace)} requests, {trace.mean_rate:.2f}/s, "
        f"{trace.mean_output_tokens:.0f} tokens out on average; "
        f"our demand target {spec.scaling_metric[1]:g} requests/s per replica",
        file=sys.stderr,
    )
    results, best = backtest(trace, policies, args)
    summaries = {name: summarize(result, args.slo_ttft) for name, result in results.items()}
    summaries["oracle (hindsight)"] = summarize(best, args.slo_ttft, name="oracle (hindsight)")
    reports: dict[str, LoadReport] | None = None
    lives: dict[str, Live] | None = None
    health: dict[str, Any] = {}
    if not args.backtest_only:

        def make(prometheus_url: str) -> dict[str, dict[str, Any]]:
            source = ServiceSource(name=OURS, namespace=NAMESPACE, spec=spec)
            return {
                OURS: render_scaled_object(source, KedaOptions(prometheus_url=prometheus_url)),
                PRODSTACK: production_stack(prometheus_url, args.max_replicas, namespace=NAMESPACE),
            }

        reports, lives, health = asyncio.run(run_live(args, trace, make))
    rows = rows_of(trace, reports, lives, summaries, args.slo_ttft)
    print(table(rows))
    print(json.dumps({**health, "wall_s": round(time.monotonic() - started, 1)}))
    if reports and lives:
        plot(trace, lives, reports, results, best, args.slo_ttft, args.plot)
        print(f"plot: {args.plot}", file=sys.stderr)
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
