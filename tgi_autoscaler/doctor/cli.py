"""``tgi-autoscaler doctor [SERVICE]``: check each link from the pods to the HPA, name the first broken.

Needs read access to the service's namespace (ConfigMaps, Deployments, pods, events, HPAs,
PrometheusRules), to ``apiservices`` and nodes (optional: without them the taints are not named),
to the external metrics API as the HPA reads it, and to Prometheus' HTTP API.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from tgi_autoscaler.doctor.checks import Finding, check_adapter, check_apiservice, check_service
from tgi_autoscaler.doctor.collect import (
    collect_cluster,
    collect_service,
    prometheus_url_of_adapter,
    service_names,
)
from tgi_autoscaler.doctor.report import EXIT_UNKNOWN, exit_code, format_json, format_table
from tgi_autoscaler.kube.client import ApiKubeClient
from tgi_autoscaler.kube.connect import load_api_client
from tgi_autoscaler.kube.errors import ApiError, TransportError, describe

__all__ = ["register", "run"]

ADAPTER_SERVICE = "tgi-autoscaler/tgi-autoscaler-adapter"


def _namespaced_name(text: str) -> tuple[str, str]:
    namespace, sep, name = text.partition("/")
    if not sep or not namespace or not name:
        raise argparse.ArgumentTypeError(f"--adapter-service: expected NAMESPACE/NAME, got {text!r}")
    return namespace, name


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="Check the chain from the pods to the HPA and name the first broken link.",
        description=__doc__,
    )
    parser.add_argument(
        "service", nargs="?", help="the service (default: every service ConfigMap in the namespace)"
    )
    parser.add_argument(
        "-n", "--namespace", default="default", help="the service's namespace (default: default)"
    )
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster config, else $KUBECONFIG)")
    parser.add_argument(
        "--prometheus-url",
        help="Prometheus' base URL (default: the --prometheus-url of the adapter's Deployment)",
    )
    parser.add_argument(
        "--adapter-service",
        type=_namespaced_name,
        default=_namespaced_name(ADAPTER_SERVICE),
        metavar="NAMESPACE/NAME",
        help=f"the adapter's Service, which the APIService must point to (default: {ADAPTER_SERVICE})",
    )
    parser.set_defaults(func=run)


async def _findings(args: argparse.Namespace) -> list[Finding]:
    api = await load_api_client(args.kubeconfig)
    try:
        client = ApiKubeClient(api)
        cluster = await collect_cluster(client, args.adapter_service)
        names = [args.service] if args.service else await service_names(client, args.namespace)
        if not names:
            return [check_apiservice(cluster), check_adapter(cluster, [])]
        url = args.prometheus_url or await prometheus_url_of_adapter(client, args.adapter_service)
        findings: list[Finding] = []
        for name in names:
            snapshot = await collect_service(client, args.namespace, name, prometheus_url=url)
            findings.extend(check_service(cluster, snapshot))
        return findings
    finally:
        await api.close()


def run(args: argparse.Namespace) -> int:
    try:
        findings = asyncio.run(_findings(args))
    except (ApiError, TransportError, OSError) as exc:
        print(f"error: cannot read the cluster: {describe(exc)}", file=sys.stderr)
        return EXIT_UNKNOWN
    sys.stdout.write(format_json(findings) + "\n" if args.output == "json" else format_table(findings))
    return exit_code(findings)
