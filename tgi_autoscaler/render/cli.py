"""``tgi-autoscaler render``: print the objects the controller would apply for a service, offline.

Reads either a service ConfigMap manifest (one or more documents, as in ``manifests/examples``) or a
bare service spec, and prints multi-document YAML through ``render_service``, the same function the
controller uses, so what is reviewed here is what the controller applies.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from tgi_autoscaler.config.base import load_yaml_documents
from tgi_autoscaler.config.constants import SERVICE_CONFIGMAP_KEY
from tgi_autoscaler.config.errors import ConfigError, ConfigIssue
from tgi_autoscaler.config.service import parse_service_yaml
from tgi_autoscaler.render import RenderOptions, ServiceSource, render_service, source_from_configmap, to_yaml

__all__ = ["register", "render_file", "run", "service_sources"]


def _is_service_configmap(doc: Any) -> bool:
    return (
        isinstance(doc, dict)
        and doc.get("kind") == "ConfigMap"
        and isinstance(doc.get("data"), dict)
        and SERVICE_CONFIGMAP_KEY in doc["data"]
    )


def service_sources(text: str, origin: str, name: str | None, namespace: str | None) -> list[ServiceSource]:
    """The services of a ConfigMap manifest (one or more documents) or of a bare spec (named ``name``)."""
    docs = load_yaml_documents(text, source=origin, what="service spec")
    if any(isinstance(doc, dict) and "kind" in doc for doc in docs):
        configmaps = [doc for doc in docs if _is_service_configmap(doc)]
        if not configmaps:
            raise ConfigError(
                origin, [ConfigIssue("<root>", f"no ConfigMap with data key {SERVICE_CONFIGMAP_KEY!r} found")]
            )
        sources = []
        for configmap in configmaps:
            metadata = dict(configmap.get("metadata") or {})
            if name is not None:
                metadata["name"] = name
            if namespace is not None:
                metadata["namespace"] = namespace
            sources.append(source_from_configmap({**configmap, "metadata": metadata}, set_owner=False))
        return sources
    if name is None:
        raise ConfigError(origin, [ConfigIssue("<root>", "a bare service spec needs --name")])
    spec = parse_service_yaml(text, source=origin)
    return [ServiceSource(name=name, namespace=namespace or "default", spec=spec)]


def render_file(
    text: str,
    *,
    origin: str,
    options: RenderOptions,
    name: str | None = None,
    namespace: str | None = None,
) -> str:
    """The YAML ``render`` prints for a file's text; raises ``ConfigError`` on invalid input."""
    objects: list[dict[str, Any]] = []
    for source in service_sources(text, origin, name, namespace):
        objects.extend(render_service(source, options))
    return to_yaml(objects)


def run(args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    path: str = args.file
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        print(f"render: cannot read {path}: {exc.strerror}", file=err)
        return 2
    options = RenderOptions(
        prometheus_operator=args.prometheus_operator,
        dashboard_namespace=args.dashboard_namespace,
    )
    try:
        rendered = render_file(
            text,
            origin="<stdin>" if path == "-" else path,
            options=options,
            name=args.name,
            namespace=args.namespace,
        )
    except ConfigError as exc:
        print(str(exc), file=err)
        return 1
    out.write(rendered)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "render",
        help="print the Kubernetes objects of a service (offline)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-f", "--file", required=True, help="service ConfigMap manifest or bare service spec ('-' for stdin)"
    )
    parser.add_argument(
        "--name", help="service name (default: the ConfigMap's name; required for a bare spec)"
    )
    parser.add_argument("--namespace", help="namespace (default: the ConfigMap's, else 'default')")
    parser.add_argument(
        "--no-prometheus-operator",
        dest="prometheus_operator",
        action="store_false",
        help="annotate pods for an annotation-driven Prometheus (no PodMonitor/PrometheusRule)",
    )
    parser.add_argument(
        "--dashboard-namespace", help="namespace for dashboard ConfigMaps when the spec does not name one"
    )
    parser.set_defaults(func=run)
