"""The Helm chart's values, as one typed model from which the chart's generated files derive.

``charts/tgi-autoscaler`` is templated by hand (its objects mirror ``manifests/``, and a test holds
``helm template`` to ``kubectl kustomize`` object for object), but what describes its values is not:
``values.yaml`` (defaults, each key commented with its description), ``values.schema.json`` (what
``helm install``/``upgrade``/``template`` validate against, so a bad value fails before anything is
applied, with the path of the key), and the values table of the chart's ``README.md`` all come from
``ChartValues`` below. The adapter's metric definitions reuse the adapter's own model
(``MetricsConfig``), so the schema checks their structure as the adapter does. ``files/`` holds the
self-monitoring objects as ``render.self_monitoring`` renders them, for a placeholder namespace the
chart replaces with the release's.

``python -m tgi_autoscaler_dev chart`` rewrites the files; ``--check`` (and a unit test) fails when
they are stale.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Union

import yaml
from pydantic import BaseModel, Field, StringConstraints

from tgi_autoscaler.config.base import ConfigModel
from tgi_autoscaler.config.metrics import MetricsConfig
from tgi_autoscaler.render.self_monitoring import manifest_files

__all__ = [
    "CHART_DIR",
    "NAMESPACE_PLACEHOLDER",
    "ChartValues",
    "chart_files",
    "register",
    "stale_files",
]

CHART_DIR: Final = Path(__file__).resolve().parents[1] / "charts" / "tgi-autoscaler"
# Replaced by the release namespace in templates/self-monitoring.yaml; a valid DNS label, so the
# renderer accepts it, and a string that occurs nowhere else in the rendered objects.
NAMESPACE_PLACEHOLDER: Final = "chart-release-namespace"

# Kubernetes' quantity syntax (apimachinery's resource.Quantity), as its OpenAPI publishes it.
_NUMBER = r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
_QUANTITY_RE: Final = rf"^(\+|-)?{_NUMBER}(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?{_NUMBER}))?$"
Quantity = Annotated[str, StringConstraints(pattern=_QUANTITY_RE)] | Annotated[int, Field(ge=0)]
_OPTIONAL_HOST_RE: Final = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?$"
GoDuration = Annotated[str, StringConstraints(pattern=r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")]
DnsSubdomain = Annotated[
    str,
    StringConstraints(
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$", max_length=253
    ),
]


class Resources(ConfigModel):
    """Container resources (requests and limits, as in a pod spec)."""

    requests: Annotated[dict[str, Quantity], Field(description="Resource requests, e.g. `cpu: 50m`.")] = {}
    limits: Annotated[dict[str, Quantity], Field(description="Resource limits, e.g. `memory: 256Mi`.")] = {}


class LocalObjectReference(ConfigModel):
    name: Annotated[DnsSubdomain, Field(description="Name of a Secret in the release namespace.")]


class Image(ConfigModel):
    """The one image of both servers (`tgi-autoscaler adapter`, `tgi-autoscaler controller`)."""

    repository: Annotated[
        str,
        StringConstraints(min_length=1, pattern=r"^[^\s:@]+(:[0-9]+)?(/[^\s:@]+)*$"),
        Field(description="Image repository."),
    ] = "ghcr.io/tgi-autoscaler/tgi-autoscaler"
    tag: Annotated[
        str,
        StringConstraints(pattern=r"^([A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$"),
        Field(description="Image tag; empty means the chart's appVersion."),
    ] = ""
    digest: Annotated[
        str,
        StringConstraints(pattern=r"^(sha256:[a-f0-9]{64})?$"),
        Field(description="Image digest (`sha256:...`), appended to the tag when set."),
    ] = ""
    pull_policy: Annotated[
        Literal["Always", "IfNotPresent", "Never"], Field(description="Image pull policy.")
    ] = "IfNotPresent"


def _default_metrics() -> MetricsConfig:
    return MetricsConfig.model_validate(
        {
            "includeDefaults": True,
            "metrics": [
                {
                    "name": "tgi_queue_plus_batch",
                    "description": "Waiting plus batched TGI requests, summed over the selected pods.",
                    "query": "sum(tgi_queue_size{$matchers}) + sum(tgi_batch_current_size{$matchers})",
                }
            ],
        }
    )


class AdapterService(ConfigModel):
    """The Service the APIService routes to."""

    port: Annotated[
        int,
        Field(
            ge=1, le=65535, description="Service port, which the APIService names (the pod serves on 6443)."
        ),
    ] = 443
    external_name: Annotated[
        str,
        StringConstraints(pattern=_OPTIONAL_HOST_RE),
        Field(
            description="For an adapter run outside the cluster: the Service becomes `ExternalName` to "
            "this host and the aggregator dials `<externalName>:<port>`; the certificate must still name the "
            "Service."
        ),
    ] = ""


class Adapter(ConfigModel):
    """The external metrics adapter (serves `external.metrics.k8s.io/v1beta1`)."""

    enabled: Annotated[
        bool,
        Field(
            description="Install the adapter and its APIService. Set false where KEDA (or another "
            "adapter) owns `v1beta1.external.metrics.k8s.io`: only one server can, and helm refuses to "
            "take over an APIService another release installed. The metric definitions ConfigMap is "
            "kept, for the controller's KEDA triggers."
        ),
    ] = True
    replicas: Annotated[
        int,
        Field(ge=1, description="Replicas behind the Service; two keep the HPA served while one restarts."),
    ] = 2
    prometheus_url: Annotated[
        str,
        StringConstraints(pattern=r"^https?://[^\s/]+(/\S*)?$"),
        Field(description="Prometheus the adapter queries (`http://` or `https://`)."),
    ] = "http://prometheus-operated.monitoring.svc:9090"
    cache_ttl_seconds: Annotated[
        float,
        Field(ge=0, description="How long one Prometheus answer serves repeated reads (`--cache-ttl`)."),
    ] = 0.5
    metrics: Annotated[
        MetricsConfig,
        Field(
            default_factory=_default_metrics,
            description="The adapter's metric definitions (the `metrics.yaml` of its ConfigMap, reloaded "
            "without a restart); see docs/adapter.md.",
        ),
    ]
    service: Annotated[AdapterService, Field(description="The adapter's Service.")] = AdapterService()
    resources: Annotated[Resources, Field(description="Container resources.")] = Resources(
        requests={"cpu": "50m", "memory": "96Mi"}, limits={"memory": "256Mi"}
    )
    priority_class_name: Annotated[
        str,
        Field(
            description="Pod priority class: the HPA depends on the adapter, so it is critical by default."
        ),
    ] = "system-cluster-critical"
    node_selector: Annotated[dict[str, str], Field(description="Pod node selector.")] = {}
    tolerations: Annotated[list[dict[str, Any]], Field(description="Pod tolerations.")] = []
    pod_annotations: Annotated[dict[str, str], Field(description="Extra pod annotations.")] = {}
    extra_args: Annotated[list[str], Field(description="Extra `tgi-autoscaler adapter` arguments.")] = []


class LeaderElection(ConfigModel):
    """The controller's Lease timing (one replica reconciles, the other stands by)."""

    lease_duration_seconds: Annotated[int, Field(ge=1, description="`--lease-duration`.")] = 10
    renew_deadline_seconds: Annotated[
        int, Field(ge=1, description="`--renew-deadline`; must be below the lease duration.")
    ] = 7
    retry_period_seconds: Annotated[int, Field(ge=1, description="`--retry-period`.")] = 2


