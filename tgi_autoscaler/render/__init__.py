"""Render one service spec into every Kubernetes object it needs: pure, deterministic, offline.

``render_service`` is the single code path shared by the controller (which applies the objects) and
the ``render`` command (which prints them). The same input always yields the same objects in the same
order, so repeated applies are no-ops and golden-file tests can compare text.

Ownership: with ``owner_uid`` set, objects in the service's namespace get an ownerReference to the
service ConfigMap (deleting it garbage-collects them). Objects in another namespace (the Grafana
dashboard ConfigMap when dashboards live in Grafana's namespace) cannot have one, since Kubernetes
rejects cross-namespace owners; they carry the ``tgi-autoscaler.io/owner-namespace`` and
``tgi-autoscaler.io/owner-name`` labels instead, and the controller deletes them itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from tgi_autoscaler.config.constants import (
    COMPONENT_SERVER,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_OWNER_NAME,
    LABEL_OWNER_NAMESPACE,
    MANAGED_BY,
)
from tgi_autoscaler.render.activator import render_activator
from tgi_autoscaler.render.alerts import render_prometheus_rule
from tgi_autoscaler.render.auth_proxy import render_auth_proxy
from tgi_autoscaler.render.autoscaling import render_hpa
from tgi_autoscaler.render.dashboard import render_dashboard_configmap
from tgi_autoscaler.render.ingress import render_ingress
from tgi_autoscaler.render.keda import render_scaled_object
from tgi_autoscaler.render.meta import Manifest, labels
from tgi_autoscaler.render.rollout import initial_plan, step_objects
from tgi_autoscaler.render.routing import render_routing
from tgi_autoscaler.render.scrape import render_pod_monitor
from tgi_autoscaler.render.source import (
    KedaOptions,
    RenderOptions,
    ServiceSource,
    source_from_configmap,
    validate_source,
)
from tgi_autoscaler.render.workload import render_cache_claim, render_deployment
from tgi_autoscaler.render.workload import render_service as render_k8s_service

__all__ = [
    "KedaOptions",
    "RenderOptions",
    "ServiceSource",
    "apply_ownership",
    "owner_reference",
    "render_service",
    "source_from_configmap",
    "to_yaml",
]


def owner_reference(source: ServiceSource) -> dict[str, Any] | None:
    """The ownerReference to the service ConfigMap, or None when there is no uid to point at."""
    if source.owner_uid is None:
        return None
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": source.name,
        "uid": source.owner_uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _observability(source: ServiceSource, options: RenderOptions) -> list[Manifest]:
    spec = source.spec
    objects: list[Manifest] = []
    if options.prometheus_operator:
        rule = render_prometheus_rule(
            source.name,
            source.namespace,
            spec.alerts,
            labels(source.name, COMPONENT_SERVER),
            engine=spec.engine.kind.value,
            workload_name=source.name,
        )
        if rule is not None:
            objects.append(rule)
    dashboard = render_dashboard_configmap(
        source.name,
        source.namespace,
        spec,
        labels(source.name, COMPONENT_SERVER),
        dashboard_namespace=options.dashboard_namespace,
    )
    if dashboard is not None:
        objects.append(dashboard)
    return objects


def _unshared(value: Any) -> Any:
    """A copy in which no dict or list appears twice.

    Renderers may reuse one sub-dict (a resources block for two containers); ``copy.deepcopy`` would
    keep that sharing, so a consumer editing one place would silently edit the other.
    """
    if isinstance(value, dict):
        return {key: _unshared(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unshared(item) for item in value]
    return value


def apply_ownership(obj: Manifest, source: ServiceSource) -> Manifest:
    """Label ``obj`` as the service's and point it at its owner (in place; returns ``obj``).

    Same namespace: an ownerReference to the service ConfigMap (when its uid is known). Another
    namespace: no ownerReference (Kubernetes forbids cross-namespace owners) but the owner labels.
    """
    metadata = obj["metadata"]
    obj_labels = metadata.setdefault("labels", {})
    # Every object must be findable by these two labels (pruning, status, clean-up).
    obj_labels[LABEL_MANAGED_BY] = MANAGED_BY
    obj_labels[LABEL_INSTANCE] = source.name
    if metadata.get("namespace") != source.namespace:
        metadata.pop("ownerReferences", None)
        obj_labels[LABEL_OWNER_NAMESPACE] = source.namespace
        obj_labels[LABEL_OWNER_NAME] = source.name
        return obj
    ref = owner_reference(source)
    if ref is not None:
        metadata["ownerReferences"] = [ref]
    return obj


def render_service(source: ServiceSource, options: RenderOptions | None = None) -> list[dict[str, Any]]:
    """Every object of the service, in a stable order (storage and config before their users).

    Raises ``ConfigError`` when the name or namespace cannot name the objects.
    """
    options = options or RenderOptions()
    validate_source(source)
    objects: list[Manifest | None] = [render_cache_claim(source)]
    auth = render_auth_proxy(source)
    objects.extend(obj for obj in auth if obj["kind"] == "ConfigMap")
    objects.append(render_deployment(source, options))
    objects.append(render_k8s_service(source))
    # One autoscaler per Deployment: our HPA on the adapter, or KEDA's (from the ScaledObject).
    objects.append(render_hpa(source) if options.keda is None else render_scaled_object(source, options.keda))
    if options.prometheus_operator:
        objects.append(render_pod_monitor(source))
    objects.extend(render_activator(source, options))
    objects.extend(obj for obj in auth if obj["kind"] != "ConfigMap")
    objects.append(render_ingress(source))
    objects.extend(render_routing(source, options))
    objects.extend(_observability(source, options))
    # A service of which nothing runs yet: the controller plans later steps from the cluster.
    rendered = [obj for obj in objects if obj is not None]
    first = step_objects(rendered, source.name, initial_plan(source.name, source.spec))
    return [apply_ownership(_unshared(obj), source) for obj in first]


class _Dumper(yaml.SafeDumper):
    """Block style for multi-line strings (nginx.conf, dashboards) and no anchors: plain manifests."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def to_yaml(objects: Iterable[dict[str, Any]]) -> str:
    """Multi-document YAML of ``objects``, keys in rendering order (what ``kubectl apply -f`` takes)."""
    return yaml.dump_all(
        list(objects),
        Dumper=_Dumper,
        sort_keys=False,
        explicit_start=True,
        default_flow_style=False,
        width=120,
        allow_unicode=True,
    )
