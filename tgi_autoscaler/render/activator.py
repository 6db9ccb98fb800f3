"""The activator of a service that scales to zero: its Deployment, Service and scrape wiring.

Rendered only with ``autoscaling.minReplicas: 0``. The activator (``tgi-autoscaler activator``,
this project's image) forwards to the service's own Service, so clients, the Ingress and the
API-key proxy reach the service through ``<service>-activator``. Its pods carry the service's
instance label, so the series it exports (held requests, upstream readiness, the idle window) are
selected by the same ``app_kubernetes_io_instance`` matcher as the server's, which is how the
adapter's held-demand signal finds them.
"""

from __future__ import annotations

from typing import Final

from tgi_autoscaler.config.constants import (
    ANNOTATION_PROMETHEUS_PATH,
    ANNOTATION_PROMETHEUS_PORT,
    ANNOTATION_PROMETHEUS_SCRAPE,
    COMPONENT_ACTIVATOR,
)
from tgi_autoscaler.render.meta import (
    HTTP_PORT_NAME,
    Manifest,
    activator_name,
    labels,
    object_meta,
    selector_labels,
)
from tgi_autoscaler.render.scrape import POD_TARGET_LABELS
from tgi_autoscaler.render.source import RenderOptions, ServiceSource

__all__ = ["ACTIVATOR_METRICS_PORT", "ACTIVATOR_PORT", "ACTIVATOR_SERVICE_PORT", "render_activator"]

ACTIVATOR_PORT: Final = 8080
ACTIVATOR_SERVICE_PORT: Final = 80  # what the Ingress, HTTPRoute and API-key proxy send to
ACTIVATOR_METRICS_PORT: Final = 9091
_METRICS_PORT_NAME: Final = "metrics"
_UID: Final = 65532  # the image's non-root user


def _args(source: ServiceSource) -> list[str]:
    spec = source.spec
    stz = spec.autoscaling.scale_to_zero
    upstream = f"http://{source.name}.{source.namespace}.svc:{spec.service.port}"
    return [
        "--log-format=json",
        "activator",
        f"--upstream={upstream}",
        f"--port={ACTIVATOR_PORT}",
        f"--metrics-port={ACTIVATOR_METRICS_PORT}",
        f"--health-path={spec.engine.defaults.health_path}",
        f"--max-held={stz.max_held_requests}",
        f"--max-wait={stz.max_wait_seconds}",
        f"--idle-after={stz.idle_after_seconds}",
        # Held requests may finish waiting after SIGTERM (within terminationGracePeriodSeconds).
        f"--shutdown-grace={stz.max_wait_seconds + 10}",
    ]


def render_activator(source: ServiceSource, options: RenderOptions) -> list[Manifest]:
    """Deployment, Service and (with the Prometheus Operator) PodMonitor; empty unless minReplicas 0."""
    spec = source.spec
    if not spec.scales_to_zero:
        return []
    stz = spec.autoscaling.scale_to_zero
    name = activator_name(source.name)
    health: Manifest = {"httpGet": {"path": "/healthz", "port": _METRICS_PORT_NAME}, "periodSeconds": 10}
    annotations = (
        {}
        if options.prometheus_operator
        else {
            ANNOTATION_PROMETHEUS_SCRAPE: "true",
            ANNOTATION_PROMETHEUS_PORT: str(ACTIVATOR_METRICS_PORT),
            ANNOTATION_PROMETHEUS_PATH: "/metrics",
        }
    )
    template_meta: Manifest = {"labels": labels(source.name, COMPONENT_ACTIVATOR)}
    if annotations:
        template_meta["annotations"] = annotations
    container: Manifest = {
        "name": "activator",
        "image": stz.image,
        "args": _args(source),
        "ports": [
            {"name": HTTP_PORT_NAME, "containerPort": ACTIVATOR_PORT, "protocol": "TCP"},
            {"name": _METRICS_PORT_NAME, "containerPort": ACTIVATOR_METRICS_PORT, "protocol": "TCP"},
        ],
        "resources": {
            "requests": {"cpu": stz.cpu_request, "memory": stz.memory_request},
            "limits": {"memory": stz.memory_limit},
        },
        # Ready as soon as it listens: holding requests while the server is down is its job.
        "readinessProbe": health,
        "livenessProbe": health,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    deployment: Manifest = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(name, source.namespace, source.name, COMPONENT_ACTIVATOR),
        "spec": {
            # Not autoscaled: it only relays bytes, and it must stay up while the server is at zero.
            "replicas": stz.replicas,
            "selector": {"matchLabels": selector_labels(source.name, COMPONENT_ACTIVATOR)},
            "template": {
                "metadata": template_meta,
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    # Longer than a held request may wait, so a rollout does not cut held requests.
                    "terminationGracePeriodSeconds": stz.max_wait_seconds + 30,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": _UID,
                        "runAsGroup": _UID,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                },
            },
        },
    }
    service: Manifest = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(name, source.namespace, source.name, COMPONENT_ACTIVATOR),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(source.name, COMPONENT_ACTIVATOR),
            "ports": [
                {
                    "name": HTTP_PORT_NAME,
                    "port": ACTIVATOR_SERVICE_PORT,
                    "targetPort": HTTP_PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }
    objects = [deployment, service]
    if options.prometheus_operator:
        objects.append(
            {
                "apiVersion": "monitoring.coreos.com/v1",
                "kind": "PodMonitor",
                "metadata": object_meta(
                    name,
                    source.namespace,
                    source.name,
                    COMPONENT_ACTIVATOR,
                    extra_labels=spec.scrape.pod_monitor_labels,
                ),
                "spec": {
                    "selector": {"matchLabels": selector_labels(source.name, COMPONENT_ACTIVATOR)},
                    "podTargetLabels": list(POD_TARGET_LABELS),
                    "podMetricsEndpoints": [
                        {"port": _METRICS_PORT_NAME, "path": "/metrics", "interval": spec.scrape.interval}
                    ],
                },
            }
        )
    return objects
