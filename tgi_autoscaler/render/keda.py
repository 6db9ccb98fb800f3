"""The KEDA ScaledObject that replaces the HPA where KEDA owns ``v1beta1.external.metrics.k8s.io``.

Only one server can serve external metrics per cluster, so where KEDA runs, our adapter cannot, and
the service scales through KEDA instead: one ``prometheus`` trigger per External metric the HPA
would have read, whose query is the adapter's own PromQL for that metric, namespace and instance
(built by the same ``QueryBuilder``), with the same ``AverageValue`` target. KEDA builds an HPA from
it (``keda-hpa-<name>``) carrying our ``behavior`` through ``advanced.horizontalPodAutoscalerConfig``.

Why ``prometheus`` triggers and not our adapter behind KEDA's gRPC external scaler: the value the
HPA divides is the same number either way, KEDA already keeps a Prometheus outage from becoming a
zero when asked to, and a trigger needs no second server in the metric path. What keeps our
semantics:

- ``ignoreNullValues: "false"``: an empty result or NaN is an error, not 0 (KEDA's default, true,
  reads a Prometheus that lost its targets as zero load and scales down);
- ``fallback`` with ``behavior: currentReplicas``: after ``failureThreshold`` failed reads KEDA
  serves the HPA a value that asks for the replicas already running; before that the read fails and
  the HPA holds, as it does with our adapter;
- ``minReplicaCount`` is ``autoscaling.minReplicas``; KEDA itself scales a Deployment to and from
  zero (activation) when that is 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final
from urllib.parse import urlsplit

from tgi_autoscaler.config.constants import (
    COMPONENT_SERVER,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_OWNER_NAME,
    LABEL_OWNER_NAMESPACE,
)
from tgi_autoscaler.config.errors import ConfigError, ConfigIssue
from tgi_autoscaler.config.metrics import DEFAULT_METRIC_DEFINITIONS, MetricDefinition
from tgi_autoscaler.k8s import quantity
from tgi_autoscaler.render.autoscaling import behavior, format_quantity
from tgi_autoscaler.render.meta import Manifest, object_meta
from tgi_autoscaler.render.source import KedaOptions, ServiceSource

__all__ = [
    "KEDA_API_VERSION",
    "check_keda_options",
    "format_threshold",
    "keda_hpa_name",
    "render_scaled_object",
]

KEDA_API_VERSION: Final = "keda.sh/v1alpha1"
_BUILT_IN: Final = {definition.name: definition for definition in DEFAULT_METRIC_DEFINITIONS}
# KEDA copies a ScaledObject's labels onto the HPA it creates. With our owner labels on it, that HPA
# would look like one of ours that the service no longer renders, and the controller would prune it.
_HPA_EXCLUDED_LABELS_ANNOTATION: Final = "scaledobject.keda.sh/hpa-excluded-labels"
_HPA_EXCLUDED_LABELS: Final = (LABEL_OWNER_NAME, LABEL_OWNER_NAMESPACE, LABEL_MANAGED_BY)


def keda_hpa_name(service: str) -> str:
    """The HPA KEDA creates for a ScaledObject (KEDA's default ``keda-hpa-<name>``)."""
    return f"keda-hpa-{service}"


def format_threshold(value: float) -> str:
    """A trigger threshold as KEDA parses it (``strconv.ParseFloat``, so no SI suffix): ``"2.019"``.

    Rounded to milli-units like the HPA's ``averageValue`` (``format_quantity``), so both backends
    divide by exactly the same target.
    """
    format_quantity(value)  # the same check: a target that rounds to zero is refused
    milli = quantity.milli_value(value, rounding=ROUND_HALF_EVEN)
    text = format(Decimal(milli) / 1000, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def check_keda_options(options: KedaOptions) -> None:
    """Raise ``ConfigError`` naming the bad option (a Prometheus URL KEDA could not query)."""
    issues: list[ConfigIssue] = []
    url = urlsplit(options.prometheus_url)
    if url.scheme not in ("http", "https") or not url.netloc:
        issues.append(
            ConfigIssue(
                "--keda-prometheus-url",
                f"{options.prometheus_url!r} is not an http(s) URL such as http://prometheus.monitoring:9090",
            )
        )
    if options.polling_interval_s < 1:
        issues.append(ConfigIssue("pollingInterval", f"must be >= 1 s (got {options.polling_interval_s})"))
    if options.failure_threshold < 0:
        issues.append(
            ConfigIssue("fallback.failureThreshold", f"must be >= 0 (got {options.failure_threshold})")
        )
    if issues:
        raise ConfigError("KEDA options", issues, what="command line")


def _definition(
    metric: str, field: str, definitions: Mapping[str, MetricDefinition], source: ServiceSource
) -> MetricDefinition:
    found = definitions.get(metric)
    if found is None:
        raise ConfigError(
            f"service {source.namespace}/{source.name}",
            [
                ConfigIssue(
                    field,
                    f"metric {metric!r} has no definition the KEDA backend can turn into a PromQL trigger "
                    f"(known: {', '.join(sorted(definitions))}); define it in the adapter's metrics "
                    "document given to the controller",
                )
            ],
        )
    return found


def _trigger(metric: str, field: str, target: float, source: ServiceSource, options: KedaOptions) -> Manifest:
    definitions = options.definitions if options.definitions is not None else _BUILT_IN
    definition = _definition(metric, field, definitions, source)
    # The adapter's own pipeline: namespace matcher first, the instance label mapped and escaped.
    query = definition.builder.build(
        namespace=source.namespace, selector=f"{LABEL_INSTANCE}={source.name}"
    ).promql
    return {
        "type": "prometheus",
        "name": metric,
        "metricType": "AverageValue",
        "metadata": {
            "serverAddress": options.prometheus_url.rstrip("/"),
            "query": query,
            "threshold": format_threshold(target),
            "ignoreNullValues": "false",
        },
    }


def render_scaled_object(source: ServiceSource, options: KedaOptions) -> Manifest:
    """The ScaledObject scaling the service's Deployment on the same signals as ``render_hpa``."""
    check_keda_options(options)
    spec = source.spec
    scaling = spec.autoscaling
    metric, target = spec.scaling_metric
    signal_field = f"autoscaling.{'demand' if scaling.signal == 'demand' else 'queue'}.metric"
    triggers = [_trigger(metric, signal_field, target, source, options)]
    batch_metric = spec.batch_metric
    if scaling.batch_size is not None and batch_metric is not None:
        triggers.append(
            _trigger(
                batch_metric,
                "autoscaling.batchSize.metric",
                scaling.batch_size.target_per_replica,
                source,
                options,
            )
        )
    if scaling.cpu is not None:
        triggers.append(
            {
                "type": "cpu",
                "metricType": "Utilization",
                "metadata": {"value": str(scaling.cpu.target_utilization)},
            }
        )
    return {
        "apiVersion": KEDA_API_VERSION,
        "kind": "ScaledObject",
        "metadata": object_meta(
            source.name,
            source.namespace,
            source.name,
            COMPONENT_SERVER,
            annotations={_HPA_EXCLUDED_LABELS_ANNOTATION: ",".join(_HPA_EXCLUDED_LABELS)},
        ),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": source.name},
            "pollingInterval": options.polling_interval_s,
            "minReplicaCount": scaling.min_replicas,
            "maxReplicaCount": scaling.max_replicas,
            "fallback": {
                "failureThreshold": options.failure_threshold,
                # Required by the CRD; unused with currentReplicas, set to the floor for clarity.
                "replicas": scaling.min_replicas,
                "behavior": "currentReplicas",
            },
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "name": keda_hpa_name(source.name),
                    "behavior": behavior(spec),
                },
            },
            "triggers": triggers,
        },
    }
