"""A bare Deployment and an HPA on one External metric, for the benchmarks that time the real HPA.

The reaction and scale-to-zero benchmarks measure how fast kube-controller-manager's HPA follows a
signal, so both want the same pair of objects with the stabilization windows at zero and policies
wide enough that only the metric decides; they differ only in the replica bounds.
"""

from __future__ import annotations

from typing import Any

from tgi_autoscaler_dev.sim.pods import pod_labels

__all__ = ["external_metric_workload"]


def external_metric_workload(
    *,
    namespace: str,
    service: str,
    metric: str,
    target: float,
    min_replicas: int,
    max_replicas: int,
) -> list[dict[str, Any]]:
    """The Namespace, the Deployment and its HPA (scale up by up to ``max_replicas`` pods a second,
    down by 100 % a second, no stabilization), in apply order."""
    labels = pod_labels(service)
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": service, "namespace": namespace},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "tgi", "image": "registry.invalid/tgi:1"}]},
                },
            },
        },
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": service, "namespace": namespace},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": service},
                "minReplicas": min_replicas,
                "maxReplicas": max_replicas,
                "metrics": [
                    {
                        "type": "External",
                        "external": {
                            "metric": {
                                "name": metric,
                                "selector": {"matchLabels": {"app.kubernetes.io/instance": service}},
                            },
                            "target": {"type": "AverageValue", "averageValue": str(target)},
                        },
                    }
                ],
                "behavior": {
                    "scaleUp": {
                        "stabilizationWindowSeconds": 0,
                        "policies": [{"type": "Pods", "value": max_replicas, "periodSeconds": 1}],
                    },
                    "scaleDown": {
                        "stabilizationWindowSeconds": 0,
                        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 1}],
                    },
                },
            },
        },
    ]
