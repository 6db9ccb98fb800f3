"""The HorizontalPodAutoscaler (autoscaling/v2) scaling the server Deployment on demand (or queue depth).

The signal is an External metric served by the adapter, selected by the service's instance label;
the adapter adds the namespace itself. Targets are ``AverageValue``: with the demand signal the HPA
computes ``ceil(requests/s to serve / requests/s one replica carries at the SLO)``, the replicas the
load needs; with the queue signal, queued requests per replica.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN

from tgi_autoscaler.config.constants import COMPONENT_SERVER, LABEL_INSTANCE
from tgi_autoscaler.config.service import ScaleDownSpec, ScaleUpSpec, TGIServiceSpec
from tgi_autoscaler.k8s import quantity
from tgi_autoscaler.render.meta import Manifest, object_meta
from tgi_autoscaler.render.source import ServiceSource

__all__ = ["behavior", "format_quantity", "format_tolerance", "render_hpa"]


def format_quantity(value: float) -> str:
    """A Kubernetes quantity for a target value: ``10`` -> ``"10"``, ``2.5`` -> ``"2500m"``.

    Values are rounded to milli-units, the finest precision the HPA compares at, half to even and
    written without SI suffix (``1000``, not ``1k``): the form every rendered HPA has carried.
    """
    if quantity.milli_value(value, rounding=ROUND_HALF_EVEN) <= 0:
        raise ValueError(f"target {value} rounds to zero; the smallest target is 0.001")
    return quantity.format_quantity(value, rounding=ROUND_HALF_EVEN, notation=quantity.Notation.PLAIN)


def _external(metric: str, service: str, target: float) -> Manifest:
    return {
        "type": "External",
        "external": {
            "metric": {"name": metric, "selector": {"matchLabels": {LABEL_INSTANCE: service}}},
            "target": {"type": "AverageValue", "averageValue": format_quantity(target)},
        },
    }


def _rules(rules: ScaleUpSpec | ScaleDownSpec) -> Manifest:
    out: Manifest = {
        "stabilizationWindowSeconds": rules.stabilization_window_seconds,
        "selectPolicy": rules.select_policy,
        "policies": [
            {"type": p.type, "value": p.value, "periodSeconds": p.period_seconds} for p in rules.policies
        ],
    }
    if rules.tolerance is not None:
        # Per-direction tolerance (HPAConfigurableTolerance: beta in v1.36, GA in v1.37).
        out["tolerance"] = format_tolerance(rules.tolerance)
    return out


def format_tolerance(value: float) -> str:
    """A tolerance as a quantity: ``0.1`` -> ``"100m"``, ``0`` -> ``"0"``."""
    return "0" if value == 0 else format_quantity(value)


def behavior(spec: TGIServiceSpec) -> Manifest:
    """The HPA ``behavior`` of a service (also what a KEDA ScaledObject hands its HPA)."""
    scaling = spec.autoscaling
    return {"scaleUp": _rules(scaling.scale_up), "scaleDown": _rules(scaling.scale_down)}


def render_hpa(source: ServiceSource) -> Manifest:
    spec = source.spec
    scaling = spec.autoscaling
    metric, target = spec.scaling_metric
    metrics = [_external(metric, source.name, target)]
    batch_metric = spec.batch_metric
    if scaling.batch_size is not None and batch_metric is not None:
        metrics.append(_external(batch_metric, source.name, scaling.batch_size.target_per_replica))
    if scaling.cpu is not None:
        metrics.append(
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": scaling.cpu.target_utilization},
                },
            }
        )
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": object_meta(source.name, source.namespace, source.name, COMPONENT_SERVER),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": source.name},
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": metrics,
            "behavior": behavior(spec),
        },
    }
