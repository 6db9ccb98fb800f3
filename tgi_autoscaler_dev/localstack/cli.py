"""``python -m tgi_autoscaler_dev localstack``: build the local stack's binaries, or run the stack by hand.

``build`` is what the set-up script calls: it compiles (or finds cached) every Go binary the tests
and the demo use, printing progress, so the test run itself never waits on a compiler.
``up`` starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and Prometheus and keeps
them running until interrupted, printing the kubeconfig path, for poking at the pieces by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import tempfile
import time
from pathlib import Path
from typing import Final

from tgi_autoscaler_dev.localstack.binaries import ETCD_VERSION, KUBERNETES_VERSION, ensure_binaries
from tgi_autoscaler_dev.localstack.controlplane import ControlPlane, ControlPlaneSettings
from tgi_autoscaler_dev.localstack.prometheus import PrometheusServer

# Optional builders of further cached tools: (module, function). Each takes no arguments and returns
# the path it built or found. Modules absent from this build are skipped.
EXTRA_BUILDS: tuple[tuple[str, str], ...] = (
    ("tgi_autoscaler_dev.localstack.kube_state_metrics", "ensure_kube_state_metrics"),
    ("tgi_autoscaler_dev.localstack.crds", "ensure_prometheus_operator_crds"),
    ("tgi_autoscaler_dev.localstack.crds", "ensure_routing_crds"),
    ("tgi_autoscaler_dev.localstack.helm", "ensure_helm"),
    ("tgi_autoscaler_dev.localstack.kwok", "ensure_kwok_files"),
    # KEDA's CRDs (a module download, no build) for the KEDA backend's CRD e2e test.
    ("tgi_autoscaler_dev.localstack.keda", "keda_crds"),
)
# Built only on request (``build --with-keda``): KEDA's operator and metrics server, for the tests
# marked ``keda`` and bench/keda_outage_bench.py. Their cold build alone is about 16 min of CPU on
# two cores, which the default cold test run (45-min budget) cannot carry.
KEDA_BUILD: Final = ("tgi_autoscaler_dev.localstack.keda", "ensure_keda")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("localstack", help="build or run the local control plane and Prometheus")
    sub = parser.add_subparsers(dest="localstack_command", required=True)
    build = sub.add_parser("build", help=f"build/cache Kubernetes {KUBERNETES_VERSION}, etcd {ETCD_VERSION}")
    build.add_argument(
        "--with-keda",
        action="store_true",
        help="also build KEDA's operator and metrics server (opt-in: about 16 min of CPU cold)",
    )
    build.set_defaults(func=_build)
    up = sub.add_parser("up", help="start the control plane (with kube-scheduler) and Prometheus")
    up.add_argument("--workdir", type=Path, default=None)
    up.add_argument("--hpa-sync-period", type=float, default=5.0, help="seconds")
    up.add_argument("--downscale-stabilization", type=float, default=30.0, help="seconds")
    up.set_defaults(func=_up)


def _build(args: argparse.Namespace) -> int:
    started = time.monotonic()
    binaries = ensure_binaries()
    print(f"kube-apiserver          {binaries.kube_apiserver}")
    print(f"kube-controller-manager {binaries.kube_controller_manager}")
    print(f"kube-scheduler          {binaries.kube_scheduler}")
    print(f"kubectl                 {binaries.kubectl}")
    print(f"etcd                    {binaries.etcd}")
    builds = EXTRA_BUILDS + ((KEDA_BUILD,) if args.with_keda else ())
    for module_name, func_name in builds:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue
        built = getattr(module, func_name)()
        paths = built if isinstance(built, list) else [built]
        for path in paths:
            print(f"{func_name.removeprefix('ensure_'):<24}{path}")
    print(f"ready in {time.monotonic() - started:.1f}s")
    return 0


def _up(args: argparse.Namespace) -> int:
    return asyncio.run(_run_up(args))


async def _run_up(args: argparse.Namespace) -> int:
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tgi-autoscaler-stack-"))
    cp = ControlPlane(
        workdir / "cp",
        settings=ControlPlaneSettings(
            hpa_sync_period_s=args.hpa_sync_period,
            hpa_downscale_stabilization_s=args.downscale_stabilization,
        ),
    )
    prom = PrometheusServer(workdir / "prometheus")
    started = time.monotonic()
    try:
        await cp.start()
        await prom.start()
        print(f"control plane up in {time.monotonic() - started:.1f}s")
        print(f"export KUBECONFIG={cp.kubeconfig}")
        print(f"prometheus {prom.url} (file_sd dir {prom.file_sd_dir})")
        print("Ctrl-C to stop")
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
    finally:
        await prom.stop()
        await cp.stop()
    return 0