class Controller(ConfigModel):
    """The controller (turns service ConfigMaps into Deployments, Services, HPAs and more)."""

    replicas: Annotated[
        int, Field(ge=1, description="Replicas; one holds the Lease, the others stand by.")
    ] = 2
    workers: Annotated[int, Field(ge=1, description="Concurrent reconciles (`--workers`).")] = 4
    autoscaler: Annotated[
        Literal["hpa", "keda", "auto"],
        Field(
            description="`--autoscaler`: `hpa` (an HPA per service, on this chart's adapter), `keda` (a "
            "KEDA ScaledObject per service, with prometheus triggers running `adapter.metrics`), or "
            "`auto` (keda for as long as KEDA owns the external metrics APIService). With `keda` or "
            "`auto` the controller reads the metric definitions at start; an edit of `adapter.metrics` "
            "restarts it through a checksum annotation."
        ),
    ] = "hpa"
    keda_prometheus_url: Annotated[
        str,
        StringConstraints(pattern=r"^(https?://[^\s/]+(/\S*)?)?$"),
        Field(
            description="Prometheus that KEDA's triggers query (`--keda-prometheus-url`); empty: "
            "`adapter.prometheusUrl`. KEDA's operator dials it, not the controller."
        ),
    ] = ""
    leader_election: Annotated[LeaderElection, Field(description="Lease timing.")] = LeaderElection()
    shutdown_grace_seconds: Annotated[
        int,
        Field(ge=0, le=29, description="Time to finish reconciles on SIGTERM (below the pod's 30 s grace)."),
    ] = 20
    resources: Annotated[Resources, Field(description="Container resources.")] = Resources(
        requests={"cpu": "50m", "memory": "96Mi"}, limits={"memory": "384Mi"}
    )
    priority_class_name: Annotated[str, Field(description="Pod priority class (none by default).")] = ""
    node_selector: Annotated[dict[str, str], Field(description="Pod node selector.")] = {}
    tolerations: Annotated[list[dict[str, Any]], Field(description="Pod tolerations.")] = []
    pod_annotations: Annotated[dict[str, str], Field(description="Extra pod annotations.")] = {}
    extra_args: Annotated[list[str], Field(description="Extra `tgi-autoscaler controller` arguments.")] = []


