"""``tgi-autoscaler controller``: run the controller against a cluster.

In a pod it uses the in-cluster service account; elsewhere a kubeconfig. SIGTERM and SIGINT shut it
down gracefully (watches stopped, reconciles in flight finished, lease released).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from tgi_autoscaler.config.errors import ConfigError
from tgi_autoscaler.controller.leader import LeaderElectionConfig
from tgi_autoscaler.controller.manager import Controller, ControllerSettings
from tgi_autoscaler.controller.own_metrics import ControllerMetrics
from tgi_autoscaler.controller.probes import ProbeServer
from tgi_autoscaler.kube.client import ApiKubeClient
from tgi_autoscaler.kube.connect import load_api_client
from tgi_autoscaler.render.cli import add_autoscaler_arguments, keda_options

__all__ = ["register", "run"]

log = structlog.get_logger(__name__)

_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def _default_identity() -> str:
    # Unique per process: two controllers on one host (tests, a laptop) must not share a lease identity.
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def _default_lease_namespace() -> str:
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    if _SA_NAMESPACE.exists():
        return _SA_NAMESPACE.read_text().strip()
    return "default"


def _bind(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host or "0.0.0.0", int(port)  # noqa: S104 - probe endpoint, see ProbeServer


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "controller",
        help="Run the controller: service ConfigMaps -> Deployment, Service, HPA, monitoring.",
        description=__doc__,
    )
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster config, else $KUBECONFIG)")
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        dest="namespaces",
        help="watch service ConfigMaps in this namespace (repeatable; default: all namespaces)",
    )
    parser.add_argument("--dashboard-namespace", help="namespace for Grafana dashboard ConfigMaps")
    parser.add_argument("--workers", type=int, default=4, help="concurrent reconciles (default 4)")
    parser.add_argument(
        "--metrics-bind",
        type=_bind,
        default=("0.0.0.0", 8080),  # noqa: S104 - probes and scrapes arrive on the pod IP
        help="HOST:PORT of /metrics, /healthz, /readyz",
    )
    parser.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--lease-name", default="tgi-autoscaler-controller")
    parser.add_argument("--lease-namespace", default=None, help="default: the pod's namespace")
    parser.add_argument("--identity", default=None, help="leader election identity (default: pod name)")
    parser.add_argument("--lease-duration", type=float, default=10.0, help="seconds (default 10)")
    parser.add_argument("--renew-deadline", type=float, default=7.0, help="seconds (default 7)")
    parser.add_argument("--retry-period", type=float, default=2.0, help="seconds (default 2)")
    parser.add_argument("--resync-period", type=float, default=300.0, help="seconds between full resyncs")
    parser.add_argument("--discovery-period", type=float, default=30.0, help="seconds between CRD checks")
    parser.add_argument("--shutdown-grace", type=float, default=20.0, help="seconds to finish reconciles")
    add_autoscaler_arguments(parser, choices=("hpa", "keda", "auto"))
    parser.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace) -> ControllerSettings:
    identity = args.identity or _default_identity()
    election = None
    if args.leader_elect:
        election = LeaderElectionConfig(
            lease_namespace=args.lease_namespace or _default_lease_namespace(),
            lease_name=args.lease_name,
            identity=identity,
            lease_duration_s=args.lease_duration,
            renew_deadline_s=args.renew_deadline,
            retry_period_s=args.retry_period,
        )
    namespaces = tuple(sorted({ns for value in args.namespaces for ns in value.split(",") if ns}))
    return ControllerSettings(
        namespaces=namespaces,
        dashboard_namespace=args.dashboard_namespace,
        workers=args.workers,
        resync_period_s=args.resync_period,
        discovery_period_s=args.discovery_period,
        shutdown_grace_s=args.shutdown_grace,
        leader_election=election,
        identity=identity,
        autoscaler=args.autoscaler,
        keda=keda_options("keda", args.keda_prometheus_url, args.metrics_file)
        if args.autoscaler != "hpa"
        else None,
    )


async def serve(args: argparse.Namespace) -> None:
    # Imported here: the renderer is the heaviest import and only the running controller needs it.
    from tgi_autoscaler.render import render_service, source_from_configmap

    settings = settings_from_args(args)
    registry = CollectorRegistry()
    api = await load_api_client(args.kubeconfig)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        controller = Controller(
            ApiKubeClient(api),
            settings,
            metrics=ControllerMetrics.create(registry),
            build_source=source_from_configmap,
            render=render_service,
        )
        host, port = args.metrics_bind
        probes = ProbeServer(
            registry, healthy=lambda: controller.healthy, ready=lambda: controller.ready, host=host, port=port
        )
        await probes.start()
        log.info(
            "controller.starting",
            identity=settings.identity,
            namespaces=list(settings.namespaces) or "all",
            leader_election=settings.leader_election is not None,
            metrics_port=probes.port,
        )
        try:
            await controller.run(stop)
        finally:
            await probes.stop()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await api.close()


def run(args: argparse.Namespace) -> int:
    try:
        settings_from_args(args)  # bad flags are reported before anything connects
    except (ConfigError, ValueError) as exc:
        print(f"controller: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"controller: cannot read {args.metrics_file}: {exc.strerror}", file=sys.stderr)
        return 2
    asyncio.run(serve(args))
    return 0
