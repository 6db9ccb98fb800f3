"""``tgi-autoscaler what-if``: replay a load trace through the HPA model, offline.

Answers "what will my ``behavior`` settings do?" before they meet real traffic: the HPA spec comes
from the project's defaults, a service spec (``--service``), flags, and optionally a behavior block
(``--behavior-file``); the load from a built-in trace shape or a CSV of rates. Prints the headline
numbers and a compact table (or Markdown / CSV). The files are read here; the model itself is pure.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from tgi_autoscaler.config.base import parse_yaml
from tgi_autoscaler.config.constants import SERVICE_CONFIGMAP_KEY
from tgi_autoscaler.config.errors import ConfigError
from tgi_autoscaler.config.service import AutoscalingSpec, parse_service_yaml
from tgi_autoscaler.hpa.docs import DocsError, docs_section, update_document
from tgi_autoscaler.hpa.replay import ReplayConfig, ReplayError, replay
from tgi_autoscaler.hpa.report import format_csv, format_markdown, format_summary, format_table, summarize
from tgi_autoscaler.hpa.spec_input import BehaviorInputError, hpa_spec_from_autoscaling, parse_behavior_yaml
from tgi_autoscaler.hpa.trace import TRACE_NAMES, Trace, TraceError, TraceShape, build_trace, parse_trace_csv
from tgi_autoscaler.hpa.types import (
    DEFAULT_DOWNSCALE_STABILIZATION_SECONDS,
    DEFAULT_TOLERANCE,
    Behavior,
    HpaSpec,
    HpaSpecError,
)

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "what-if",
        help="replay a load trace through the HPA algorithm offline",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    load = parser.add_argument_group("load")
    load.add_argument("--trace", choices=TRACE_NAMES, default="spike", help="built-in trace shape")
    load.add_argument(
        "--trace-file", help="CSV of 'time_seconds,requests_per_second' rows (overrides --trace)"
    )
    load.add_argument("--base-rate", type=float, default=0.8, help="base load, requests/s")
    load.add_argument("--factor", type=float, default=3.0, help="peak load as a multiple of the base")
    load.add_argument("--spike-start", type=float, default=300.0, help="when the load rises, s")
    load.add_argument("--spike-duration", type=float, default=900.0, help="how long it stays up, s")
    load.add_argument("--duration", type=float, default=5400.0, help="length of the replay, s")

    servers = parser.add_argument_group("servers")
    servers.add_argument("--capacity", type=float, default=1.0, help="requests/s one Ready replica serves")
    servers.add_argument(
        "--start-delay", type=float, default=300.0, help="seconds from scale-up until a new pod is Ready"
    )
    servers.add_argument("--sync-period", type=float, default=15.0, help="HPA sync period, s")
    servers.add_argument("--metric-lag", type=float, default=0.0, help="age of the queue the HPA sees, s")

    hpa = parser.add_argument_group("HPA (defaults: the project's service defaults)")
    hpa.add_argument("--service", help="service spec YAML (or its ConfigMap) to take autoscaling from")
    hpa.add_argument("--min", type=int, dest="min_replicas", help="minReplicas")
    hpa.add_argument("--max", type=int, dest="max_replicas", help="maxReplicas")
    hpa.add_argument("--target-queue", type=float, help="target queued requests per replica (AverageValue)")
    hpa.add_argument(
        "--behavior",
        choices=("service", "kubernetes", "none"),
        default="service",
        help="service: the service's behavior; kubernetes: an empty behavior block (API defaults); "
        "none: no behavior block (legacy algorithm)",
    )
    hpa.add_argument("--behavior-file", help="YAML behavior block (or HPA manifest) replacing the behavior")
    hpa.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="controller tolerance flag")
    hpa.add_argument(
        "--downscale-stabilization",
        type=int,
        default=DEFAULT_DOWNSCALE_STABILIZATION_SECONDS,
        help="controller downscale window flag, s",
    )

    output = parser.add_argument_group("output")
    output.add_argument("--every", type=float, default=60.0, help="table row interval, s")
    output.add_argument("--format", choices=("table", "markdown", "csv"), default="table")
    output.add_argument("--csv", help="also write every second's sample to this CSV file")
    output.add_argument("--explain", action="store_true", help="print every rescale decision in full")
    output.add_argument(
        "--update-docs",
        metavar="MARKDOWN",
        help="regenerate the replay tables of this document (docs/scaling-behavior.md) and exit",
    )
    parser.set_defaults(func=run)


def _service_autoscaling(path: str) -> AutoscalingSpec:
    text = Path(path).read_text(encoding="utf-8")
    data = parse_yaml(text, source=path, what="service spec")
    if isinstance(data, dict) and data.get("kind") == "ConfigMap":
        text = str((data.get("data") or {}).get(SERVICE_CONFIGMAP_KEY, ""))
    return parse_service_yaml(text, source=path).autoscaling


def _spec(args: argparse.Namespace) -> HpaSpec:
    autoscaling = _service_autoscaling(args.service) if args.service else AutoscalingSpec()
    behavior: Behavior | None = None
    if args.behavior_file:
        text = Path(args.behavior_file).read_text(encoding="utf-8")
        behavior = parse_behavior_yaml(text, source=args.behavior_file)
    elif args.behavior == "kubernetes":
        behavior = Behavior()
    spec = hpa_spec_from_autoscaling(
        autoscaling, behavior=behavior, use_behavior=args.behavior != "none" or bool(args.behavior_file)
    )
    return replace(
        spec,
        min_replicas=spec.min_replicas if args.min_replicas is None else args.min_replicas,
        max_replicas=spec.max_replicas if args.max_replicas is None else args.max_replicas,
        target_average_value=spec.target_average_value if args.target_queue is None else args.target_queue,
        tolerance=args.tolerance,
        downscale_stabilization_seconds=args.downscale_stabilization,
    )


def _trace(args: argparse.Namespace) -> Trace:
    if args.trace_file:
        text = Path(args.trace_file).read_text(encoding="utf-8")
        return parse_trace_csv(text, name=args.trace_file, end=args.duration)
    shape = TraceShape(
        base_rate=args.base_rate,
        factor=args.factor,
        start=args.spike_start,
        duration=args.spike_duration,
        end=args.duration,
    )
    return build_trace(args.trace, shape)


def _update_docs(path: str, out: TextIO, err: TextIO) -> int:
    try:
        text = Path(path).read_text(encoding="utf-8")
        updated = update_document(text, docs_section())
    except (OSError, DocsError) as exc:
        print(f"what-if: {path}: {exc}", file=err)
        return 2
    if updated != text:
        Path(path).write_text(updated, encoding="utf-8")
    print(f"{path}: {'updated' if updated != text else 'already up to date'}", file=out)
    return 0


def run(args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    if args.update_docs:
        return _update_docs(args.update_docs, out, err)
    try:
        spec = _spec(args)
        trace = _trace(args)
        config = ReplayConfig(
            capacity_per_replica=args.capacity,
            pod_start_delay=args.start_delay,
            sync_period=args.sync_period,
            metric_lag=args.metric_lag,
        )
    except (OSError, ConfigError, BehaviorInputError, HpaSpecError, TraceError, ReplayError) as exc:
        print(f"what-if: {exc}", file=err)
        return 2
    result = replay(trace, spec, config)
    if args.csv:
        Path(args.csv).write_text(format_csv(result), encoding="utf-8")
    if args.format == "csv":
        out.write(format_csv(result, args.every))
        return 0
    comment = "" if args.format == "table" else "> "
    for line in format_summary(summarize(result), result):
        out.write(f"{comment}{line}\n")
    out.write("\n")
    out.write(
        format_table(result, args.every) if args.format == "table" else format_markdown(result, args.every)
    )
    if args.explain:
        out.write("\n")
        for decision in result.rescales:
            out.write(f"t={decision.time:g}s {decision.explain()}\n")
    return 0