class GeneratedCertificate(ConfigModel):
    """Lifetimes of the certificate the chart generates (`certificate.mode: generate`)."""

    ca_validity_days: Annotated[
        int, Field(ge=1, description="Validity of the CA in the APIService caBundle.")
    ] = 3650
    validity_days: Annotated[
        int, Field(ge=1, description="Validity of the adapter's serving certificate.")
    ] = 3650


class CertManagerCertificate(ConfigModel):
    """cert-manager's Certificates (`certificate.mode: certManager`)."""

    ca_duration: Annotated[GoDuration, Field(description="Duration of the private CA.")] = "87600h"
    duration: Annotated[GoDuration, Field(description="Duration of the serving certificate.")] = "2160h"
    renew_before: Annotated[
        GoDuration,
        Field(description="Renewal ahead of expiry; the adapter reloads the files without a restart."),
    ] = "360h"


class Certificate(ConfigModel):
    """The adapter's serving certificate and the APIService caBundle that trusts it."""

    mode: Annotated[
        Literal["generate", "certManager", "secret"],
        Field(
            description="`generate`: the chart makes a CA and certificate (kept across upgrades); "
            "`certManager`: cert-manager issues them and injects the caBundle; `secret`: you provide the "
            "Secret `tgi-autoscaler-adapter-serving-cert` and `caBundle`."
        ),
    ] = "generate"
    ca_bundle: Annotated[
        str,
        StringConstraints(pattern=r"^[A-Za-z0-9+/]*={0,2}$"),
        Field(description="With `mode: secret`: base64 of the PEM CA that signed the Secret's certificate."),
    ] = ""
    generate: Annotated[GeneratedCertificate, Field(description="With `mode: generate`.")] = (
        GeneratedCertificate()
    )
    cert_manager: Annotated[CertManagerCertificate, Field(description="With `mode: certManager`.")] = (
        CertManagerCertificate()
    )


class Toggle(ConfigModel):
    enabled: Annotated[bool, Field(description="Render it.")] = False


