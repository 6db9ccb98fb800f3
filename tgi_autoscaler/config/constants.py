"""Names shared by the controller, the renderer and the adapter: labels, annotations, keys, field manager.

Every value here is part of a cross-module contract (objects written by one part are found by another
through these names), so they live in one place instead of being spelled out wherever they are used.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ANNOTATION_CONFIG_HASH",
    "ANNOTATION_PROMETHEUS_PATH",
    "ANNOTATION_PROMETHEUS_PORT",
    "ANNOTATION_PROMETHEUS_SCRAPE",
    "ANNOTATION_ROLLOUT",
    "ANNOTATION_STATUS",
    "APP_NAME",
    "COMPONENT_ACTIVATOR",
    "COMPONENT_AUTH_PROXY",
    "COMPONENT_SERVER",
    "FIELD_MANAGER",
    "GRAFANA_DASHBOARD_LABEL",
    "GRAFANA_DASHBOARD_LABEL_VALUE",
    "LABEL_COMPONENT",
    "LABEL_INSTANCE",
    "LABEL_MANAGED_BY",
    "LABEL_MODEL_HASH",
    "LABEL_NAME",
    "LABEL_OWNER_NAME",
    "LABEL_OWNER_NAMESPACE",
    "LABEL_SERVICE_CONFIGMAP",
    "LABEL_SERVICE_CONFIGMAP_VALUE",
    "MANAGED_BY",
    "SERVICE_CONFIGMAP_KEY",
]

# Recommended Kubernetes labels carried by every rendered object (and by the pods).
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"

APP_NAME: Final = "tgi"
MANAGED_BY: Final = "tgi-autoscaler"
COMPONENT_SERVER: Final = "server"
COMPONENT_AUTH_PROXY: Final = "auth-proxy"
COMPONENT_ACTIVATOR: Final = "activator"

# The ConfigMaps the controller watches: selected by this label, spec stored under this data key.
LABEL_SERVICE_CONFIGMAP: Final = "tgi-autoscaler.io/service"
LABEL_SERVICE_CONFIGMAP_VALUE: Final = "true"
SERVICE_CONFIGMAP_KEY: Final = "service.yaml"

# Server-side apply field manager of the controller.
FIELD_MANAGER: Final = "tgi-autoscaler"

# JSON status the controller writes back onto the service ConfigMap.
ANNOTATION_STATUS: Final = "tgi-autoscaler.io/status"

# Hash of configuration a pod reads from outside its template (e.g. the auth proxy's nginx.conf
# ConfigMap); changing it rolls the pods so they pick the new configuration up.
ANNOTATION_CONFIG_HASH: Final = "tgi-autoscaler.io/config-hash"

# Objects rendered into another namespace than their service ConfigMap (the Grafana dashboard
# ConfigMap) cannot carry an ownerReference: Kubernetes only allows owners in the same namespace.
# These two labels name the owning service instead, so the controller can find and delete them.
LABEL_OWNER_NAMESPACE: Final = "tgi-autoscaler.io/owner-namespace"
LABEL_OWNER_NAME: Final = "tgi-autoscaler.io/owner-name"

# Grafana's dashboard sidecar loads every ConfigMap carrying this label.
GRAFANA_DASHBOARD_LABEL: Final = "grafana_dashboard"
GRAFANA_DASHBOARD_LABEL_VALUE: Final = "1"

# Annotations read by the conventional annotation-driven `kubernetes-pods` Prometheus scrape job.
ANNOTATION_PROMETHEUS_SCRAPE: Final = "prometheus.io/scrape"
ANNOTATION_PROMETHEUS_PORT: Final = "prometheus.io/port"
ANNOTATION_PROMETHEUS_PATH: Final = "prometheus.io/path"

# The generation of the server pods a Service routes to: the hash of what defines the model
# (render/rollout.py), carried by a blue-green Deployment's pods and by the Service selector, so that
# switching the Service between two Deployments is one selector change.
LABEL_MODEL_HASH: Final = "tgi-autoscaler.io/model-hash"

# JSON rollout state on the server Service (which Deployment serves, which is the candidate, since
# when): the controller resumes a rollout from it after a restart or a change of leader.
ANNOTATION_ROLLOUT: Final = "tgi-autoscaler.io/rollout"
