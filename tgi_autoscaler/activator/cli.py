"""``tgi-autoscaler activator``: command-line flags of the scale-to-zero proxy.

The renderer writes these flags from ``autoscaling.scaleToZero``; every bad value is reported with
its flag's name before anything starts.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from tgi_autoscaler import argtypes
from tgi_autoscaler.activator.gate import HoldPolicy
from tgi_autoscaler.activator.proxy import ActivatorOptions, run_activator

__all__ = ["options_from_args", "register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "activator",
        help="hold requests while a scaled-to-zero service has no Ready replica, then forward them",
        description="Proxy in front of a service that scales to zero: holds requests while the "
        "upstream has no Ready replica (bounded, then 503 with Retry-After), exports how many it "
        "holds for the HPA's signal, then forwards them and streams the responses unchanged.",
    )
    parser.add_argument(
        "--upstream", required=True, help="base URL of the service, e.g. http://llama.ns.svc:80"
    )
    parser.add_argument("--bind-address", default="0.0.0.0", help="listen address (default %(default)s)")  # noqa: S104
    parser.add_argument("--port", type=argtypes.port, default=8080, help="proxy port (default %(default)s)")
    parser.add_argument(
        "--metrics-port",
        type=argtypes.port,
        default=9091,
        help="/metrics and /healthz port (default %(default)s)",
    )
    parser.add_argument(
        "--health-path", default="/health", help="upstream readiness path (default %(default)s)"
    )
    parser.add_argument("--max-held", type=argtypes.positive_int, default=256, help="requests held at most")
    parser.add_argument(
        "--max-wait", type=argtypes.positive, default=300.0, metavar="SECONDS", help="longest hold"
    )
    parser.add_argument(
        "--idle-after",
        type=argtypes.positive,
        default=900.0,
        metavar="SECONDS",
        help="idle window (keep-alive)",
    )
    parser.add_argument(
        "--retry-after",
        type=argtypes.positive_int,
        default=10,
        metavar="SECONDS",
        help="Retry-After of a 503",
    )
    parser.add_argument("--probe-interval", type=argtypes.positive, default=1.0, metavar="SECONDS")
    parser.add_argument("--shutdown-grace", type=argtypes.positive, default=10.0, metavar="SECONDS")
    parser.set_defaults(func=run)


def options_from_args(args: argparse.Namespace) -> ActivatorOptions:
    """Validated options; raises ``ValueError`` naming the flag."""
    if not args.upstream.startswith(("http://", "https://")):
        raise ValueError(f"--upstream: must be an http:// or https:// URL (got {args.upstream!r})")
    if not args.health_path.startswith("/"):
        raise ValueError(f"--health-path: must start with / (got {args.health_path!r})")
    # The numbers were checked by their argparse types.
    policy = HoldPolicy(
        max_held=args.max_held,
        max_wait_s=args.max_wait,
        idle_after_s=args.idle_after,
        retry_after_s=args.retry_after,
    )
    return ActivatorOptions(
        upstream=args.upstream.rstrip("/"),
        policy=policy,
        bind_address=args.bind_address,
        port=args.port,
        metrics_port=args.metrics_port,
        health_path=args.health_path,
        probe_interval_s=args.probe_interval,
    )


def run(args: argparse.Namespace) -> int:
    try:
        options = options_from_args(args)
    except ValueError as exc:
        print(f"tgi-autoscaler activator: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(run_activator(options, shutdown_grace_s=args.shutdown_grace))