class SelfMonitoring(ConfigModel):
    """Alerts and a dashboard for the adapter and the controller (as `manifests/monitoring`)."""

    prometheus_rule: Annotated[
        Toggle, Field(description="A PrometheusRule (needs prometheus-operator's CRDs).")
    ] = Toggle()
    dashboard: Annotated[
        Toggle, Field(description="A Grafana dashboard ConfigMap for Grafana's sidecar.")
    ] = Toggle()


class ChartValues(ConfigModel):
    """Values of the tgi-autoscaler chart."""

    image: Annotated[Image, Field(description="The image.")] = Image()
    image_pull_secrets: Annotated[
        list[LocalObjectReference], Field(description="Pull secrets for both Deployments.")
    ] = []
    log_format: Annotated[Literal["json", "console"], Field(description="Log format of both servers.")] = (
        "json"
    )
    adapter: Annotated[Adapter, Field(description="The external metrics adapter.")] = Adapter()
    controller: Annotated[Controller, Field(description="The controller.")] = Controller()
    certificate: Annotated[Certificate, Field(description="Serving certificate and caBundle.")] = (
        Certificate()
    )
    self_monitoring: Annotated[SelfMonitoring, Field(description="Self-monitoring objects.")] = (
        SelfMonitoring()
    )


# ---- generation ------------------------------------------------------------------------------


def _model_of(annotation: Any) -> type[ConfigModel] | None:
    """The chart section model behind ``annotation``, if it is one (not the adapter's own models)."""
    if (
        isinstance(annotation, type)
        and issubclass(annotation, ConfigModel)
        and annotation.__module__ == __name__
    ):
        return annotation
    return None


def _values(model: BaseModel) -> dict[str, Any]:
    """The defaults as they go into values.yaml: camelCase, and only what was set for nested
    adapter models (the metric definitions), so defaults of the adapter's model stay implicit."""
    out: dict[str, Any] = {}
    for name, info in type(model).model_fields.items():
        key = info.alias or name
        value = getattr(model, name)
        if _model_of(info.annotation) is not None:
            out[key] = _values(value)
        elif isinstance(value, BaseModel):
            out[key] = value.model_dump(by_alias=True, exclude_unset=True, mode="json")
        else:
            out[key] = json.loads(
                json.dumps(value, default=lambda v: v.model_dump(by_alias=True, mode="json"))
            )
    return out


def _dump(value: Any, indent: int) -> list[str]:
    text = yaml.safe_dump(value, sort_keys=False, default_flow_style=False, width=100).rstrip("\n")
    return [" " * indent + line for line in text.splitlines()]


def _values_yaml_lines(model: BaseModel, indent: int) -> list[str]:
    lines: list[str] = []
    for name, info in type(model).model_fields.items():
        key = info.alias or name
        value = getattr(model, name)
        pad = " " * indent
        if info.description:
            lines += textwrap.wrap(
                info.description, 100, initial_indent=f"{pad}# ", subsequent_indent=f"{pad}# "
            )
        if _model_of(info.annotation) is not None:
            lines.append(f"{pad}{key}:")
            lines += _values_yaml_lines(value, indent + 2)
            continue
        dumped = _values(model)[key]
        if isinstance(dumped, (dict, list)) and dumped:
            lines.append(f"{pad}{key}:")
            lines += _dump(dumped, indent + 2)
        else:
            lines.append(f"{pad}{key}: {json.dumps(dumped)}")
    return lines


def values_yaml() -> str:
    header = [
        "# Generated from tgi_autoscaler_dev/chart.py (python -m tgi_autoscaler_dev chart); do not edit.",
        "# Every key is validated by values.schema.json when the chart is installed, upgraded or templated.",
    ]
    return "\n".join(header + _values_yaml_lines(ChartValues(), 0)) + "\n"


