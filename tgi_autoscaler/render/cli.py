"""``tgi-autoscaler render``: print the objects the controller would apply for a service, offline.

Reads either a service ConfigMap manifest (one or more documents, as in ``manifests/examples``) or a
bare service spec, and prints multi-document YAML through ``render_service``, the same function the
controller uses, so what is reviewed here is what the controller applies. With ``--autoscaler
keda`` the service scales through a KEDA ScaledObject (for clusters where KEDA serves external
metrics) instead of an HPA on our adapter.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from tgi_autoscaler.config.base import load_yaml_documents
from tgi_autoscaler.config.constants import SERVICE_CONFIGMAP_KEY
from tgi_autoscaler.config.errors import ConfigError, ConfigIssue
from tgi_autoscaler.config.metrics import parse_metrics_yaml
from tgi_autoscaler.config.service import parse_service_yaml
from tgi_autoscaler.render import (
    KedaOptions,
    RenderOptions,
    ServiceSource,
    render_service,
    source_from_configmap,
    to_yaml,
)
from tgi_autoscaler.render.keda import check_keda_options

__all__ = ["keda_options", "register", "render_file", "run", "service_sources"]


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


def keda_options(autoscaler: str, prometheus_url: str | None, metrics_file: str | None) -> KedaOptions | None:
    """The KEDA options of ``--autoscaler``/``--keda-prometheus-url``/``--metrics-file`` (None: the HPA).

    Raises ``ConfigError`` naming the flag when KEDA is asked for without a Prometheus URL, and
    ``OSError`` when the metrics document cannot be read.
    """
    if autoscaler == "hpa":
        return None
    if not prometheus_url:
        raise ConfigError(
            f"--autoscaler {autoscaler}",
            [ConfigIssue("--keda-prometheus-url", "required: the Prometheus URL KEDA's triggers query")],
            what="command line",
        )
    definitions = None
    if metrics_file is not None:
        text = Path(metrics_file).read_text(encoding="utf-8")
        definitions = parse_metrics_yaml(text, source=metrics_file).definitions()
    options = KedaOptions(prometheus_url=prometheus_url, definitions=definitions)
    check_keda_options(options)
    return options


def run(args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    path: str = args.file
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        print(f"render: cannot read {path}: {exc.strerror}", file=err)
        return 2
    try:
        options = RenderOptions(
            prometheus_operator=args.prometheus_operator,
            dashboard_namespace=args.dashboard_namespace,
            keda=keda_options(args.autoscaler, args.keda_prometheus_url, args.metrics_file),
        )
    except OSError as exc:
        print(f"render: cannot read {args.metrics_file}: {exc.strerror}", file=err)
        return 2
    except ConfigError as exc:
        print(str(exc), file=err)
        return 1
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
    add_autoscaler_arguments(parser)
    parser.set_defaults(func=run)


def add_autoscaler_arguments(
    parser: argparse.ArgumentParser, *, choices: tuple[str, ...] = ("hpa", "keda")
) -> None:
    """``--autoscaler``, ``--keda-prometheus-url`` and ``--metrics-file``, for render and the controller."""
    parser.add_argument(
        "--autoscaler",
        choices=choices,
        default="hpa",
        help="hpa: an HPA on this project's adapter (default); keda: a KEDA ScaledObject with prometheus "
        "triggers, for clusters where KEDA serves external metrics"
        + (
            "; auto: keda when KEDA owns the v1beta1.external.metrics.k8s.io APIService"
            if "auto" in choices
            else ""
        ),
    )
    parser.add_argument(
        "--keda-prometheus-url",
        help="Prometheus URL the KEDA triggers query (required with keda)",
    )
    parser.add_argument(
        "--metrics-file",
        help="the adapter's metrics document, whose definitions the KEDA triggers run (default: built-in)",
    )
