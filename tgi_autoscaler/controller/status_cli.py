"""``tgi-autoscaler status``: every service's state, as the controller last recorded it.

Reads the service ConfigMaps and their status annotations; needs only ``list configmaps``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from typing import Any

from tgi_autoscaler.config.constants import ANNOTATION_STATUS, SERVICE_CONFIGMAP_KEY
from tgi_autoscaler.controller.manager import SERVICE_SELECTOR
from tgi_autoscaler.controller.status import ServiceRow, format_table, row_from_configmap
from tgi_autoscaler.kube.client import ApiKubeClient, KubeClient
from tgi_autoscaler.kube.connect import load_api_client
from tgi_autoscaler.kube.errors import ApiError, TransportError
from tgi_autoscaler.kube.resources import CONFIGMAP

__all__ = ["collect_rows", "register", "run"]


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "status", help="Show every TGI service's phase, replicas and last message.", description=__doc__
    )
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster config, else $KUBECONFIG)")
    parser.add_argument("-n", "--namespace", help="only this namespace (default: all)")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    parser.set_defaults(func=run)


async def collect_rows(client: KubeClient, namespace: str | None) -> list[ServiceRow]:
    listed = await client.list(CONFIGMAP, namespace=namespace, label_selector=SERVICE_SELECTOR)
    return [
        row_from_configmap(cm, annotation=ANNOTATION_STATUS, data_key=SERVICE_CONFIGMAP_KEY)
        for cm in listed.items
    ]


async def _main(args: argparse.Namespace) -> int:
    api = await load_api_client(args.kubeconfig)
    try:
        rows = await collect_rows(ApiKubeClient(api), args.namespace)
    except (ApiError, TransportError) as exc:
        print(f"error: cannot list service ConfigMaps: {exc}", file=sys.stderr)
        return 1
    finally:
        await api.close()
    if args.output == "json":
        print(json.dumps([asdict(r) for r in sorted(rows, key=lambda r: (r.namespace, r.name))], indent=2))
    elif rows:
        sys.stdout.write(format_table(rows))
    else:
        print("no service ConfigMaps found (label tgi-autoscaler.io/service=true)")
    return 0


def run(args: argparse.Namespace) -> int:
    return asyncio.run(_main(args))