def values_schema() -> dict[str, Any]:
    schema = ChartValues.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin is Literal:
        return " \\| ".join(json.dumps(a) for a in typing.get_args(annotation))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is list:
        return f"list of {_type_name(typing.get_args(annotation)[0])}"
    if origin is dict:
        return f"map of {_type_name(typing.get_args(annotation)[1])}"
    if isinstance(annotation, type):
        return {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}.get(
            annotation.__name__, annotation.__name__
        )
    return str(annotation)


def _readme_rows(model: BaseModel, prefix: str) -> list[str]:
    rows: list[str] = []
    defaults = _values(model)
    for name, info in type(model).model_fields.items():
        key = info.alias or name
        path = f"{prefix}{key}"
        if _model_of(info.annotation) is not None:
            rows += _readme_rows(getattr(model, name), f"{path}.")
            continue
        default = json.dumps(defaults[key], separators=(", ", ": "))
        if len(default) > 60:
            default = "see values.yaml"
        description = (info.description or "").replace("|", "\\|")
        rows.append(f"| `{path}` | {_type_name(info.annotation)} | `{default}` | {description} |")
    return rows


_README_HEAD = """\
# tgi-autoscaler Helm chart

<!-- Generated from tgi_autoscaler_dev/chart.py (python -m tgi_autoscaler_dev chart); do not edit. -->

The external metrics adapter (`external.metrics.k8s.io/v1beta1` through the aggregation layer), the
controller, their RBAC, the APIService with its serving certificate, and optional self-monitoring.
With default values, `helm template` renders exactly the objects of `kubectl kustomize
manifests/adapter` and `manifests/controller` (a test compares them object for object), less the
Namespace (`helm install --create-namespace` makes it) and plus the generated serving certificate
Secret, whose CA fills the APIService `caBundle`.

```bash
helm install tgi-autoscaler charts/tgi-autoscaler --namespace tgi-autoscaler --create-namespace \\
  --set adapter.prometheusUrl=http://prometheus-operated.monitoring.svc:9090
kubectl get apiservice v1beta1.external.metrics.k8s.io   # Available=True
```

Only one server can own `v1beta1.external.metrics.k8s.io` per cluster, so the chart installs once
per cluster and its object names are fixed. Values are checked against `values.schema.json` before
anything is applied: a wrong type, an unknown key or a bad value fails with the key's path, e.g.
`at '/adapter/replicas': minimum: got 0, want 1`.

## Values

| key | type | default | description |
| --- | --- | --- | --- |
"""


def readme() -> str:
    return _README_HEAD + "\n".join(_readme_rows(ChartValues(), "")) + "\n"


def chart_files() -> dict[str, str]:
    """Generated files of the chart: path relative to the chart directory -> content."""
    monitoring = manifest_files(NAMESPACE_PLACEHOLDER)
    return {
        "values.yaml": values_yaml(),
        "values.schema.json": json.dumps(values_schema(), indent=2) + "\n",
        "README.md": readme(),
        "files/prometheusrule.yaml": monitoring["prometheusrule.yaml"],
        "files/dashboard-configmap.yaml": monitoring["dashboard-configmap.yaml"],
    }


def stale_files(chart_dir: Path = CHART_DIR) -> list[str]:
    """Generated files that differ from what is on disk."""
    return [
        name
        for name, content in chart_files().items()
        if not (chart_dir / name).exists() or (chart_dir / name).read_text() != content
    ]


def _run(args: argparse.Namespace) -> int:
    chart_dir: Path = args.chart_dir
    if args.check:
        stale = stale_files(chart_dir)
        if stale:
            print(
                f"stale in {chart_dir}: {', '.join(stale)} (run python -m tgi_autoscaler_dev chart)",
                file=sys.stderr,
            )
            return 1
        return 0
    for name, content in chart_files().items():
        path = chart_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        print(f"wrote {path}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("chart", help="generate the Helm chart's values, schema and README")
    parser.add_argument("--chart-dir", type=Path, default=CHART_DIR)
    parser.add_argument("--check", action="store_true", help="only report stale files (exit 1)")
    parser.set_defaults(func=_run)
