"""``python -m tgi_autoscaler_dev simulate``: run a simulated TGI fleet, optionally driving a load trace.

Without ``--trace`` the fleet serves until Ctrl-C (point a client or Prometheus at it); with a trace
the load generator replays it against the fleet's front, then the command prints the report and
exits. A one-line status (replicas, queue per pod, load counters) is refreshed while it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import TextIO

from tgi_autoscaler_dev.sim.fleet import Fleet
from tgi_autoscaler_dev.sim.loadgen import LoadGenerator, LoadReport, LoadSpec
from tgi_autoscaler_dev.sim.metrics import ENGINES
from tgi_autoscaler_dev.sim.model import ReplicaConfig
from tgi_autoscaler_dev.sim.server import ServedModel
from tgi_autoscaler_dev.sim.traces import parse_trace

__all__ = ["register"]


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--label: expected KEY=VALUE, got {text!r}")
    return key, value


def _trace(text: str) -> str:
    try:
        parse_trace(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="run simulated TGI replicas on loopback (and optionally a load trace)",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    fleet = parser.add_argument_group("fleet")
    fleet.add_argument("--service", default="tgi-sim", help="service name (pod label instance)")
    fleet.add_argument("--namespace", default="default")
    fleet.add_argument("--replicas", type=int, default=2)
    fleet.add_argument(
        "--label", type=_label, action="append", default=[], metavar="KEY=VALUE",
        help="extra pod label (repeatable)",
    )  # fmt: skip
    fleet.add_argument("--engine", choices=ENGINES, default="tgi", help="metric names to export")
    fleet.add_argument("--model-id", default="tgi-autoscaler/simulated-llm")
    fleet.add_argument(
        "--front-port", type=int, default=0, help="loopback port of the balancing front (0: any)"
    )
    fleet.add_argument(
        "--file-sd-dir", type=Path, default=None,
        help="write a Prometheus file_sd JSON file for the live replicas into this directory",
    )  # fmt: skip
    replica = parser.add_argument_group("replica capacity")
    replica.add_argument("--max-batch-size", type=int, default=8)
    replica.add_argument("--token-rate", type=float, default=50.0, help="tokens/s of one sequence")
    replica.add_argument("--batch-slowdown", type=float, default=0.02)
    replica.add_argument("--prefill-time", type=float, default=0.02, help="seconds")
    replica.add_argument("--max-concurrent-requests", type=int, default=128)
    load = parser.add_argument_group("load")
    load.add_argument(
        "--trace", type=_trace, default=None,
        help="e.g. constant:rate=5 | step:from=2,to=20,at=30 | "
        "spike:base=2,peak=30,start=10,duration=20 | diurnal:min=1,max=20,period=120",
    )  # fmt: skip
    load.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    load.add_argument("--max-requests", type=int, default=100_000)
    load.add_argument("--max-new-tokens", type=int, default=20)
    load.add_argument("--stream", action="store_true", help="use /generate_stream")
    load.add_argument("--poisson", action="store_true", help="Poisson arrivals instead of even")
    load.add_argument("--seed", type=int, default=None)
    parser.add_argument("--status-interval", type=float, default=1.0, help="seconds")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = ReplicaConfig(
            max_batch_size=args.max_batch_size,
            token_rate=args.token_rate,
            batch_slowdown=args.batch_slowdown,
            prefill_time_s=args.prefill_time,
            max_concurrent_requests=args.max_concurrent_requests,
        )
        spec = (
            None
            if args.trace is None
            else LoadSpec(
                trace=parse_trace(args.trace),
                duration_s=args.duration,
                max_requests=args.max_requests,
                max_new_tokens=args.max_new_tokens,
                stream=args.stream,
                poisson=args.poisson,
                seed=args.seed,
            )
        )
        fleet = Fleet(
            args.service,
            namespace=args.namespace,
            replicas=args.replicas,
            config=config,
            engine=args.engine,
            served=ServedModel(model_id=args.model_id),
            labels=dict(args.label),
            file_sd_dir=args.file_sd_dir,
            front_port=args.front_port,
        )
    except ValueError as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_main(fleet, spec, args.status_interval, sys.stdout))


def _status(fleet: Fleet, report: LoadReport | None, started: float) -> str:
    snap = fleet.snapshot()
    per_pod = "/".join(str(s.queue_size) for s in snap.pods.values()) or "-"
    line = (
        f"t={time.monotonic() - started:6.1f}s replicas={snap.replicas} draining={snap.draining} "
        f"queue={snap.queue_size} [{per_pod}] batch={snap.batch_size}"
    )
    if report is not None:
        line += f" | {report.summary()}"
    return line


async def _main(fleet: Fleet, spec: LoadSpec | None, interval: float, out: TextIO) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    interactive = out.isatty()
    started = time.monotonic()
    report: LoadReport | None = None
    async with fleet:
        print(f"front {fleet.url}", file=out)
        for pod in fleet.replicas:
            print(f"pod {pod.name} {pod.url}", file=out)
        if fleet.file_sd_path is not None:
            print(f"file_sd {fleet.file_sd_path}", file=out)
        load_task: asyncio.Task[LoadReport] | None = None
        if spec is not None:
            generator = LoadGenerator(fleet.url, spec)
            report = generator.report
            load_task = asyncio.create_task(generator.run())
            load_task.add_done_callback(lambda _: stop.set())
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await stop.wait()
            line = _status(fleet, report, started)
            print(f"\r{line}\x1b[K" if interactive else line, end="" if interactive else "\n", file=out)
            out.flush()
        if interactive:
            print(file=out)
        if load_task is not None:
            if not load_task.done():
                load_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await load_task
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.remove_signal_handler(sig)
    if report is not None:
        print(json.dumps(report.to_dict()), file=out)
    return 0
