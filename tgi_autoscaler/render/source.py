"""What a render starts from: a named, namespaced service spec, plus rendering options.

Kept apart from ``render/__init__`` so that renderer modules (workload, alerts, dashboard) can import
these types without importing the package entry point that imports them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tgi_autoscaler.config.constants import SERVICE_CONFIGMAP_KEY
from tgi_autoscaler.config.errors import ConfigError, ConfigIssue
from tgi_autoscaler.config.metrics import MetricDefinition
from tgi_autoscaler.config.service import TGIServiceSpec, parse_service_yaml
from tgi_autoscaler.k8s.names import MAX_DNS_LABEL_LENGTH, is_dns1035_label, is_dns1123_label

__all__ = ["KedaOptions", "RenderOptions", "ServiceSource", "source_from_configmap", "validate_source"]

# The longest suffix appended to the service name for a derived object (``-auth-proxy``); Service
# names are DNS-1035 labels of at most 63 characters.
_LONGEST_SUFFIX = len("-auth-proxy")
MAX_SERVICE_NAME_LENGTH = MAX_DNS_LABEL_LENGTH - _LONGEST_SUFFIX


@dataclass(frozen=True)
class ServiceSource:
    """A service to render: its name (= the ConfigMap's), namespace, spec and the ConfigMap's uid.

    With ``owner_uid`` set, every object in the same namespace gets an ownerReference to the
    ConfigMap, so deleting the ConfigMap lets Kubernetes' garbage collector delete the service.
    """

    name: str
    namespace: str
    spec: TGIServiceSpec
    owner_uid: str | None = None


@dataclass(frozen=True)
class KedaOptions:
    """How a KEDA ScaledObject reaches Prometheus (a cluster fact, the same for every service).

    ``prometheus_url``: the Prometheus KEDA's operator and metrics server query (KEDA queries it
    directly, not through our adapter). ``definitions``: the adapter's metric definitions by name
    (default: the built-in ones), so a ScaledObject runs exactly the PromQL the adapter would.
    """

    prometheus_url: str
    definitions: Mapping[str, MetricDefinition] | None = field(default=None, compare=False, repr=False)
    polling_interval_s: int = 15
    failure_threshold: int = 3


@dataclass(frozen=True)
class RenderOptions:
    """Cluster facts the spec does not know.

    ``prometheus_operator``: render a PodMonitor and PrometheusRule (True) or scrape annotations
    on the pods for an annotation-driven Prometheus (False).
    ``dashboard_namespace``: where dashboard ConfigMaps go when the spec does not say.
    ``keda``: scale through a KEDA ScaledObject instead of an HPA on our adapter (None: the HPA).
    ``gateway_api``, ``inference_extension``, ``envoy_gateway``: the cluster serves HTTPRoute,
    InferencePool, Envoy Gateway's BackendTrafficPolicy; a spec that needs one that is not served
    fails to render, naming the field (offline, every one is assumed).
    """

    prometheus_operator: bool = True
    dashboard_namespace: str | None = None
    keda: KedaOptions | None = None
    gateway_api: bool = True
    inference_extension: bool = True
    envoy_gateway: bool = True


def validate_source(source: ServiceSource) -> None:
    """Raise ``ConfigError`` if the name or namespace cannot name the rendered objects."""
    issues: list[ConfigIssue] = []
    if not is_dns1035_label(source.name, max_length=MAX_SERVICE_NAME_LENGTH):
        issues.append(
            ConfigIssue(
                "metadata.name",
                f"{source.name!r} must be a DNS-1035 label of at most {MAX_SERVICE_NAME_LENGTH} characters "
                "(lower-case letters, digits and '-', starting with a letter) so that derived names such as "
                f"'<name>-auth-proxy' remain valid Service names",
            )
        )
    if not is_dns1123_label(source.namespace):
        issues.append(
            ConfigIssue("metadata.namespace", f"{source.namespace!r} is not a valid namespace name")
        )
    if issues:
        raise ConfigError(f"service {source.namespace}/{source.name}", issues)


def source_from_configmap(configmap: Mapping[str, Any], *, set_owner: bool = True) -> ServiceSource:
    """Build the ``ServiceSource`` of a service ConfigMap (a plain dict as the API returns it).

    ``set_owner`` takes the ConfigMap's uid as owner (the controller); without it, or when the
    ConfigMap has no uid yet (a file rendered offline), objects get no ownerReferences.
    """
    metadata = configmap.get("metadata") or {}
    name = str(metadata.get("name") or "")
    namespace = str(metadata.get("namespace") or "default")
    where = f"ConfigMap {namespace}/{name or '<unnamed>'}"
    data = configmap.get("data") or {}
    if not isinstance(data, Mapping) or SERVICE_CONFIGMAP_KEY not in data:
        raise ConfigError(where, [ConfigIssue(f"data.{SERVICE_CONFIGMAP_KEY}", "required")])
    spec = parse_service_yaml(
        str(data[SERVICE_CONFIGMAP_KEY]), source=f"{where} data.{SERVICE_CONFIGMAP_KEY}"
    )
    uid = metadata.get("uid") if set_owner else None
    source = ServiceSource(name=name, namespace=namespace, spec=spec, owner_uid=str(uid) if uid else None)
    validate_source(source)
    return source
