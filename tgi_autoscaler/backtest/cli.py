"""``tgi-autoscaler backtest``: replay real or shaped traffic through the service model under every
scaling policy, and print what each cost in GPU-hours and gave in SLO attainment, next to the
hindsight oracle; write a PNG of it.

The traffic comes from a trace CSV in the Azure LLM inference format, a built-in shape, or a
service's own history in Prometheus (``--prometheus``). Files and Prometheus are read here; the
replay itself is pure (``tgi_autoscaler.backtest``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from tgi_autoscaler.backtest import history
from tgi_autoscaler.backtest.docs import update_study_document
from tgi_autoscaler.backtest.policies import (
    BASELINES,
    Policy,
    Slo,
    demand_policy,
    policy_names,
    service_policy,
)
from tgi_autoscaler.backtest.report import format_csv, format_markdown, format_table
from tgi_autoscaler.backtest.requests import (
    SHAPES,
    RequestTrace,
    TraceError,
    TraceShape,
    parse_azure_csv,
    scale_trace,
    shaped_trace,
)
from tgi_autoscaler.backtest.run import RunConfig, ScaleToZero
from tgi_autoscaler.backtest.study import run_study
from tgi_autoscaler.config.errors import ConfigError
from tgi_autoscaler.config.service import TGIServiceSpec
from tgi_autoscaler.hpa.spec_input import BehaviorInputError, parse_behavior_yaml
from tgi_autoscaler.hpa.types import Behavior, HpaSpecError
from tgi_autoscaler.render.cli import service_sources
from tgi_autoscaler.servicemodel import ColdStart, ServerParams
from tgi_autoscaler.servicemodel.params import ParamsError

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "backtest",
        help="replay traffic under every scaling policy and compare GPU-hours and SLO attainment",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    load = parser.add_argument_group("traffic")
    load.add_argument("--trace", help="trace CSV (TIMESTAMP,ContextTokens,GeneratedTokens)")
    load.add_argument(
        "--shape", choices=tuple(SHAPES), default="spike", help="built-in shape without --trace"
    )
    load.add_argument("--base-rate", type=float, default=4.0, help="shape: base requests/s")
    load.add_argument("--peak-rate", type=float, default=12.0, help="shape: peak requests/s")
    load.add_argument("--start", type=float, default=600.0, help="shape: when the peak starts, s")
    load.add_argument("--peak-duration", type=float, default=900.0, help="shape: how long it lasts, s")
    load.add_argument("--duration", type=float, default=3600.0, help="shape: length of the trace, s")
    load.add_argument("--rate-scale", type=float, default=1.0, help="multiply the request rate")
    load.add_argument("--time-scale", type=float, default=1.0, help="compress time by this factor")
    load.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    history.add_arguments(parser)

    scaling = parser.add_argument_group("scaling")
    scaling.add_argument(
        "--policy",
        action="append",
        choices=policy_names(),
        help="policy to replay (repeatable; default: all)",
    )
    scaling.add_argument(
        "--min",
        type=int,
        default=1,
        dest="min_replicas",
        help="minReplicas (0: scale to zero, with the activator)",
    )
    scaling.add_argument(
        "--idle-after", type=float, default=900.0, help="with --min 0: idle window before scaling to zero, s"
    )
    scaling.add_argument(
        "--max-held", type=int, default=256, help="with --min 0: requests the activator holds"
    )
    scaling.add_argument(
        "--max-wait", type=float, default=300.0, help="with --min 0: longest a request is held, s"
    )
    scaling.add_argument("--max", type=int, default=10, dest="max_replicas", help="maxReplicas")
    scaling.add_argument("--slo-ttft", type=float, default=2.0, help="time-to-first-token SLO, s")
    scaling.add_argument("--attainment", type=float, default=0.99, help="share of requests within the SLO")
    scaling.add_argument("--scrape-interval", type=float, default=10.0, help="Prometheus scrape interval, s")
    scaling.add_argument("--no-oracle", action="store_true", help="skip the hindsight oracle")
    scaling.add_argument(
        "--service",
        help="service spec YAML (or its ConfigMap): adds its autoscaling as policy 'service' and takes "
        "min/max replicas, SLO and capacity from it",
    )
    scaling.add_argument(
        "--behavior-file",
        help="YAML HPA behavior block (or a whole HPA manifest): adds policy 'behavior-file', the "
        "demand signal with that behavior",
    )

    servers = parser.add_argument_group("servers (defaults: a 7-8B model on one A100)")
    defaults = ServerParams()
    servers.add_argument("--max-batch", type=int, default=defaults.max_batch_size, help="running sequences")
    servers.add_argument(
        "--decode-step", type=float, default=defaults.decode_step_s, help="s per token, batch 1"
    )
    servers.add_argument(
        "--batch-slowdown", type=float, default=defaults.batch_slowdown, help="per extra seq"
    )
    servers.add_argument(
        "--prefill-per-token", type=float, default=defaults.prefill_s_per_token, help="s per prompt token"
    )
    cold = ColdStart()
    servers.add_argument("--cold-start", type=float, default=cold.median_s, help="median s to Ready")
    servers.add_argument("--cold-start-sigma", type=float, default=cold.sigma, help="lognormal sigma")

    output = parser.add_argument_group("output")
    output.add_argument("--format", choices=("table", "markdown", "csv"), default="table")
    output.add_argument("--plot", default="backtest.png", help="PNG to write ('' for none)")
    output.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    output.add_argument(
        "--update-docs",
        metavar="MARKDOWN",
        help="run the study (every policy on the shared trace and the shapes) and rewrite its section "
        "of this document (docs/scaling-behavior.md); needs --trace",
    )
    parser.set_defaults(func=run)


def _trace(args: argparse.Namespace, out: TextIO, err: TextIO) -> RequestTrace:
    if args.prometheus or args.calibrate:
        trace = history.history_trace(args, out, err)
    elif args.trace:
        text = Path(args.trace).read_text(encoding="utf-8")
        trace = parse_azure_csv(text, source=args.trace)
    else:
        shape = TraceShape(
            base_rate=args.base_rate,
            peak_rate=args.peak_rate,
            start=args.start,
            duration=args.peak_duration,
            end=args.duration,
        )
        trace = shaped_trace(args.shape, shape, seed=args.seed)
    if args.rate_scale != 1.0 or args.time_scale != 1.0:
        trace = scale_trace(trace, rate_scale=args.rate_scale, time_scale=args.time_scale, seed=args.seed)
    return trace


def _service(path: str) -> TGIServiceSpec:
    """The (first) service of a ConfigMap manifest or a bare spec, read as ``render -f`` reads it."""
    text = Path(path).read_text(encoding="utf-8")
    return service_sources(text, path, "service", None)[0].spec


def _policies(
    names: list[str] | None, service: TGIServiceSpec | None, behavior: Behavior | None
) -> list[Policy]:
    every: list[Policy] = [demand_policy(), *BASELINES]
    if names:
        every = [p for p in every if p.name in names]
    if service is not None:
        every.insert(0, service_policy(service))
    if behavior is not None:
        every.insert(0, demand_policy("behavior-file", behavior=behavior))
    return every


def run(args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        service = _service(args.service) if args.service else None
        behavior = None
        if args.behavior_file:
            text = Path(args.behavior_file).read_text(encoding="utf-8")
            behavior = parse_behavior_yaml(text, source=args.behavior_file)
        trace = _trace(args, out, err)
        params = ServerParams(
            max_batch_size=args.max_batch,
            decode_step_s=args.decode_step,
            batch_slowdown=args.batch_slowdown,
            prefill_s_per_token=args.prefill_per_token,
        )
        slo = Slo(args.slo_ttft, args.attainment)
        bounds = (args.min_replicas, args.max_replicas)
        to_zero = (
            ScaleToZero(idle_after_s=args.idle_after, max_held=args.max_held, max_wait_s=args.max_wait)
            if args.min_replicas == 0
            else None
        )
        if service is not None:
            scaling = service.autoscaling
            params = scaling.capacity.server_params()
            slo = Slo(scaling.slo.time_to_first_token_seconds, scaling.slo.attainment)
            bounds = (scaling.min_replicas, scaling.max_replicas)
            stz = scaling.scale_to_zero
            to_zero = (
                ScaleToZero(
                    idle_after_s=stz.idle_after_seconds,
                    max_held=stz.max_held_requests,
                    max_wait_s=stz.max_wait_seconds,
                )
                if service.scales_to_zero
                else None
            )
        cold = replace(ColdStart(), median_s=args.cold_start, sigma=args.cold_start_sigma)
        config = RunConfig(
            params,
            cold,
            min_replicas=bounds[0],
            max_replicas=bounds[1],
            scrape_interval_s=args.scrape_interval,
            seed=args.seed,
            scale_to_zero=to_zero,
        )
        if not 0 < slo.attainment < 1:
            raise ParamsError(f"--attainment: must be between 0 and 1 (got {slo.attainment})")
    except (
        OSError,
        ConfigError,
        BehaviorInputError,
        HpaSpecError,
        TraceError,
        ParamsError,
        ValueError,
    ) as exc:
        print(f"backtest: {exc}", file=err)
        return 2
    if args.update_docs:
        if not args.trace:
            print("backtest: --update-docs needs --trace (the shared production trace)", file=err)
            return 2
        return update_study_document(Path(args.update_docs), trace, config, out=out, err=err)

    def progress(name: str, number: int, total: int, seconds: float) -> None:
        if not args.quiet:
            print(f"[{number}/{total}] {name}: {seconds:.1f} s", file=err, flush=True)

    if not args.quiet:
        print(
            f"backtest: {trace.name}: {len(trace)} requests over {trace.duration / 60:.0f} min "
            f"(mean {trace.mean_rate:.2f} req/s, peak minute {max(trace.rate_per_minute()):.2f}); "
            f"SLO: TTFT <= {slo.ttft_s:g} s for {100 * slo.attainment:g} %",
            file=err,
        )
    try:
        study = run_study(
            trace,
            _policies(args.policy, service, behavior),
            config,
            slo,
            with_oracle=not args.no_oracle,
            progress=progress,
        )
    except (ParamsError, ValueError) as exc:
        print(f"backtest: {exc}", file=err)
        return 2
    rows = [*study.summaries, *([study.oracle_summary] if study.oracle_summary else [])]
    formatter = {"table": format_table, "markdown": format_markdown, "csv": format_csv}[args.format]
    out.write(formatter(rows, study.oracle_summary))
    if args.plot:
        from tgi_autoscaler.backtest.plot import plot_runs

        title = f"{trace.name}: TTFT SLO {slo.ttft_s:g} s"
        plot_runs(study.results, study.oracle, slo.ttft_s, Path(args.plot), title)
        if not args.quiet:
            print(f"backtest: wrote {args.plot}", file=err)
    return 0
