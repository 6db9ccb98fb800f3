"""The optional Ingress exposing the service (through the API-key proxy when that is enabled).

Timeouts, body size, buffering and rate limits are ingress-nginx annotations; other ingress
controllers ignore them and need their own equivalents in ``ingress.annotations``.
"""

from __future__ import annotations

from tgi_autoscaler.config.constants import COMPONENT_ACTIVATOR, COMPONENT_AUTH_PROXY, COMPONENT_SERVER
from tgi_autoscaler.render.meta import (
    HTTP_PORT_NAME,
    Manifest,
    activator_name,
    auth_proxy_name,
    object_meta,
)
from tgi_autoscaler.render.source import ServiceSource

__all__ = ["ingress_annotations", "render_ingress"]

_NGINX = "nginx.ingress.kubernetes.io/"


def ingress_annotations(source: ServiceSource) -> dict[str, str]:
    ingress = source.spec.ingress
    annotations = {
        f"{_NGINX}proxy-read-timeout": str(ingress.proxy_read_timeout_seconds),
        f"{_NGINX}proxy-send-timeout": str(ingress.proxy_send_timeout_seconds),
        f"{_NGINX}proxy-body-size": ingress.proxy_body_size,
        # Stream tokens to the client as they are generated instead of after the whole response.
        f"{_NGINX}proxy-buffering": "off",
    }
    limits = ingress.rate_limit
    if limits is not None:
        if limits.requests_per_second is not None:
            annotations[f"{_NGINX}limit-rps"] = str(limits.requests_per_second)
        if limits.burst_multiplier is not None:
            annotations[f"{_NGINX}limit-burst-multiplier"] = str(limits.burst_multiplier)
        if limits.connections is not None:
            annotations[f"{_NGINX}limit-connections"] = str(limits.connections)
    if ingress.cluster_issuer is not None:
        annotations["cert-manager.io/cluster-issuer"] = ingress.cluster_issuer
    annotations.update(ingress.annotations)
    return annotations


def render_ingress(source: ServiceSource) -> Manifest | None:
    spec = source.spec
    ingress = spec.ingress
    if not ingress.enabled or ingress.host is None:
        return None
    if spec.auth.enabled:
        backend, component = auth_proxy_name(source.name), COMPONENT_AUTH_PROXY
    elif spec.scales_to_zero:
        backend, component = activator_name(source.name), COMPONENT_ACTIVATOR
    else:
        backend, component = source.name, COMPONENT_SERVER
    ingress_spec: Manifest = {"ingressClassName": ingress.class_name}
    if ingress.tls_secret_name is not None:
        ingress_spec["tls"] = [{"hosts": [ingress.host], "secretName": ingress.tls_secret_name}]
    ingress_spec["rules"] = [
        {
            "host": ingress.host,
            "http": {
                "paths": [
                    {
                        "path": ingress.path,
                        "pathType": "Prefix",
                        "backend": {"service": {"name": backend, "port": {"name": HTTP_PORT_NAME}}},
                    }
                ]
            },
        }
    ]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": object_meta(
            source.name, source.namespace, source.name, component, annotations=ingress_annotations(source)
        ),
        "spec": ingress_spec,
    }
