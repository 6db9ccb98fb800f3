"""Prometheus scrape wiring for the server pods: a PodMonitor for the Prometheus Operator.

Without the operator the pods carry ``prometheus.io/*`` annotations instead (see
``workload.scrape_annotations``). Either way every series gets ``namespace``, ``pod`` and the pod labels
sanitized the way Prometheus' labelmap does (``app_kubernetes_io_instance``), which is what the adapter
and the alert rules select on.
"""

from __future__ import annotations

from tgi_autoscaler.config.constants import COMPONENT_SERVER, LABEL_COMPONENT, LABEL_INSTANCE, LABEL_NAME
from tgi_autoscaler.render.meta import HTTP_PORT_NAME, Manifest, object_meta, selector_labels
from tgi_autoscaler.render.source import ServiceSource

__all__ = ["render_pod_monitor"]

# Copied from the pod onto every series; the operator sanitizes the names (`/`, `.`, `-` -> `_`).
POD_TARGET_LABELS = (LABEL_NAME, LABEL_INSTANCE, LABEL_COMPONENT)


def render_pod_monitor(source: ServiceSource) -> Manifest:
    spec = source.spec
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": object_meta(
            source.name,
            source.namespace,
            source.name,
            COMPONENT_SERVER,
            extra_labels=spec.scrape.pod_monitor_labels,
        ),
        "spec": {
            "selector": {"matchLabels": selector_labels(source.name, COMPONENT_SERVER)},
            "podTargetLabels": list(POD_TARGET_LABELS),
            "podMetricsEndpoints": [
                {
                    "port": HTTP_PORT_NAME,
                    "path": spec.engine.defaults.metrics_path,
                    "interval": spec.scrape.interval,
                }
            ],
        },
    }
